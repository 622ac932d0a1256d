"""Layers behind input parameters: the file a layer reads (or a temporary copy of it) and the
file behind a vector input (shared by glacierseg:evaluate, optimize_model, split_glaciers and
inventory_attributes)."""
from __future__ import annotations

import os

from qgis.core import QgsProcessingException, QgsProcessingUtils, QgsRasterLayer, QgsVectorFileWriter

from .base import raster_path


def layer_path(layer, context):
    """File path of a raster layer, or the ``core.geo.VectorSource`` of a vector layer (other
    vector sources, and layers with a filter, are first saved to a temporary GeoPackage)."""
    from ..core.geo import VectorSource  # here, not at load: the provider loads without shapely

    if layer is None:
        raise QgsProcessingException("No layer was given.")
    if isinstance(layer, QgsRasterLayer):
        return raster_path(layer)
    source = layer.source()
    if layer.providerType() == "ogr" and os.path.isfile(source.split("|")[0]) and "subset=" not in source.lower():
        return VectorSource.of(source)
    path = QgsProcessingUtils.generateTempFilename(f"{layer.id()}.gpkg")
    options = QgsVectorFileWriter.SaveVectorOptions()
    options.driverName = "GPKG"
    error, message, _, _ = QgsVectorFileWriter.writeAsVectorFormatV3(layer, path, context.transformContext(), options)
    if error != QgsVectorFileWriter.NoError:
        raise QgsProcessingException(f"Could not save layer '{layer.name()}' for the comparison: {message}")
    return VectorSource(path)


def input_file(alg, parameters, context, name: str = "INPUT") -> str:
    """The file behind a vector input parameter ('' for other sources): where to keep edited outputs."""
    layer = alg.parameterAsVectorLayer(parameters, name, context)
    return layer.source().split("|")[0] if layer is not None else ""
