"""Split glacier complexes into individual glaciers with a DEM (Kienholz et al., 2013).

Kienholz, C., Hock, R. and Arendt, A. A. (2013): A new semi-automatic approach for
dividing glacier complexes into individual glaciers. J. Glaciol. 59(217), 925–937,
doi:10.3189/2013JoG12J138.

Per complex, on a local UTM grid of the method's cell size (40 m, whatever the DEM's): DEM
voids are filled (core.dem); the DEM is smoothed and sink-filled and a "gutter" just outside
the outline is lowered (``_lowered_dem``); D-infinity flow routing and flow accumulation
(pysheds) give the pour points, where flow from the complex ends, and their flowsheds
(``_flowsheds``); flowsheds are merged when they meet inside the disc of radius
r = min(a·F^b, c) around a pour point (``_merge_flowsheds``); slivers, interior pieces and
edge strips are merged into the neighbour with the longest shared boundary (``merge_pieces``).
A complex that cannot be split is written unsplit with its ``split_status``.

The paper's methods text could not be read here (only its abstract and Section 1), so no
section, equation or table of it is cited: the constants are those of the open
implementations that keep its workflow (OGGM/partitioning; MASSIVE's kienholz.py for the
compactness), and docs/glacier-split.md lists every rule, its source and every deviation.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union, cast

import numpy as np
import shapely
from scipy import ndimage
from shapely.geometry import Polygon
from shapely.geometry.base import BaseGeometry

from .dem import PLAUSIBLE_ELEVATION_M, Dem, fill_voids
from .errors import CancelledError, InputError, NoDemError, first_reasons
from .geo import (
    WGS84,
    cells_inside,
    feature_name,
    grid_around,
    raster_cell_size_m,
    rasterize,
    read_features,
    transform_geom,
    utm_area_m2,
    utm_epsg_for,
    valid_polygon,
    write_features,
)
from .io import atomic_outputs
from .parameters import SplitParameters
from .progress import Progress, SubProgress, check_cancel, ensure_progress


@dataclass
class ComplexSplit:
    """Glaciers (and divides) of one complex, in the local UTM CRS ``epsg``."""

    complex_id: str
    epsg: int
    glaciers: List[BaseGeometry]
    divides: List[Tuple[int, int, BaseGeometry]]  # (i, j) indices into glaciers, line
    cell_size_m: float
    filled: List[float]  # per glacier: share of its cells whose elevation was a filled void
    void_fraction: float  # share of the complex's cells without elevation (filled)


# ------------------------------------------------------------------------------ one complex
def split_complex(
    polygon: BaseGeometry,
    crs: Any,
    dem: Union[str, Dem],
    complex_id: str = "1",
    params: SplitParameters = SplitParameters(),
    progress: Optional[Progress] = None,
) -> ComplexSplit:
    """Split one glacier complex (``polygon`` in ``crs``) into glaciers with the DEM (a path or
    an open ``Dem``).

    Returns glaciers and divides in the UTM zone of the complex; the glaciers partition
    the complex (their union is the complex, they do not overlap). Raises ``NoDemError``
    when more than ``params.max_void_fraction`` of the complex has no elevation."""
    if isinstance(dem, str):
        with Dem(dem, PLAUSIBLE_ELEVATION_M, progress) as opened:
            return split_complex(polygon, crs, opened, complex_id, params, progress)
    progress = ensure_progress(progress)
    params.validate()
    if polygon is None or polygon.is_empty:
        raise InputError(f"Glacier complex '{complex_id}' has an empty geometry. Remove it or repair the layer.")
    # area tested after repair
    polygon = valid_polygon(polygon, f"complex '{complex_id}'", "The glacier outlines", progress)
    polygon = shapely.union_all([p for p in shapely.get_parts(polygon) if p.geom_type == "Polygon"])
    centre = transform_geom(polygon, crs, WGS84).representative_point()
    epsg = utm_epsg_for(centre.x, centre.y)
    poly = transform_geom(polygon, crs, epsg)
    dx = params.cell_size_m or raster_cell_size_m(dem.path, centre.x, centre.y)

    transform, shape = grid_around(poly.bounds, dx, params.buffer_cells + 2)
    z = dem.read(epsg, transform, shape, "bilinear")
    filled_outline = shapely.union_all([Polygon(p.exterior) for p in shapely.get_parts(poly)])
    touched = rasterize([(filled_outline, 1)], transform, shape, all_touched=True).astype(bool)
    void_fraction = float((~np.isfinite(z) & touched).sum() / touched.sum())
    if void_fraction > params.max_void_fraction or not np.isfinite(z).any():
        raise NoDemError(
            f"The DEM '{dem.name}' does not cover glacier complex '{complex_id}' ({100.0 * void_fraction:.1f} % of it "
            f"has no elevation; at most {100.0 * params.max_void_fraction:.0f} % is filled from the surroundings). "
            f"Use a DEM that covers every outline with a margin of at least {params.buffer_cells * dx:.0f} m, "
            "or leave that complex out.")
    z, void = fill_voids(z)
    if void_fraction > 0:
        progress.push_info(f"Complex '{complex_id}': {100.0 * void_fraction:.1f} % of it had no elevation "
                           "(DEM voids), filled by interpolation from the voids' edges.")
    mask = rasterize([(filled_outline, 1)], transform, shape).astype(bool)
    if mask.sum() < 2:  # smaller than the grid: nothing to split
        return ComplexSplit(complex_id, epsg, [poly], [], dx, [void_fraction], void_fraction)
    check_cancel(progress)

    labels = _flowshed_glaciers(z, mask, transform, epsg, dx, params, progress)
    progress.set_progress(70)
    check_cancel(progress)
    pieces = _label_pieces(labels, mask, transform, poly)
    glaciers = merge_pieces(pieces, poly, dx, params)
    glaciers = sorted(glaciers, key=lambda g: -g.area)
    filled = [_share(void, g, transform) for g in glaciers]
    progress.set_progress(100)
    return ComplexSplit(complex_id, epsg, glaciers, ice_divides(glaciers), dx, filled, void_fraction)


def _share(cells: np.ndarray, geom: BaseGeometry, transform) -> float:
    """Share of the cells of ``geom`` (centre inside; all touched when none) set in ``cells``."""
    inside = cells_inside(geom, transform, cast(Tuple[int, int], cells.shape))  # a 2-D grid
    return float(cells[inside].mean()) if inside.any() else 0.0


def _flowshed_glaciers(dem, mask, transform, epsg, dx, params: SplitParameters, progress) -> np.ndarray:
    """Glacier label of each complex cell (0 elsewhere): the flowsheds of the lowered DEM,
    merged by distance (Kienholz et al. 2013; steps 3–7 of docs/glacier-split.md)."""
    import pyproj
    from pysheds.grid import Grid
    from pysheds.sview import Raster, ViewFinder

    vf = ViewFinder(affine=transform, shape=dem.shape, nodata=np.nan, crs=pyproj.Proj(f"EPSG:{epsg}"))
    grid = Grid(viewfinder=vf)
    outside = ndimage.distance_transform_edt(~mask)  # cells from the complex
    buffer1 = outside <= params.buffer_cells
    lowered = _lowered_dem(grid, Raster(dem, viewfinder=vf), outside, params)
    fdir = grid.flowdir(Raster(lowered, viewfinder=vf), routing=params.routing)
    acc = np.asarray(grid.accumulation(fdir, weights=Raster(buffer1.astype(np.float64), viewfinder=vf),
                                        routing=params.routing))
    progress.set_progress(30)
    from_complex = np.asarray(grid.accumulation(fdir, weights=Raster(mask.astype(np.float64), viewfinder=vf),
                                               routing=params.routing))
    flowsheds, pour_points = _flowsheds(grid, fdir, acc, from_complex, params, progress)
    flowsheds[~mask] = 0
    progress.set_progress(50)
    return _merge_flowsheds(flowsheds, pour_points, mask, dx, params)


def _lowered_dem(grid, dem, outside: np.ndarray, params: SplitParameters) -> np.ndarray:
    """The DEM smoothed (median filter), sink-filled (pysheds) and lowered by the gutter depth
    in the gutter (``gutter_offset_cells`` to ``gutter_offset_cells + gutter_cells`` outside
    the complex), so that flow leaving the complex collects at the gutter's low points; the
    grid's rim is raised so that all flow ends inside the grid."""
    from pysheds.sview import Raster

    if params.smoothing_cells > 1:
        dem = Raster(ndimage.median_filter(np.asarray(dem), size=params.smoothing_cells, mode="nearest"),
                     viewfinder=dem.viewfinder)
    conditioned = grid.resolve_flats(grid.fill_depressions(grid.fill_pits(dem)))
    lowered = np.array(conditioned, dtype=np.float64)
    gutter = (outside > params.gutter_offset_cells) & (outside <= params.gutter_offset_cells + params.gutter_cells)
    lowered[gutter] -= params.gutter_depth_m
    wall = np.nanmax(lowered) + params.gutter_depth_m  # a raised rim: flow ends inside the grid,
    lowered[[0, -1], :] = wall  # where pysheds can trace catchments
    lowered[:, [0, -1]] = wall
    return lowered


