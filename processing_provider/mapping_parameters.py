"""The parameters, outputs and styling that map_glaciers_band_ratio and map_lakes share: input
raster, sensor preset and band numbers, reflectance scale, the three outputs and their styles."""
from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingParameterBand,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterRasterLayer,
    QgsProcessingParameterVectorDestination,
)

from ..ui.correction import prepare_outlines
from ..ui.styles import class_raster_beneath_outlines, class_raster_renderer, style_on_load
from .base import geotiff_output, raster_path

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
    alg.addParameter(QgsProcessingParameterEnum("SENSOR", "Sensor (finds bands by name)", SENSOR_LABELS,
                                                defaultValue=0))
    for role in roles:
        alg.addParameter(QgsProcessingParameterBand(f"{role.upper()}_BAND", BAND_LABELS[role], None, "INPUT",
                                                    optional=True))


def add_scale_parameters(alg) -> None:
    """Reflectance scale and offset (advanced)."""
    number = QgsProcessingParameterNumber
    for p in (number("SCALE", "Reflectance scale (reflectance = value × scale + offset)", number.Double, 0.0001),
              number("OFFSET", "Reflectance offset", number.Double, 0.0)):
        p.setFlags(p.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
        alg.addParameter(p)


def add_outputs(alg, index_name: str) -> None:
    """The index and class rasters and the optional outlines."""
    alg.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_INDEX", index_name))
    alg.addParameter(QgsProcessingParameterRasterDestination("OUTPUT_CLASSES", "Classes"))
    alg.addParameter(QgsProcessingParameterVectorDestination("OUTPUT_OUTLINES", "Outlines",
                                                             QgsProcessing.TypeVectorPolygon,
                                                             optional=True, createByDefault=True))


def sensor_arguments(alg, parameters, context, roles) -> dict:
    """Core keyword arguments shared by the mappers: image, sensor, bands, scale, offset, outputs."""
    image = raster_path(alg.parameterAsRasterLayer(parameters, "INPUT", context))
    bands = {r: alg.parameterAsInt(parameters, f"{r.upper()}_BAND", context) for r in roles}
    outlines = (alg.parameterAsOutputLayer(parameters, "OUTPUT_OUTLINES", context)
                if parameters.get("OUTPUT_OUTLINES") else None)
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
        style_on_load(context, result.outlines.path,
                      lambda lyr: prepare_outlines(lyr, result.class_info, input_path=image),
                      source_name)
        out["OUTPUT_OUTLINES"] = result.outlines.path
    for c in result.class_info:
        out[f"AREA_{c.name.upper()}"] = result.area_km2[c.name]
    return out
