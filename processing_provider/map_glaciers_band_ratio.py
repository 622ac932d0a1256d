"""glacierseg:map_glaciers_band_ratio — clean ice (and debris-covered ice candidates) by band ratio."""
from __future__ import annotations

from qgis.core import (
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterLayer,
)

from ..core.band_ratio import GLACIER_CLASSES, METHODS, map_glaciers
from .base import MAPPING, GlacierSegAlgorithm, optional_number, raster_path
from .dem_parameters import HELP as DEM_HELP
from .dem_parameters import add_dem_void_parameters, plausible_elevation
from .mapping_parameters import (
    OUTPUT_HELP,
    SCALE_HELP,
    SENSOR_HELP,
    add_outputs,
    add_scale_parameters,
    add_sensor_parameters,
    finish,
    sensor_arguments,
)


class MapGlaciersBandRatioAlgorithm(GlacierSegAlgorithm):
    NAME = "map_glaciers_band_ratio"
    DISPLAY_NAME = "Map glaciers by band ratio"
    GROUP = MAPPING
    SHORT = "Clean glacier ice (red/SWIR ratio or NDSI) and debris-covered ice candidates, without a model."
    TAGS = ("ndsi", "band ratio", "red/swir", "threshold", "clean ice", "debris", "snow", "sentinel-2", "landsat",
            "glacier mapping", "ndwi", "ndvi")
    MANUAL_SECTION = "map-without-a-model"
    REQUIRES = ("numpy", "scipy", "rasterio", "shapely", "pyproj")
    ROLES = ("red", "swir", "green", "blue", "nir")
    HELP = (
        "Maps clean glacier ice without a model, with the red/SWIR band ratio (TM3/TM5, OLI B4/B6, "
        "MSI B4/B11; Paul et al. 2002) or the NDSI (green − SWIR)/(green + SWIR) (Hall et al. 1995), "
        "and optionally debris-covered ice candidates from a DEM.<br><br>"
        + SENSOR_HELP +
        "<b>Index</b>: red/SWIR ratio (default) or NDSI.<br>"
        "<b>Threshold</b>: a pixel is clean ice where the index exceeds it; empty = 2.0 for the ratio "
        "(literature 1.8–2.6; Paul et al. 2002, Paul & Kääb 2005) and 0.6 for NDSI.<br>"
        "<b>Minimum blue reflectance</b>: optional; ice must also exceed it in the blue band, which "
        "recovers ice in cast shadow less noisily and rejects dark shadowed rock (Paul & Kääb 2005 "
        "use TM1; e.g. 0.06–0.1). Empty: not used.<br>"
        "<b>Remove water (NDWI)</b>: open water is as bright in red against SWIR as ice, so the ratio "
        "maps lakes as ice; pixels with NDWI (green − NIR)/(green + NIR) above the <b>water NDWI "
        "threshold</b> (default 0.3, the lake mapper's default; McFeeters 1996) are not ice. Default on.<br>"
        "<b>3×3 median filter</b>: removes isolated pixels and fills small gaps (Paul et al. 2002). Default on.<br>"
        "<b>DEM</b>: optional; with it, pixels that are gently sloping (slope below the <b>debris slope "
        "limit</b>, default 24°), not vegetated (NDVI below the <b>debris NDVI limit</b>, default 0.2), "
        "not water and connected to clean ice become class 2, <i>debris_candidate</i> (Paul et al. 2004). "
        "They are candidates: moraines, outwash plains and valley floors next to ice pass the same tests, "
        "so check them against imagery. The DEM is resampled (bilinear) onto the image grid; DEM voids are never "
        "debris candidates.<br>"
        + DEM_HELP +
        "<b>Minimum outline area</b>: outlines smaller than this are dropped (default 0.01 km², the "
        "usual inventory minimum).<br>"
        + SCALE_HELP + OUTPUT_HELP +
        " Classes: 1 clean_ice, 2 debris_candidate.<br><br>"
        "References: Paul F. et al. (2002) Ann. Glaciol. 34; Hall D.K. et al. (1995) Remote Sens. Environ. "
        "54; Paul F. & Kääb A. (2005) Ann. Glaciol. 42; Paul F. et al. (2004) Remote Sens. Environ. 89; "
        "McFeeters S.K. (1996) Int. J. Remote Sens. 17."
    )

    def initAlgorithm(self, config=None):  # noqa: N802
        number = QgsProcessingParameterNumber
        add_sensor_parameters(self, self.ROLES)
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Index", ["Red/SWIR band ratio", "NDSI"],
                                                     defaultValue=0))
        self.addParameter(number("THRESHOLD", "Threshold (empty: 2.0 for the ratio, 0.6 for NDSI)", number.Double,
                                 None, optional=True))
        self.addParameter(number("BLUE_MIN", "Minimum blue reflectance (against cast shadow; empty: not used)",
                                 number.Double, None, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean("MASK_WATER", "Remove water (NDWI above threshold)", True))
        self.addParameter(number("WATER_NDWI", "Water NDWI threshold", number.Double, 0.3, minValue=-1.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterBoolean("MEDIAN", "3×3 median filter", True))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (for debris-covered ice candidates)",
                                                            optional=True))
        self.addParameter(number("DEBRIS_SLOPE", "Debris slope limit (degrees)", number.Double, 24.0, minValue=0.0,
                                 maxValue=90.0))
        self.addParameter(number("DEBRIS_NDVI", "Debris NDVI limit", number.Double, 0.2, minValue=-1.0, maxValue=1.0))
        add_dem_void_parameters(self, with_fill=False)
        self.addParameter(number("MIN_AREA", "Minimum outline area (km²)", number.Double, 0.01, minValue=0.0))
        add_scale_parameters(self)
        add_outputs(self, "Index (red/SWIR ratio or NDSI)")
        for c in GLACIER_CLASSES:
            self.addOutput(QgsProcessingOutputNumber(f"AREA_{c.name.upper()}", f"{c.name} area (km²)"))

    def process(self, parameters, context, feedback, progress):
        dem_layer = self.parameterAsRasterLayer(parameters, "DEM", context)
        result = map_glaciers(
            **sensor_arguments(self, parameters, context, self.ROLES),
            method=METHODS[self.parameterAsEnum(parameters, "METHOD", context)],
            threshold=optional_number(self, parameters, "THRESHOLD", context),
            blue_min=optional_number(self, parameters, "BLUE_MIN", context),
            water_ndwi=self.parameterAsDouble(parameters, "WATER_NDWI", context)
            if self.parameterAsBool(parameters, "MASK_WATER", context) else None,
            median=self.parameterAsBool(parameters, "MEDIAN", context),
            dem=raster_path(dem_layer) if dem_layer is not None else None,
            debris_slope_max=self.parameterAsDouble(parameters, "DEBRIS_SLOPE", context),
            debris_ndvi_max=self.parameterAsDouble(parameters, "DEBRIS_NDVI", context),
            plausible_elevation=plausible_elevation(self, parameters, context),
            min_area_km2=self.parameterAsDouble(parameters, "MIN_AREA", context),
            progress=progress,
        )
        return finish(self, parameters, context, feedback, result)