def _flowsheds(grid, fdir, acc: np.ndarray, from_complex: np.ndarray, params: SplitParameters,
               progress) -> Tuple[np.ndarray, List[Tuple[int, int, float]]]:
    """Pour points — where flow from the complex ends (pits and flats of the lowered DEM: the
    gutter's low points, in practice) — with their flow accumulation F (cells within buffer
    1), largest F first, and the flowshed of each (a cell draining to several goes to the
    first). Returns the flowshed number of each cell (0: none) and the pour points (row, col, F)."""
    direction = np.asarray(fdir, dtype=np.float64)  # D8: 0 nodata, -1 flat, -2 pit; D-inf: angle >= 0, else flat/pit
    ends = ~(direction >= 0) if params.routing == "dinf" else direction <= 0
    rows, cols = np.nonzero(ends & (from_complex > 0))
    order = np.argsort(-acc[rows, cols], kind="stable")
    flowsheds = np.zeros(acc.shape, np.int32)
    pour_points: List[Tuple[int, int, float]] = []
    for n, k in enumerate(order):
        r, c = int(rows[k]), int(cols[k])
        catchment = np.asarray(grid.catchment(x=c, y=r, fdir=fdir, xytype="index",
                                               routing=params.routing)) & (flowsheds == 0)
        pour_points.append((r, c, float(acc[r, c])))
        flowsheds[catchment] = len(pour_points)
        if n % 20 == 0:
            check_cancel(progress)
    return flowsheds, pour_points


