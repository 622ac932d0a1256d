"""Split glacier complexes into individual glaciers with a DEM (Kienholz et al., 2013).

Kienholz, C., Hock, R. and Arendt, A. A. (2013): A new semi-automatic approach for
dividing glacier complexes into individual glaciers. J. Glaciol. 59(217), 925–937,
doi:10.3189/2013JoG12J138.

Per complex, on a local UTM grid: the DEM is smoothed and sink-filled inside a buffer of
the outline, a "gutter" just outside the outline is lowered, D8 flow routing and flow
accumulation are computed (pysheds), pour points are where flow from the complex ends (the
gutter's low points), each gets its flowshed, flowsheds are merged when they meet inside the circle of
radius r = min(a·F^b, c) around a pour point (F: its flow accumulation), and slivers are
merged into the neighbour with the longest shared boundary. See docs/glacier-split.md.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from .errors import InputError
from .io import atomic_outputs
from .geo import (WGS84, grid_around, raster_cell_size_m, read_features, transform_geom,
                  utm_epsg_for, valid_polygon, warp_raster, write_features)
from .progress import Progress, SubProgress, check_cancel, ensure_progress
from .split_parameters import SplitParameters


@dataclass
class ComplexSplit:
    """Glaciers (and divides) of one complex, in the local UTM CRS ``epsg``."""

    complex_id: str
    epsg: int
    glaciers: List[BaseGeometry]
    divides: List[Tuple[int, int, BaseGeometry]]  # (i, j) indices into glaciers, line
    cell_size_m: float


# ------------------------------------------------------------------------------ one complex
def split_complex(
    polygon: BaseGeometry,
    crs: Any,
    dem_path: str,
    complex_id: str = "1",
    params: SplitParameters = SplitParameters(),
    progress: Optional[Progress] = None,
) -> ComplexSplit:
    """Split one glacier complex (``polygon`` in ``crs``) into glaciers with the DEM.

    Returns glaciers and divides in the UTM zone of the complex; the glaciers partition
    the complex (their union is the complex, they do not overlap)."""
    progress = ensure_progress(progress)
    params.validate()
    if polygon is None or polygon.is_empty:
        raise InputError(f"Glacier complex '{complex_id}' has an empty geometry. Remove it or repair the layer.")
    polygon = valid_polygon(polygon, f"complex '{complex_id}'", "The glacier outlines", progress)  # area tested after repair
    polygon = shapely.union_all([p for p in shapely.get_parts(polygon) if p.geom_type == "Polygon"])
    centre = transform_geom(polygon, crs, WGS84).representative_point()
    epsg = utm_epsg_for(centre.x, centre.y)
    poly = transform_geom(polygon, crs, epsg)
    dx = params.cell_size_m or raster_cell_size_m(dem_path, centre.x, centre.y)

    transform, shape = grid_around(poly.bounds, dx, params.buffer_cells + 2)
    dem = warp_raster(dem_path, epsg, transform, shape, "bilinear")
    filled_outline = shapely.union_all([Polygon(p.exterior) for p in shapely.get_parts(poly)])
    touched = _rasterize(filled_outline, transform, shape, all_touched=True)
    missing = np.isnan(dem) & touched
    if missing.any():
        raise InputError(
            f"The DEM '{os.path.basename(dem_path)}' does not cover glacier complex '{complex_id}' "
            f"({100.0 * missing.sum() / touched.sum():.1f} % of it has no elevation). Use a DEM that covers every "
            f"outline with a margin of at least {params.buffer_cells * dx:.0f} m, or leave that complex out.")
    mask = _rasterize(filled_outline, transform, shape, all_touched=False)
    if mask.sum() < 2:  # smaller than the grid: nothing to split
        return ComplexSplit(complex_id, epsg, [poly], [], dx)
    check_cancel(progress)

    labels = _flowshed_glaciers(dem, mask, transform, epsg, dx, params, progress)
    progress.set_progress(70)
    check_cancel(progress)
    pieces = _label_pieces(labels, mask, transform, poly)
    glaciers = _merge_slivers(pieces, params)
    glaciers = sorted(glaciers, key=lambda g: -g.area)
    progress.set_progress(100)
    return ComplexSplit(complex_id, epsg, glaciers, ice_divides(glaciers), dx)


def _rasterize(geom: BaseGeometry, transform, shape, all_touched: bool) -> np.ndarray:
    from rasterio.features import rasterize

    return rasterize([(geom, 1)], out_shape=shape, transform=transform, fill=0, all_touched=all_touched,
                     dtype="uint8").astype(bool)


def _flowshed_glaciers(dem, mask, transform, epsg, dx, params: SplitParameters, progress) -> np.ndarray:
    """Glacier label of each complex cell (0 elsewhere) from flowsheds merged by distance."""
    import pyproj
    from pysheds.grid import Grid
    from pysheds.sview import Raster, ViewFinder

    outside = ndimage.distance_transform_edt(~mask)  # cells from the complex
    buffer1 = outside <= params.buffer_cells
    gutter = (outside > params.gutter_offset_cells) & (outside <= params.gutter_offset_cells + params.gutter_cells)
    # Missing values in the buffer: nearest valid elevation (the complex itself is covered).
    nan = np.isnan(dem)
    if nan.any():
        idx = ndimage.distance_transform_edt(nan, return_distances=False, return_indices=True)
        dem = dem[tuple(idx)]
    if params.smoothing_cells > 1:
        dem = ndimage.median_filter(dem, size=params.smoothing_cells, mode="nearest")

    vf = ViewFinder(affine=transform, shape=dem.shape, nodata=np.nan, crs=pyproj.Proj(f"EPSG:{epsg}"))
    grid = Grid(viewfinder=vf)
    conditioned = grid.resolve_flats(grid.fill_depressions(grid.fill_pits(Raster(dem, viewfinder=vf))))
    lowered = np.array(conditioned, dtype=np.float64)
    lowered[gutter] -= params.gutter_depth_m
    wall = np.nanmax(lowered) + params.gutter_depth_m  # a raised rim: flow ends inside the grid,
    lowered[[0, -1], :] = wall  # where pysheds can trace catchments
    lowered[:, [0, -1]] = wall
    fdir = grid.flowdir(Raster(lowered, viewfinder=vf))
    acc = np.asarray(grid.accumulation(fdir, weights=Raster(buffer1.astype(np.float64), viewfinder=vf)))
    progress.set_progress(30)

    # Pour points: where flow from the complex ends (the gutter's low points, in practice),
    # largest flow accumulation first; each gets its flowshed.
    from_complex = np.asarray(grid.accumulation(fdir, weights=Raster(mask.astype(np.float64), viewfinder=vf)))
    rows, cols = np.nonzero((np.asarray(fdir) <= 0) & (from_complex > 0))
    order = np.argsort(-acc[rows, cols], kind="stable")
    flowsheds = np.zeros(dem.shape, np.int32)
    pour_points: List[Tuple[int, int, float]] = []
    for n, k in enumerate(order):
        r, c = int(rows[k]), int(cols[k])
        catchment = np.asarray(grid.catchment(x=c, y=r, fdir=fdir, xytype="index")) & (flowsheds == 0)
        pour_points.append((r, c, float(acc[r, c])))
        flowsheds[catchment] = len(pour_points)
        if n % 20 == 0:
            check_cancel(progress)
    flowsheds[~mask] = 0
    progress.set_progress(50)

    # Merge flowsheds that meet within r = min(a F^b, c) of a pour point (in the complex).
    parent = list(range(len(pour_points) + 1))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for k, (r, c, f) in enumerate(pour_points, start=1):
        rad = params.radius_m(f, dx) / dx
        if rad < 1:
            continue
        h = int(math.ceil(rad))
        r0, r1, c0, c1 = max(r - h, 0), min(r + h + 1, mask.shape[0]), max(c - h, 0), min(c + h + 1, mask.shape[1])
        yy, xx = np.mgrid[r0:r1, c0:c1]
        dist = np.hypot(yy - r, xx - c)
        disc = (dist <= rad) & mask[r0:r1, c0:c1]
        comps, n_comp = ndimage.label(disc, structure=np.ones((3, 3)))
        if n_comp == 0:
            continue
        nearest = 1 + int(np.argmin(ndimage.minimum(dist, comps, index=np.arange(1, n_comp + 1))))
        for other in np.unique(flowsheds[r0:r1, c0:c1][comps == nearest]):
            if other > 0:
                parent[find(int(other))] = find(k)
    roots = np.array([find(i) for i in range(len(parent))], np.int32)
    return np.where(flowsheds > 0, roots[flowsheds], 0).astype(np.int32)


def _label_pieces(labels, mask, transform, poly) -> List[BaseGeometry]:
    """Label regions (nearest label outside the complex cells) cut by the exact outline."""
    from rasterio.features import shapes

    idx = ndimage.distance_transform_edt(labels == 0, return_distances=False, return_indices=True)
    full = labels[tuple(idx)]
    pieces: List[BaseGeometry] = []
    poly = shapely.from_wkb(shapely.to_wkb(poly))  # a private copy to prepare
    shapely.prepare(poly)
    for geom, _ in shapes(full, transform=transform, connectivity=4):
        region = shapely.geometry.shape(geom)
        if not shapely.intersects(poly, region):
            continue
        part = shapely.intersection(region, poly)
        pieces.extend(p for p in shapely.get_parts(part) if p.geom_type == "Polygon" and p.area > 0)
    return pieces


def _merge_slivers(pieces: Sequence[BaseGeometry], params: SplitParameters) -> List[BaseGeometry]:
    """Merge sliver pieces, smallest first, into the neighbour with the longest shared boundary."""
    a1, a2 = params.sliver_area_km2 * 1e6, params.sliver_area2_km2 * 1e6

    def is_sliver(g: BaseGeometry) -> bool:
        compact = 2.0 * math.sqrt(math.pi * g.area) / g.length if g.length else 1.0
        return g.area < a1 or (g.area < a2 and compact < params.sliver_compactness)

    alive: Dict[int, BaseGeometry] = dict(enumerate(pieces))
    owner = list(range(len(pieces)))
    tree = shapely.STRtree(list(pieces))

    def whose(i: int) -> int:
        while owner[i] != i:
            owner[i] = owner[owner[i]]
            i = owner[i]
        return i

    changed = True
    while changed:
        changed = False
        for i in sorted(alive, key=lambda k: alive[k].area):
            if i not in alive or not is_sliver(alive[i]):
                continue
            geom = alive[i]
            boundary = geom.boundary
            best, best_len = None, 0.0
            for j in {whose(int(j)) for j in tree.query(geom, predicate="intersects")} - {i}:
                shared = shapely.intersection(boundary, alive[j]).length
                if shared > best_len:
                    best, best_len = j, shared
            if best is None:
                continue  # an island: it stays a glacier of its own
            alive[best] = shapely.union(alive[best], geom)
            owner[i] = best
            del alive[i]
            changed = True
    return [_clean(g) for g in alive.values()]


def _clean(g: BaseGeometry) -> BaseGeometry:
    """Drop zero-area artefacts of the overlay (lines, points) from a polygonal result."""
    parts = [p for p in shapely.get_parts(g) if p.geom_type == "Polygon" and p.area > 0]
    return parts[0] if len(parts) == 1 else shapely.MultiPolygon(parts)


def ice_divides(glaciers: Sequence[BaseGeometry]) -> List[Tuple[int, int, BaseGeometry]]:
    """Shared boundaries (ice divides) between adjacent glaciers, as merged lines."""
    tree = shapely.STRtree(list(glaciers))
    out = []
    for i, g in enumerate(glaciers):
        boundary = g.boundary
        for j in tree.query(g, predicate="intersects"):
            j = int(j)
            if j <= i:
                continue
            shared = shapely.intersection(boundary, glaciers[j])
            lines = [p for p in shapely.get_parts(shared) if p.geom_type in ("LineString", "MultiLineString")]
            if lines and sum(ln.length for ln in lines) > 0:
                out.append((i, j, shapely.line_merge(shapely.union_all(lines))))
    return out


# ------------------------------------------------------------------------------ files
GLACIER_FIELDS = (("glac_id", "int"), ("complex_id", "str"), ("area_km2", "real"))
DIVIDE_FIELDS = (("complex_id", "str"), ("glac_id_1", "int"), ("glac_id_2", "int"), ("length_m", "real"))


def _field_defns(spec):
    from osgeo import ogr

    types = {"int": ogr.OFTInteger, "str": ogr.OFTString, "real": ogr.OFTReal}
    return [ogr.FieldDefn(name, types[kind]) for name, kind in spec]


def split_glaciers(
    outlines_path: str,
    dem_path: str,
    glaciers_path: str,
    divides_path: Optional[str] = None,
    id_field: Optional[str] = None,
    params: SplitParameters = SplitParameters(),
    outlines_layer: Optional[str] = None,
    progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Split every complex of a polygon layer with a DEM; write glaciers (and divides).

    Outputs are in the outlines' CRS; each glacier carries the id of its complex
    (``id_field``'s value, else the feature id). Returns counts and paths."""
    progress = ensure_progress(progress)
    feats = read_features(outlines_path, outlines_layer, progress)
    if id_field and feats.attributes and id_field not in feats.attributes[0]:
        raise InputError(f"The outlines have no field '{id_field}'. Pick one of: "
                         f"{', '.join(feats.attributes[0]) or '(no fields)'}.")
    if not any(g is not None and not g.is_empty for g in feats.geoms):
        raise InputError(f"'{outlines_path}' holds no polygons. Give a layer of glacier complex outlines.")
    glaciers, gattrs, divides, dattrs = [], [], [], []
    n = len(feats.geoms)
    for k, (geom, attrs, fid) in enumerate(zip(feats.geoms, feats.attributes, feats.fids)):
        if geom is None or geom.is_empty:
            continue
        cid = str(attrs.get(id_field)) if id_field else str(fid)
        result = split_complex(geom, feats.crs_wkt, dem_path, cid, params, SubProgress(progress, 100 * k / n,
                                                                                       100 * (k + 1) / n))
        first = len(glaciers) + 1
        for g in result.glaciers:
            glaciers.append(transform_geom(g, result.epsg, feats.crs_wkt))
            gattrs.append({"glac_id": len(glaciers), "complex_id": cid, "area_km2": g.area / 1e6})
        for i, j, line in result.divides:
            divides.append(transform_geom(line, result.epsg, feats.crs_wkt))
            dattrs.append({"complex_id": cid, "glac_id_1": first + i, "glac_id_2": first + j,
                           "length_m": line.length})
        progress.push_info(f"Complex '{cid}': {len(result.glaciers)} glacier(s) on a {result.cell_size_m:.1f} m "
                           f"grid (EPSG:{result.epsg}).")
    with atomic_outputs(glaciers_path, divides_path, progress=progress) as (tmp, tmp_div):
        write_features(tmp, glaciers, feats.crs_wkt, gattrs, _field_defns(GLACIER_FIELDS),
                       _layer_name(glaciers_path))
        if divides_path:
            write_features(tmp_div, divides, feats.crs_wkt, dattrs, _field_defns(DIVIDE_FIELDS),
                           _layer_name(divides_path), geometry="line")
    return {"glaciers": glaciers_path, "divides": divides_path, "n_glaciers": len(glaciers),
            "n_divides": len(divides)}


def _layer_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
