"""glacierseg:map_lakes — glacial lakes by NDWI threshold."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..core.band_ratio import LAKE_CLASSES, map_lakes
from . import mapping_parameters as mapping
from .base import MAPPING, GlacierSegAlgorithm, raster_path, vector_source


class MapLakesAlgorithm(GlacierSegAlgorithm):
    NAME = "map_lakes"
    DISPLAY_NAME = "Map glacial lakes by NDWI"
    GROUP = MAPPING
    SHORT = "Glacial lakes by NDWI threshold with slope and distance-to-glacier tests, without a model."
    TAGS = ("ndwi", "glacial lake", "water", "lake inventory", "glof", "threshold", "sentinel-2", "landsat")
    MANUAL_SECTION = "map-without-a-model"
    REQUIRES = ("numpy", "scipy", "rasterio", "shapely", "pyproj")
    ROLES = ("green", "nir")
    HELP = (
        "Maps glacial lakes without a model: pixels whose NDWI = (green − NIR)/(green + NIR) "
        "(McFeeters 1996) exceeds a threshold form water bodies (8-connected), which are kept when "
        "they pass the tests below.<br><br>"
        + mapping.SENSOR_HELP +
        "<b>NDWI threshold</b>: default 0.3. Glacial-lake studies use 0.2–0.55 depending on turbidity "
        "and sensor (review: Jawak et al. 2015); clean ice and snow have NDWI of about 0–0.25, so a "
        "threshold much below 0.3 maps ice as water.<br>"
        "<b>DEM</b> and <b>maximum slope</b>: optional; a water body is kept only when its median "
        "slope is at most the limit (default 5°): lakes are flat, terrain and cast shadow that look "
        "like water are not. The test is per water body, not per pixel, so DEM artefacts at "
        "shorelines do not cut lakes. The DEM is resampled (bilinear) onto the image grid.<br>"
        "<b>Glacier outlines</b> and <b>maximum distance</b>: optional; only water bodies reaching "
        "within this distance of a glacier are kept (default 10 km, the convention of the HMA glacial "
        "lake inventory, Wang et al. 2020). Outlines are buffered in their UTM zone.<br>"
        "<b>Minimum lake area</b>: default 0.0054 km² (six 30 m Landsat pixels, Wang et al. 2020); "
        "smaller water bodies are dropped from the raster and the outlines.<br>"
        + mapping.SCALE_HELP + mapping.OUTPUT_HELP +
        " Class: 1 glacial_lake.<br><br>"
        "References: McFeeters S.K. (1996) Int. J. Remote Sens. 17; Wang X. et al. (2020) Earth Syst. "
        "Sci. Data 12, 2169; Jawak S.D. et al. (2015) Adv. Remote Sens. 4."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        number = QgsProcessingParameterNumber
        mapping.add_sensor_parameters(self, self.ROLES)
        self.addParameter(number("THRESHOLD", "NDWI threshold", number.Double, 0.3, minValue=-1.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (slope limit)", optional=True))
        self.addParameter(number("SLOPE_MAX", "Maximum median slope of a lake (degrees)", number.Double, 5.0,
                                 minValue=0.0, maxValue=90.0))
        self.addParameter(QgsProcessingParameterFeatureSource(
            "GLACIERS", "Glacier outlines (keep lakes near them)", [QgsProcessing.TypeVectorPolygon], optional=True))
        self.addParameter(number("MAX_DISTANCE", "Maximum distance from glaciers (m)", number.Double, 10000.0,
                                 minValue=0.0))
        self.addParameter(number("MIN_AREA", "Minimum lake area (km²)", number.Double, 0.0054, minValue=0.0))
        mapping.add_scale_parameters(self)
        mapping.add_outputs(self, "NDWI")
        for c in LAKE_CLASSES:
            self.addOutput(QgsProcessingOutputNumber(f"AREA_{c.name.upper()}", f"{c.name} area (km²)"))

    def process(self, parameters, context, feedback, progress):
        from ..core.geo import VectorSource  # here, not at load: the provider loads without shapely

        dem_layer = self.parameterAsRasterLayer(parameters, "DEM", context)
        glaciers, glaciers_layer = vector_source(self, parameters, "GLACIERS", context, feedback)
        result = map_lakes(
            **mapping.sensor_arguments(self, parameters, context, self.ROLES),
            threshold=self.parameterAsDouble(parameters, "THRESHOLD", context),
            dem=raster_path(dem_layer) if dem_layer is not None else None,
            slope_max=self.parameterAsDouble(parameters, "SLOPE_MAX", context),
            glaciers=VectorSource(glaciers, glaciers_layer) if glaciers else None,
            max_distance_m=self.parameterAsDouble(parameters, "MAX_DISTANCE", context),
            min_area_km2=self.parameterAsDouble(parameters, "MIN_AREA", context),
            progress=progress,
        )
        return mapping.finish(self, parameters, context, feedback, result)