def _merge_flowsheds(flowsheds: np.ndarray, pour_points: Sequence[Tuple[int, int, float]], mask: np.ndarray,
                     dx: float, params: SplitParameters) -> np.ndarray:
    """Merge flowsheds by distance (Kienholz et al. 2013, "P_glac"): around each pour point a
    disc of radius r = min(a·F^b, c) (``SplitParameters.radius_m``) is cut with the complex;
    every flowshed met by the part of it nearest to the pour point joins the pour point's
    glacier (union-find, so merges chain). The constants as OGGM/partitioning's
    ``_create_p_glac`` sets them; the paper's equation number could not be read here."""
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


SLIVER, ELONGATED_SLIVER, INTERIOR_PIECE, EDGE_STRIP = "sliver", "elongated sliver", "interior piece", "edge strip"


def compactness(g: BaseGeometry) -> float:
    """2·√(π·A)/P: 1 for a disc, small for elongated shapes (the measure MASSIVE's kienholz.py
    applies to the sliver rule; OGGM/partitioning uses π·(largest x or y extent)/P instead)."""
    return 2.0 * math.sqrt(math.pi * g.area) / g.length if g.length else 1.0


def piece_kind(g: BaseGeometry, rim: BaseGeometry, params: SplitParameters) -> Optional[str]:
    """Which merge rule applies to the piece ``g`` (None: it stays a glacier).

    ``rim``: the complex outline (buffered by a hair).

    - sliver: area < ``sliver_area_km2`` (0.1 km²), or elongated sliver: area <
      ``sliver_area2_km2`` (0.2 km²) with compactness < ``sliver_compactness`` (0.5) — the
      sliver rule of Kienholz et al. (2013) with the thresholds as kept by OGGM/partitioning
      (``_is_sliver``) and MASSIVE (``filter_out_slivers``); the paper's section and table
      could not be read here (docs/glacier-split.md);
    - interior piece (ours): area < ``interior_area_km2`` (1 km²) with less than
      ``interior_rim_share`` (50 %) of its perimeter on the complex outline;
    - edge strip (ours): area < ``interior_area_km2``, elongated (compactness <
      ``sliver_compactness``) and at least ``interior_rim_share`` of its perimeter on the
      outline — merged only when it runs along one neighbour, sharing at least
      ``edge_strip_neighbour_share`` (30 %) of its perimeter with it (``merge_pieces``)."""
    area = g.area
    elongated = compactness(g) < params.sliver_compactness
    if area < params.sliver_area_km2 * 1e6:
        return SLIVER
    if area < params.sliver_area2_km2 * 1e6 and elongated:
        return ELONGATED_SLIVER
    if area >= params.interior_area_km2 * 1e6:
        return None
    rim_share = shapely.intersection(g.boundary, rim).length / g.length
    if rim_share < params.interior_rim_share:
        return INTERIOR_PIECE
    return EDGE_STRIP if elongated else None


