"""glacierseg:map_glaciers_band_ratio — clean ice (and debris-covered ice candidates) by band ratio."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingOutputNumber,
    QgsProcessingParameterBand,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..core.band_ratio import GLACIER_CLASSES, METHODS, map_glaciers
from ..ui.correction import prepare_outlines
from ..ui.styles import class_raster_beneath_outlines, class_raster_renderer, style_on_load
from .base import MAPPING, GlacierSegAlgorithm, geotiff_output, optional_number, raster_path
from .dem_parameters import HELP as DEM_HELP, add_dem_void_parameters, plausible_elevation

SENSOR_KEYS = ["sentinel2_msi", "landsat8_oli", "landsat7_etm", "landsat5_tm", ""]
SENSOR_LABELS = ["Sentinel-2 MSI (B2, B3, B4, B8, B11)", "Landsat 8/9 OLI (B2, B3, B4, B5, B6)",
                 "Landsat 7 ETM+ (B1, B2, B3, B4, B5)", "Landsat 5 TM (B1, B2, B3, B4, B5)",
                 "Other (set the band numbers)"]
BAND_LABELS = {"blue": "Blue band", "green": "Green band", "red": "Red band", "nir": "Near-infrared band",
               "swir": "Shortwave-infrared (≈1.6 µm) band"}
SENSOR_HELP = (
    "<b>Sensor</b>: finds the bands by the names in the raster's band descriptions (<i>S2:B04</i>, "
    "<i>B04</i>, <i>B4</i>, <i>SR_B4</i>): Sentinel-2 MSI B2/B3/B4/B8/B11, Landsat 8/9 OLI B2/B3/B4/B5/B6, "
    "Landsat 5 TM and 7 ETM+ B1/B2/B3/B4/B5 (blue/green/red/NIR/SWIR). Default Sentinel-2 MSI.<br>"
    "<b>… band</b>: band numbers set by hand win over the sensor's names (needed for rasters whose "
    "descriptions do not name the bands).<br>"
)
SCALE_HELP = (
    "<b>Reflectance scale / offset</b> (advanced): reflectance = value × scale + offset; default 0.0001 and 0 "
    "(Sentinel-2 L1C/L2A before processing baseline 04.00; from 04.00 on the offset is −0.1; Landsat "
    "Collection 2 Level-2: 0.0000275 and −0.2). Ratios and normalised differences need the offset right.<br>"
)
OUTPUT_HELP = (
    "<b>Outputs</b>, as glacierseg:segment: the index raster (float32, NaN nodata), the class raster "
    "(uint8, 255 nodata, paletted) and the outlines (GeoPackage from the GlacierSeg vectorizer, "
    "categorized by class_value; regions under the minimum area dropped). A pixel that is nodata in "
    "any band used is nodata in every output."
)


def add_sensor_parameters(alg, roles) -> None:
    """Input raster, sensor preset and one optional band-number parameter per role."""
    alg.addParameter(QgsProcessingParameterRasterLayer("INPUT", "Input raster (surface reflectance)"))
    alg.addParameter(QgsProcessingParameterEnum("SENSOR", "Sensor (finds bands by name)", SENSOR_LABELS, defaultValue=0))
    for role in roles:
        alg.addParameter(QgsProcessingParameterBand(f"{role.upper()}_BAND", BAND_LABELS[role], None, "INPUT",
                                                    optional=True))


def add_scale_parameters(alg) -> None:
    number = QgsProcessingParameterNumber
    for p in (number("SCALE", "Reflectance scale (reflectance = value × scale + offset)", number.Double, 0.0001),
              number("OFFSET", "Reflectance offset", number.Double, 0.0)):
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        alg.addParameter(p)


def add_outputs(alg, index_name: str) -> None:
    alg.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_INDEX", index_name))
    alg.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_CLASSES", "Classes"))
    alg.addParameter(QgsProcessingParameterVectorDestination("OUTPUT_OUTLINES", "Outlines", QgsProcessing.TypeVectorPolygon,
                                                             optional=True, createByDefault=True))


def sensor_arguments(alg, parameters, context, roles) -> dict:
    """Core keyword arguments shared by the mappers: image, sensor, bands, scale, offset, outputs."""
    image = raster_path(alg.parameterAsRasterLayer(parameters, "INPUT", context))
    bands = {r: alg.parameterAsInt(parameters, f"{r.upper()}_BAND", context) for r in roles}
    outlines = alg.parameterAsOutputLayer(parameters, "OUTPUT_OUTLINES", context) if parameters.get("OUTPUT_OUTLINES") else None
    return dict(
        image=image,
        index_out=geotiff_output(alg.parameterAsOutputLayer(parameters, "OUTPUT_INDEX", context), "index"),
        classes_out=geotiff_output(alg.parameterAsOutputLayer(parameters, "OUTPUT_CLASSES", context), "classes"),
        outlines_out=outlines,
        sensor=SENSOR_KEYS[alg.parameterAsEnum(parameters, "SENSOR", context)],
        bands={r: b for r, b in bands.items() if b > 0},
        scale=alg.parameterAsDouble(parameters, "SCALE", context),
        offset=alg.parameterAsDouble(parameters, "OFFSET", context),
    )


def finish(alg, parameters, context, feedback, result) -> dict:
    """Log the mapped areas, style and name the outputs and return them."""
    for c in result.class_info:
        feedback.pushInfo(f"{c.name}: {result.pixel_counts[c.name]} pixels, {result.area_km2[c.name]:.4f} km²")
    source = alg.parameterAsRasterLayer(parameters, "INPUT", context)
    source_name, image = source.name(), raster_path(source)

    def style_classes(lyr):
        lyr.setRenderer(class_raster_renderer(lyr, result.class_info))
        if result.outlines is not None:
            class_raster_beneath_outlines(lyr)

    style_on_load(context, result.classes, style_classes, source_name)
    style_on_load(context, result.index,  # the grey index would hide the image: off when outlines show the result
                  class_raster_beneath_outlines if result.outlines is not None else (lambda lyr: None), source_name)
    out = {"OUTPUT_INDEX": result.index, "OUTPUT_CLASSES": result.classes}
    if result.outlines is not None:
        feedback.pushInfo(f"{result.outlines.feature_count} outlines written.")
        style_on_load(context, result.outlines.path, lambda lyr: prepare_outlines(lyr, result.class_info, input_path=image),
                      source_name)
        out["OUTPUT_OUTLINES"] = result.outlines.path
    for c in result.class_info:
        out[f"AREA_{c.name.upper()}"] = result.area_km2[c.name]
    return out


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
        self.addParameter(QgsProcessingParameterEnum("METHOD", "Index", ["Red/SWIR band ratio", "NDSI"], defaultValue=0))
        self.addParameter(number("THRESHOLD", "Threshold (empty: 2.0 for the ratio, 0.6 for NDSI)", number.Double,
                                 None, optional=True))
        self.addParameter(number("BLUE_MIN", "Minimum blue reflectance (against cast shadow; empty: not used)",
                                 number.Double, None, optional=True, minValue=0.0))
        self.addParameter(QgsProcessingParameterBoolean("MASK_WATER", "Remove water (NDWI above threshold)", True))
        self.addParameter(number("WATER_NDWI", "Water NDWI threshold", number.Double, 0.3, minValue=-1.0, maxValue=1.0))
        self.addParameter(QgsProcessingParameterBoolean("MEDIAN", "3×3 median filter", True))
        self.addParameter(QgsProcessingParameterRasterLayer("DEM", "DEM (for debris-covered ice candidates)", optional=True))
        self.addParameter(number("DEBRIS_SLOPE", "Debris slope limit (degrees)", number.Double, 24.0, minValue=0.0, maxValue=90.0))
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
