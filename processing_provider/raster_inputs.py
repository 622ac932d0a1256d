"""Parameters that place a model run on a raster: band mapping, processing extent and mask
(shared by glacierseg:segment and glacierseg:explain)."""
from __future__ import annotations

import json
from typing import List, Optional, Sequence

from qgis.core import QgsCoordinateTransform, QgsProcessingException


def band_mapping(alg, parameters, name, context) -> Optional[List[int]]:
    """'3,8,11' -> [3, 8, 11]; None when empty."""
    text = alg.parameterAsString(parameters, name, context).strip()
    try:
        return [int(b) for b in text.replace(";", ",").split(",") if b.strip()] or None
    except ValueError:
        raise QgsProcessingException(f"Band mapping {text!r} must list band numbers, e.g. '3,8,11'.") from None


def extent_bounds(alg, parameters, name, context, layer) -> Optional[Sequence[float]]:
    """(xmin, ymin, xmax, ymax) of the extent parameter in the layer's CRS; None when empty."""
    if not parameters.get(name):
        return None
    extent = alg.parameterAsExtent(parameters, name, context, layer.crs())
    return (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())


def mask_shapes(alg, parameters, name, context, layer) -> Optional[List[dict]]:
    """GeoJSON geometries of the mask source's polygons in the layer's CRS; None without a mask."""
    source = alg.parameterAsSource(parameters, name, context)
    if source is None:
        return None
    to_raster = QgsCoordinateTransform(source.sourceCrs(), layer.crs(), context.transformContext())
    shapes = []
    for f in source.getFeatures():
        g = f.geometry()
        if g.isEmpty():
            continue
        g.transform(to_raster)
        shapes.append(json.loads(g.asJson()))
    return shapes