def merge_pieces(pieces: Sequence[BaseGeometry], outline: BaseGeometry, dx: float,
                 params: SplitParameters) -> List[BaseGeometry]:
    """Merge slivers, interior pieces and edge strips (``piece_kind``), smallest first and
    until none is left, each into the neighbour with the longest shared boundary — the
    sliver rule of Kienholz et al. (2013) as OGGM/partitioning (``_merge_sliver``) and
    MASSIVE implement it. Our two rules (interior pieces, edge strips) only merge a piece
    into a neighbour at least ``merge_neighbour_ratio`` (2) times its area, so that the
    similar-sized sectors of an ice cap stay apart. A piece with no neighbour (an isolated
    part of a multi-part complex) stays a glacier of its own."""
    rim = outline.boundary.buffer(0.01 * dx)  # the complex's outline (nunataks included)
    alive: Dict[int, BaseGeometry] = dict(enumerate(pieces))
    owner = list(range(len(pieces)))
    tree = shapely.STRtree(list(pieces))

    def whose(i: int) -> int:
        while owner[i] != i:
            owner[i] = owner[owner[i]]
            i = owner[i]
        return i

    def longest_shared(i: int) -> Tuple[Optional[int], float]:
        geom = alive[i]
        boundary = geom.boundary
        best, best_len = None, 0.0
        for j in {whose(int(j)) for j in tree.query(geom, predicate="intersects")} - {i}:
            shared = shapely.intersection(boundary, alive[j]).length
            if shared > best_len:
                best, best_len = j, shared
        return best, best_len

    changed = True
    while changed:
        changed = False
        for i in sorted(alive, key=lambda k: alive[k].area):
            if i not in alive:
                continue
            geom = alive[i]
            kind = piece_kind(geom, rim, params)
            if kind is None:
                continue
            best, best_len = longest_shared(i)
            if best is None:
                continue  # an island: it stays a glacier of its own
            if kind == EDGE_STRIP and best_len < params.edge_strip_neighbour_share * geom.length:
                continue  # a narrow glacier joining the complex at its ends, not a strip along a neighbour
            if kind in (INTERIOR_PIECE, EDGE_STRIP) and alive[best].area < params.merge_neighbour_ratio * geom.area:
                continue
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
GLACIER_FIELDS = (("glac_id", "int"), ("complex_id", "str"), ("area_km2", "real"), ("split_status", "str"),
                  ("filled_pct", "real"))
DIVIDE_FIELDS = (("complex_id", "str"), ("glac_id_1", "int"), ("glac_id_2", "int"), ("length_m", "real"))
SPLIT, UNSPLIT_NO_DEM, UNSPLIT_ERROR = "split", "unsplit_no_dem", "unsplit_error"


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
    plausible_elevation: Sequence[float] = PLAUSIBLE_ELEVATION_M,
    progress: Optional[Progress] = None,
) -> Dict[str, Any]:
    """Split every complex of a polygon layer with a DEM; write glaciers (and divides).

    Outputs are in the outlines' CRS; each glacier carries the id of its complex
    (``id_field``'s value, else its RGI/GLIMS id, else the feature id), ``split_status``
    (split / unsplit_no_dem / unsplit_error: message) and ``filled_pct`` (its share of filled
    DEM voids, %). A complex that cannot be split is written unsplit with a warning; only when
    no complex could be split is the run refused. Returns counts and paths."""
    progress = ensure_progress(progress)
    feats = _read_complexes(outlines_path, outlines_layer, id_field, progress)
    layer = _GlacierLayer(feats.crs_wkt)
    n = len(feats.geoms)
    with Dem(dem_path, plausible_elevation, progress) as dem:
        for k, (geom, attrs, fid) in enumerate(zip(feats.geoms, feats.attributes, feats.fids)):
            if geom is None or geom.is_empty:
                continue
            cid = str(attrs.get(id_field)) if id_field else feature_name(attrs, fid)
            try:
                result = split_complex(geom, feats.crs_wkt, dem, cid, params,
                                       SubProgress(progress, 100 * k / n, 100 * (k + 1) / n))
            except CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 — one bad complex never fails the layer
                layer.add_unsplit(geom, cid, exc, progress)
                continue
            layer.add_split(result, cid, progress)
    layer.report(progress)
    with atomic_outputs(glaciers_path, divides_path, progress=progress) as (tmp, tmp_div):
        tmp = cast(str, tmp)  # glaciers_path is given: never None
        write_features(tmp, layer.glaciers, feats.crs_wkt, layer.glacier_attrs, _field_defns(GLACIER_FIELDS),
                       _layer_name(glaciers_path))
        if divides_path:
            assert tmp_div is not None  # a given path gets a temporary path
            write_features(tmp_div, layer.divides, feats.crs_wkt, layer.divide_attrs, _field_defns(DIVIDE_FIELDS),
                           _layer_name(divides_path), geometry="line")
    return {"glaciers": glaciers_path, "divides": divides_path, "n_glaciers": len(layer.glaciers),
            "n_divides": len(layer.divides), "n_split": layer.counts[SPLIT],
            "n_unsplit_no_dem": layer.counts[UNSPLIT_NO_DEM], "n_unsplit_error": layer.counts[UNSPLIT_ERROR]}


