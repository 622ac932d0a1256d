"""Parameters that place a model run on a raster: band mapping, processing extent and mask
(shared by glacierseg:segment and glacierseg:explain)."""
from __future__ import annotations

from typing import List, Optional, Sequence

from .base import vector_source


def band_mapping(alg, parameters, name, context) -> Optional[List[str]]:
    """'3,8,11' or 'B03,B08,B11' -> the raster bands (numbers or names, matched by the core) in
    the model's order; None when empty."""
    text = alg.parameterAsString(parameters, name, context)
    return [b.strip() for b in text.replace(";", ",").split(",") if b.strip()] or None


def extent_bounds(alg, parameters, name, context, layer) -> Optional[Sequence[float]]:
    """(xmin, ymin, xmax, ymax) of the extent parameter in the layer's CRS; None when empty."""
    if not parameters.get(name):
        return None
    extent = alg.parameterAsExtent(parameters, name, context, layer.crs())
    return (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())


def mask_shapes(alg, parameters, name, context, feedback, layer, progress) -> Optional[List[dict]]:
    """GeoJSON geometries of the mask's polygons in the layer's CRS, read by the core's polygon
    reader (invalid outlines repaired or refused by its one rule, points refused); None without a mask."""
    path, layer_name = vector_source(alg, parameters, name, context, feedback)
    if not path:
        return None
    from shapely.geometry import mapping

    from ..core.geo import read_features, transform_geom

    mask = read_features(path, layer_name or None, progress)
    return [mapping(transform_geom(g, mask.crs_wkt, layer.crs().toWkt()))
            for g in mask.geoms if g is not None and not g.is_empty]