def _read_complexes(outlines_path: str, outlines_layer: Optional[str], id_field: Optional[str], progress):
    """The complexes' features; refuses an unknown id field and a layer without polygons."""
    feats = read_features(outlines_path, outlines_layer, progress)
    if id_field and feats.attributes and id_field not in feats.attributes[0]:
        raise InputError(f"The outlines have no field '{id_field}'. Pick one of: "
                         f"{', '.join(feats.attributes[0]) or '(no fields)'}.")
    if not any(g is not None and not g.is_empty for g in feats.geoms):
        raise InputError(f"'{outlines_path}' holds no polygons. Give a layer of glacier complex outlines.")
    return feats


@dataclass
class _GlacierLayer:
    """The glaciers and divides of the output layers (in the outlines' CRS ``crs``), with the
    split status of each complex."""

    crs: Any
    glaciers: List[BaseGeometry] = field(default_factory=list)
    glacier_attrs: List[Dict[str, Any]] = field(default_factory=list)
    divides: List[BaseGeometry] = field(default_factory=list)
    divide_attrs: List[Dict[str, Any]] = field(default_factory=list)
    failures: List[str] = field(default_factory=list)
    counts: Dict[str, int] = field(default_factory=lambda: {SPLIT: 0, UNSPLIT_NO_DEM: 0, UNSPLIT_ERROR: 0})

    def add_unsplit(self, geom: BaseGeometry, cid: str, exc: Exception, progress) -> None:
        """The complex as given, with the reason in ``split_status`` and a warning."""
        status = UNSPLIT_NO_DEM if isinstance(exc, NoDemError) else f"{UNSPLIT_ERROR}: {exc}"
        self.counts[status.split(":")[0]] += 1
        self.failures.append(f"'{cid}': {exc}")
        progress.push_info(f"Warning: complex '{cid}' is written unsplit ({status.split(':')[0]}): {exc}")
        self.glaciers.append(shapely.force_2d(geom))
        self.glacier_attrs.append({"glac_id": len(self.glaciers), "complex_id": cid,
                                   "area_km2": utm_area_m2(geom, self.crs) / 1e6, "split_status": status})

    def add_split(self, result: ComplexSplit, cid: str, progress) -> None:
        """The glaciers and divides of a split complex, transformed to the layer's CRS."""
        self.counts[SPLIT] += 1
        first = len(self.glaciers) + 1
        for g, filled in zip(result.glaciers, result.filled):
            self.glaciers.append(transform_geom(g, result.epsg, self.crs))
            self.glacier_attrs.append({"glac_id": len(self.glaciers), "complex_id": cid, "area_km2": g.area / 1e6,
                                       "split_status": SPLIT, "filled_pct": 100.0 * filled})
        for i, j, line in result.divides:
            self.divides.append(transform_geom(line, result.epsg, self.crs))
            self.divide_attrs.append({"complex_id": cid, "glac_id_1": first + i, "glac_id_2": first + j,
                                      "length_m": line.length})
        progress.push_info(f"Complex '{cid}': {len(result.glaciers)} glacier(s) on a {result.cell_size_m:.1f} m "
                           f"grid (EPSG:{result.epsg}).")

    def report(self, progress) -> None:
        """Refuses the run when no complex could be split; else logs the summary line."""
        if self.counts[SPLIT] == 0:
            raise InputError("No glacier complex could be split: " + first_reasons(self.failures))
        progress.push_info(f"{sum(self.counts.values())} complex(es): {self.counts[SPLIT]} split, "
                           f"{self.counts[UNSPLIT_NO_DEM]} left unsplit for lack of DEM data, "
                           f"{self.counts[UNSPLIT_ERROR]} left unsplit after an error (see split_status).")


def _layer_name(path: str) -> str:
    return os.path.splitext(os.path.basename(path))[0]
