"""Class raster -> clean outline polygons whose neighbours share one smoothed boundary.

Regions are polygonized block by block (GDAL polygonize, 4-connectivity) and pieces cut by
block seams are merged; the pixel corners where three or more regions meet are
found on the raster. Small regions are dropped and small background holes filled on the exact
pixel geometry; then every ring is cut at those junctions into arcs, each arc is smoothed once
with Chaikin's corner cutting (Chaikin 1974, "An algorithm for high-speed curve generation",
Computer Graphics and Image Processing 3(4)) between its fixed end nodes, and every polygon is
rebuilt from its smoothed arcs, so neighbours keep exactly one shared boundary (no gaps, no
overlaps). See docs/vectorize.md.
"""
from __future__ import annotations

import collections
import contextlib
import dataclasses
import functools
import os
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from . import parameters
from .contract import PALETTE, ClassInfo, ModelContract, decide_classes, read_contract, read_contract_json
from .errors import InputError
from .io import GDAL_CACHE_BYTES, atomic_output, raster_exists
from .progress import SubProgress, check_cancel, ensure_progress

BLOCK_PX = 2048  # polygonize window (pixels a side): bounds the raster memory per step
THREADS = max(1, min(4, os.cpu_count() or 1))  # blocks polygonized / batches smoothed at once
CHAIKIN_POINTS = 200_000  # points smoothed at once: bounds the temporary arrays of the passes
BATCH_EDGES = 125_000  # pixel edges of boundary smoothed and written per batch: bounds that memory
JOIN_POINTS = 1_000_000  # vertices of seam pieces handled at once when joining regions across seams
NODATA_CODE = -(2**31)  # int32 code of no-data pixels while vectorizing (never a class value)
_REL_EPS = 1e-9  # thresholds compare with this relative slack so "exactly 0.01 km²" is stable


@dataclass(frozen=True)
class VectorizeResult:
    """What ``vectorize`` wrote: the GeoPackage, its layer and how many outlines it holds."""

    path: str
    layer_name: str
    feature_count: int
    classes: Tuple[ClassInfo, ...]
    removed_small: int = 0
    filled_holes: int = 0


def generated_classes(values: Sequence[int]) -> List[ClassInfo]:
    """Class table for a raster without one: ``class_<v>`` with colours from a fixed palette."""
    return [ClassInfo(f"class_{v}", int(v), PALETTE[i % len(PALETTE)]) for i, v in enumerate(sorted(values))]


def load_class_table(path: str) -> ModelContract:
    """Model contract from an ONNX model (embedded or sidecar) or a contract JSON file."""
    if not os.path.exists(path):
        raise InputError(f"class table {path!r} does not exist; give the model's .onnx file or its .json contract.")
    if path.lower().endswith(".json"):
        return read_contract_json(path, "; fix the file or give the .onnx model")
    return read_contract(path)


# ----------------------------------------------------------------------------- geometry
def chaikin(points: np.ndarray, starts: np.ndarray, closed: np.ndarray, iterations: int,
            offset: float) -> Tuple[np.ndarray, np.ndarray]:
    """Chaikin (1974) corner cutting of many lines at once.

    ``points`` holds the lines one after the other, line k from ``starts[k]`` to
    ``starts[k + 1]``; open lines keep both end points, ``closed`` ones (first point = last)
    are cut all round. Each pass replaces segment (a, b) by a + t(b − a) and b − t(b − a):
    every new point lies on the previous line, so a line stays inside the triangles of the
    corners it cuts (what the topology guarantee rests on). Returns (points, starts) with
    collinear and repeated points removed. Lines are cut in chunks of about ``CHAIKIN_POINTS``
    points, which bounds the temporary arrays (a pass doubles the points)."""
    p = np.asarray(points, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    closed = np.asarray(closed, dtype=bool)
    first = np.unique(np.append(np.searchsorted(starts[:-1], np.arange(0, starts[-1], CHAIKIN_POINTS)), len(closed)))
    out, out_starts = [], [np.zeros(1, np.int64)]
    for a, b in zip(first[:-1], first[1:]):
        q, q_starts = _chaikin_chunk(p[starts[a] : starts[b]], starts[a : b + 1] - starts[a], closed[a:b],
                                     iterations, offset)
        out.append(q)
        out_starts.append(q_starts[1:] + out_starts[-1][-1])
    return (np.concatenate(out) if out else np.zeros((0, 2))), np.concatenate(out_starts)


def _chaikin_chunk(p: np.ndarray, starts: np.ndarray, closed: np.ndarray, iterations: int,
                   offset: float) -> Tuple[np.ndarray, np.ndarray]:
    """``chaikin`` of the lines of one chunk, all at once.

    Each pass cuts every segment of the whole array, also those joining one line to the next;
    their points stay in the array, unused, until the end."""
    first, last = starts[:-1], starts[1:] - 1  # first and last point of each line in ``p``
    for _ in range(iterations if offset > 0 else 0):
        cut = np.empty((len(p), 2, 2))  # segment j: rows 2j (a + t(b − a)) and 2j + 1 (b − t(b − a))
        cut[-1] = 0.0
        step = np.subtract(p[1:], p[:-1])
        step *= offset
        np.add(p[:-1], step, out=cut[:-1, 0])
        np.subtract(p[1:], step, out=cut[:-1, 1])
        del step
        rows = cut.reshape(-1, 2)
        rows[2 * first[~closed]] = p[first[~closed]]  # open lines keep their end points
        rows[2 * last[~closed] - 1] = p[last[~closed]]
        rows[2 * last[closed]] = rows[2 * first[closed]]  # closed lines end where they start
        p, first, last = rows, 2 * first, np.where(closed, 2 * last, 2 * last - 1)
        del cut, rows
    d = np.diff(p, axis=0)
    straight = np.abs(d[:-1, 0] * d[1:, 1] - d[:-1, 1] * d[1:, 0]) <= 1e-12
    straight &= d[:-1, 0] * d[1:, 0] + d[:-1, 1] * d[1:, 1] >= 0
    del d
    inside = np.zeros(len(p) + 1, np.int8)
    np.add.at(inside, first, 1)
    np.add.at(inside, last + 1, -1)
    keep = np.cumsum(inside[:-1], dtype=np.int8) > 0  # points of the lines, not between them
    keep[1:-1] &= ~straight
    keep[first] = True
    keep[last] = True
    kept = np.concatenate([[0], np.cumsum(keep)])
    return p[keep], np.append(kept[first], kept[last[-1] + 1] if len(last) else 0)


def _arcs_of_rings(pts: np.ndarray, vid: np.ndarray, is_node: np.ndarray, ring_start: np.ndarray, n_vid: int):
    """Cut every ring at its nodes into arcs, each in a canonical direction so that the two
    rings sharing an arc find the same one: returns the distinct arcs (coordinate arrays and
    closed flags) and, per ring, its (arc index, reversed) sequence."""
    keys, coords, closed, occurrences = [], [], [], []
    for r in range(len(ring_start) - 1):
        s, e = ring_start[r], ring_start[r + 1]
        rp, rv = pts[s:e], vid[s:e]
        nodes = np.flatnonzero(is_node[s:e])
        if len(nodes) == 0:  # a ring without nodes: one closed arc from its smallest vertex
            j = int(np.argmin(rv))
            seq = np.roll(rp, -j, axis=0)
            seq = np.vstack([seq, seq[:1]])
            rev = rv[j - 1] < rv[(j + 1) % len(rv)]
            keys.append(int(rv[j]) * n_vid + int(min(rv[j - 1], rv[(j + 1) % len(rv)])))
            coords.append(seq[::-1] if rev else seq)
            closed.append(True)
            occurrences.append([(len(keys) - 1, rev)])
            continue
        order = np.roll(np.arange(len(rp)), -nodes[0])
        order = np.append(order, order[0])
        cuts = np.append(nodes - nodes[0], len(rp))
        ring = []
        for a, b in zip(cuts[:-1], cuts[1:]):
            idx = order[a : b + 1]
            fwd = (int(rv[idx[0]]), int(rv[idx[1]]))
            bwd = (int(rv[idx[-1]]), int(rv[idx[-2]]))
            rev = bwd < fwd
            key = min(fwd, bwd)
            keys.append(key[0] * n_vid + key[1])
            coords.append(rp[idx[::-1]] if rev else rp[idx])
            closed.append(False)
            ring.append((len(keys) - 1, rev))
        occurrences.append(ring)
    _, first, inverse = np.unique(np.array(keys, dtype=np.int64), return_index=True, return_inverse=True)
    arcs = [coords[i] for i in first]
    rings = [[(int(inverse[k]), rev) for k, rev in ring] for ring in occurrences]
    return arcs, np.array(closed, bool)[first], rings


def _smooth_topology(polys: np.ndarray, nodes: np.ndarray, width: int, height: int, iterations: int,
                     offset: float, simplify_px: float, map_xy: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """Smooth polygons (pixel coordinates, integer vertices) arc by arc so that neighbours keep
    one shared boundary.

    Ring edges are cut into pixel-edge (unit) segments and rings are cut into arcs at the
    ``nodes`` (sorted corner ids ``row * (width + 1) + col`` where three or more regions meet
    or two touch diagonally) and at every corner on the raster frame. Each arc (or ring without
    nodes) is put in a canonical direction, smoothed once, optionally simplified with GEOS's
    topology-preserving Douglas–Peucker, and every ring is rebuilt from its arcs: a shared arc
    is the identical line in both polygons, also when they are smoothed in different calls
    (without simplification, which needs all arcs in one call). Returns the polygons in the
    coordinates ``map_xy`` maps pixel (column, row) coordinates to."""
    import shapely

    pts, _, vid, _, ring, owner, _ = _ring_edges(polys, width + 1)  # ring edges cut into pixel edges
    ring_start = np.searchsorted(ring, np.arange(len(owner) + 1))
    del ring
    is_node = np.isin(vid, nodes)
    is_node |= (pts[:, 0] == 0) | (pts[:, 1] == 0) | (pts[:, 0] == width) | (pts[:, 1] == height)
    # Inside straight runs only the unit segments next to corners and nodes matter (Chaikin cuts
    # a corner within its two adjacent segments); keeping just those points gives the same
    # curve with far fewer points, and the same points from both sides of an arc.
    nxt = np.arange(1, len(pts) + 1)
    nxt[ring_start[1:] - 1] = ring_start[:-1]
    prv = np.arange(-1, len(pts) - 1)
    prv[ring_start[:-1]] = ring_start[1:] - 1
    d_in, d_out = pts - pts[prv], pts[nxt] - pts
    fixed = is_node | (d_in[:, 0] * d_out[:, 1] != d_in[:, 1] * d_out[:, 0])  # nodes and corners
    keep = fixed | fixed[prv] | fixed[nxt]
    ring_start = np.concatenate([[0], np.cumsum(keep)])[ring_start]
    pts, vid, is_node = pts[keep], vid[keep], is_node[keep]
    del nxt, prv, d_in, d_out, fixed, keep
    arcs, closed, ring_arcs = _arcs_of_rings(pts, vid, is_node, ring_start, (width + 1) * (height + 1))
    del pts, vid, is_node
    starts = np.concatenate([[0], np.cumsum([len(c) for c in arcs])])
    points, starts = chaikin(np.concatenate(arcs), starts, closed, iterations, offset)
    if simplify_px > 0:
        lines = shapely.linestrings(points, indices=np.repeat(np.arange(len(arcs)), np.diff(starts)))
        simple = shapely.get_parts(
            shapely.simplify(shapely.multilinestrings(lines), simplify_px, preserve_topology=True))
        # an arc cut down to its chord can collapse a small region onto a neighbour's arc
        # (GEOS < 3.12 does not prevent it): such arcs stay as smoothed
        collapsed = (shapely.get_num_coordinates(simple) == 2) & (np.diff(starts) > 2)
        simple[collapsed] = lines[collapsed]
        points, index = shapely.get_coordinates(simple, return_index=True)
        starts = np.searchsorted(index, np.arange(len(arcs) + 1))
    points = map_xy(points)
    # every ring: its arcs in turn (reversed where marked), each arc after the first without
    # its first point (the previous arc's last), gathered from ``points`` in one copy
    arc = np.array([i for ring in ring_arcs for i, _ in ring], dtype=np.int64)
    rev = np.array([r for ring in ring_arcs for _, r in ring], dtype=bool)
    parts_per_ring = np.array([len(ring) for ring in ring_arcs], dtype=np.int64)
    later = np.ones(len(arc), bool)
    later[np.cumsum(parts_per_ring) - parts_per_ring] = False
    count = np.diff(starts)[arc] - later
    pos = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count) + np.repeat(later, count)
    take = np.where(np.repeat(rev, count), np.repeat(starts[arc + 1] - 1, count) - pos,
                    np.repeat(starts[arc], count) + pos)
    del pos
    coords = points[take]
    del points, take
    ring_of_point = np.repeat(np.repeat(np.arange(len(ring_arcs)), parts_per_ring), count)
    ring_geoms = shapely.linearrings(coords, indices=ring_of_point)
    del coords
    return _polygons(ring_geoms, owner, len(polys))


def _polygons(rings: np.ndarray, owner: np.ndarray, n: int) -> np.ndarray:
    """Polygons from rings grouped by ``owner`` (sorted; each polygon's exterior ring first)."""
    import shapely

    return shapely.polygons(rings, indices=owner, out=np.empty(n, dtype=object))


# ------------------------------------------------------------------------------ raster
class _Grid:
    """Pixel <-> map coordinates and areas/perimeters in metres for the raster's CRS."""

    def __init__(self, crs, transform):
        import pyproj

        self.transform = transform
        pcrs = pyproj.CRS.from_wkt(crs.to_wkt())
        self.geographic = pcrs.is_geographic
        if self.geographic:
            self.geod = pcrs.get_geod()
        else:
            self.unit = float(pcrs.axis_info[0].unit_conversion_factor or 1.0)

    def to_map(self, geoms: np.ndarray) -> np.ndarray:
        """Polygons from pixel (column, row) to map coordinates, exterior rings counter-clockwise
        and holes clockwise (OGC; pyproj's geodesic areas rely on it)."""
        import shapely

        return shapely.transform(self.pixel_orientation(geoms), self.map_xy)

    def map_xy(self, xy: np.ndarray) -> np.ndarray:
        """Pixel (column, row) coordinates to map coordinates."""
        t = self.transform
        return np.column_stack([t.a * xy[:, 0] + t.b * xy[:, 1] + t.c, t.d * xy[:, 0] + t.e * xy[:, 1] + t.f])

    def pixel_orientation(self, geoms: np.ndarray) -> np.ndarray:
        """Polygons in pixel coordinates oriented so that ``map_xy`` makes exterior rings
        counter-clockwise and holes clockwise (OGC; pyproj's geodesic areas rely on it)."""
        import shapely

        t = self.transform
        return shapely.orient_polygons(geoms, exterior_cw=t.a * t.e - t.b * t.d < 0)

    def area_m2(self, pixel_geoms: np.ndarray) -> np.ndarray:
        """Areas (m²) of polygons given in pixel coordinates."""
        import shapely

        if not self.geographic:
            t = self.transform
            return shapely.area(pixel_geoms) * abs(t.a * t.e - t.b * t.d) * self.unit**2
        chunks = [self.measure(self.to_map(pixel_geoms[i : i + 5000]))[0] for i in range(0, len(pixel_geoms), 5000)]
        return np.concatenate(chunks) if chunks else np.zeros(0)

    def measure(self, map_geoms: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(area m², perimeter m) of polygons in map coordinates: planar in a projected CRS,
        geodesic on the CRS's ellipsoid (Karney 2013, via pyproj) in a geographic one."""
        import shapely

        if not self.geographic:
            return shapely.area(map_geoms) * self.unit**2, shapely.length(map_geoms) * self.unit
        area = [abs(self.geod.geometry_area_perimeter(g)[0]) for g in map_geoms]
        length = [self.geod.geometry_length(b) for b in shapely.boundary(map_geoms)]  # holes included
        return np.array(area, dtype=float), np.array(length, dtype=float)

    def pixel_size_m(self, width: int, height: int) -> float:
        """Side of a square pixel of equal area at the raster centre, in metres."""
        import shapely

        px = shapely.box(width // 2, height // 2, width // 2 + 1, height // 2 + 1)
        return float(np.sqrt(self.measure(self.to_map(np.array([px])))[0][0]))


def _class_codes(src, window, band_classes: Sequence[ClassInfo], precedence: Sequence[str],
                 thresholds: Mapping[str, float], background: int) -> np.ndarray:
    """int32 class codes of one window: the raster's values (single band) or, for a multi-band
    mask/probability raster, the classes decided as the model does (``decide_classes``)."""
    valid = src.read_masks(1, window=window) != 0
    if src.count == 1:
        data = src.read(1, window=window)
        if data.dtype.kind == "f":
            finite = np.where(valid, data, 0)
            if not np.all(np.isfinite(finite)) or np.any(finite != np.round(finite)):
                raise InputError(
                    f"{os.path.basename(src.name)} holds non-integer values, so it is not a class raster. "
                    "Give the class raster of glacierseg:segment, or a multi-band probability raster "
                    "together with the model's class table."
                )
        if data.dtype.itemsize >= 4 and data.size and (data.max() > 2**31 - 1 or data.min() <= NODATA_CODE):
            raise InputError(f"{os.path.basename(src.name)}: class values must fit in 32-bit integers.")
        codes = data.astype(np.int32)
        codes[~valid] = NODATA_CODE
        return codes
    codes = decide_classes(src.read(window=window), band_classes, background, precedence, thresholds, np.int32)
    codes[~valid] = NODATA_CODE
    return codes


def _polygonize(src, read_codes: Callable, background: int, progress):
    """Regions (code, polygon in pixel coordinates) block by block, pieces cut by block seams
    joined, and the sorted ids of the pixel corners where arcs must end (see ``_junctions``).

    Blocks are read in turn and polygonized on ``THREADS`` threads (GDAL releases Python's
    lock)."""
    from rasterio.windows import Window

    width, height = src.width, src.height
    blocks = [(r, c) for r in range(0, height, BLOCK_PX) for c in range(0, width, BLOCK_PX)]

    def jobs():
        for r0, c0 in blocks:
            check_cancel(progress)
            h, w = min(BLOCK_PX, height - r0), min(BLOCK_PX, width - c0)
            # one more row and column (where the raster goes on) to see the corners on the seams
            ext = read_codes(Window(c0, r0, w + (c0 + w < width), h + (r0 + h < height)))
            yield functools.partial(_polygonize_block, ext, background, r0, c0, h, w, height, width)

    parts = []  # per block: (values, polygons, on a seam?, node ids)
    for part in _in_order(jobs()):
        parts.append(part)
        progress.set_progress(100.0 * len(parts) / len(blocks))
    check_cancel(progress)
    values, geoms, on_seam, nodes = (np.concatenate(x) for x in zip(*parts))
    del parts
    seam_values, seam_geoms = values[on_seam], geoms[on_seam]
    if len(seam_geoms):
        seam_values, seam_geoms = _join_across_seams(
            seam_values, seam_geoms, np.arange(BLOCK_PX, width, BLOCK_PX), np.arange(BLOCK_PX, height, BLOCK_PX),
            width + 1, (width + 1) * (height + 1))
    return (np.concatenate([values[~on_seam], seam_values]), np.concatenate([geoms[~on_seam], seam_geoms]),
            np.sort(nodes))


def _in_order(jobs: Iterable[Callable[[], Any]]) -> Iterator[Any]:
    """Results of ``jobs`` (taken in this thread) run on ``THREADS`` threads, in order; at most
    ``THREADS`` jobs wait or run at once, which bounds the memory they hold."""
    with ThreadPoolExecutor(THREADS) as pool:
        running: Deque[Future] = collections.deque()
        for job in jobs:
            running.append(pool.submit(job))
            if len(running) >= THREADS:
                yield running.popleft().result()
        while running:
            yield running.popleft().result()


def _polygonize_block(ext: np.ndarray, background: int, r0: int, c0: int, h: int, w: int, height: int,
                      width: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """One block: (values, polygons, touches a seam?, node ids). ``ext`` holds the block's
    ``h`` x ``w`` codes plus the next row and column where the raster goes on."""
    import shapely

    rows, cols = np.nonzero(_junctions(ext))
    nodes = (rows + r0 + 1).astype(np.int64) * (width + 1) + cols + c0 + 1
    codes = np.ascontiguousarray(ext[:h, :w])
    values, geoms = _gdal_polygonize(codes, codes != background, c0, r0)
    x0, y0, x1, y1 = shapely.bounds(geoms).T
    on_seam = ((c0 > 0) & (x0 == c0)) | ((r0 > 0) & (y0 == r0)) | \
              ((c0 + w < width) & (x1 == c0 + w)) | ((r0 + h < height) & (y1 == r0 + h))
    return values, geoms, on_seam, nodes


def _join_across_seams(values: np.ndarray, pieces: np.ndarray, seam_cols: np.ndarray, seam_rows: np.ndarray,
                       row_len: int, n_corners: int) -> Tuple[np.ndarray, np.ndarray]:
    """(values, polygons) of whole regions from the pieces that block seams cut them into.

    With every ring oriented so that its region lies on the left, an edge on a seam between
    two pieces of one region appears once in each direction: seam segments are cut into pixel
    edges and opposite edges of equal value join their pieces (connected components). Joined
    regions are then rebuilt, a batch of about ``JOIN_POINTS`` piece vertices at a time
    (``_link_rings``). Linear in the edges, unlike a GEOS union of the pieces."""
    import shapely
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pieces = shapely.orient_polygons(pieces)  # exterior counter-clockwise, holes clockwise
    size = shapely.get_num_coordinates(pieces)
    chunks = np.unique(np.searchsorted(np.cumsum(size), np.arange(0, size.sum(), JOIN_POINTS), side="right"))
    u, v, owner = [], [], []
    for a, b in zip(chunks, np.append(chunks[1:], len(pieces))):
        _, _, cu, cv, ring, ring_owner, _ = _ring_edges(pieces[a:b], row_len, _on_seams(seam_cols, seam_rows),
                                                          only_split=True)
        u.append(cu)
        v.append(cv)
        owner.append(ring_owner[ring] + a)
    u, v, owner = np.concatenate(u), np.concatenate(v), np.concatenate(owner)
    if not len(u):  # no piece has an edge on a seam: nothing to join
        return values, pieces
    key, want = u * n_corners + v, v * n_corners + u
    order = np.argsort(key)
    twin = order[np.minimum(np.searchsorted(key, want, sorter=order), max(len(key) - 1, 0))]
    matched = (key[twin] == want) & (values[owner] == values[owner[twin]])
    n = len(pieces)
    joins = coo_matrix((np.ones(int(matched.sum())), (owner[matched], owner[twin[matched]])), shape=(n, n))
    _, region = connected_components(joins, directed=False)
    del u, v, owner, key, want, order, twin, matched, joins
    first_piece = np.unique(region, return_index=True)[1]
    count = np.bincount(region)
    whole = count[region] == 1  # pieces that are whole regions
    if whole.all():  # pieces end on seams, but no region continues across one
        return values, pieces
    cut = np.flatnonzero(~whole)
    cut = cut[np.argsort(region[cut], kind="stable")]  # pieces of joined regions, region by region
    starts = np.flatnonzero(np.r_[True, region[cut][1:] != region[cut][:-1]])  # first piece of each region
    points = np.add.reduceat(size[cut], starts) if len(cut) else np.zeros(0, int)
    batches = np.unique(np.searchsorted(np.cumsum(points), np.arange(0, points.sum(), JOIN_POINTS), side="right"))
    bounds = np.append(starts, len(cut))[np.append(batches, len(starts))] if len(cut) else np.zeros(1, int)
    joined = [_link_rings(pieces[cut[a:b]], region[cut[a:b]], seam_cols, seam_rows, row_len, n_corners)
              for a, b in zip(bounds[:-1], bounds[1:])]
    return (np.concatenate([values[whole], values[first_piece[region[cut[starts]]]]]),
            np.concatenate([pieces[whole]] + joined))


def _link_rings(pieces: np.ndarray, region: np.ndarray, seam_cols: np.ndarray, seam_rows: np.ndarray,
                row_len: int, n_corners: int) -> np.ndarray:
    """One polygon per region (in region order) from its oriented pieces, ``region`` sorted.

    Opposite seam edges within a region cancel; the remaining edges are linked into rings
    and put in order by pointer jumping (Wyllie's list ranking). Where a region touches
    itself at a corner, the two pixels outside it there belong to different parts of the
    outside (planar topology), so the ring turns right, around the outside pixel: each ring
    bounds one part of the outside and rings meet at such corners without touching themselves
    (valid OGC polygons). A region's ring of positive area is its exterior, the others holes."""
    import shapely
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    p0, step, u, v, ring, ring_owner, seam = _ring_edges(pieces, row_len, _on_seams(seam_cols, seam_rows))
    reg = region[ring_owner[ring]].astype(np.int64)
    del ring, ring_owner
    s = np.flatnonzero(seam)
    key, want = u[s] * n_corners + v[s], v[s] * n_corners + u[s]
    order = np.argsort(key)
    twin = order[np.minimum(np.searchsorted(key, want, sorter=order), max(len(s) - 1, 0))]
    keep = np.ones(len(u), bool)
    keep[s[(key[twin] == want) & (reg[s] == reg[s[twin]])]] = False
    u, v, p0, step, reg = u[keep], v[keep], p0[keep], step[keep], reg[keep]
    del key, want, order, twin, keep, seam, s

    # link each edge to the edge leaving its end corner in the same region
    out_key, end_key = reg * n_corners + u, reg * n_corners + v
    order = np.argsort(out_key)
    lo = np.searchsorted(out_key, end_key, side="left", sorter=order)
    count = np.searchsorted(out_key, end_key, side="right", sorter=order) - lo
    if len(count) and (count.min() < 1 or count.max() > 2):
        raise RuntimeError("joining regions across block seams met an open boundary; please report this raster.")
    succ = order[np.minimum(lo, len(order) - 1)]
    turns_right = step[:, 0] * step[succ, 1] - step[:, 1] * step[succ, 0] < 0
    succ = np.where((count == 2) & ~turns_right, order[np.minimum(lo + 1, len(order) - 1)], succ)
    del out_key, end_key, order, lo, count, u, v, step, turns_right
    m = len(succ)
    _, ring = connected_components(coo_matrix((np.ones(m), (np.arange(m), succ)), shape=(m, m)), directed=False)
    _, first = np.unique(ring, return_index=True)  # a ring starts at its lowest edge
    last = succ == first[ring]
    rank, nxt = (~last).astype(np.int64), np.where(last, np.arange(m), succ)
    for _ in range(int(m).bit_length()):  # rank: edges to the ring's last edge
        rank += rank[nxt]
        nxt = nxt[nxt]
    del succ, last, nxt
    ordered = np.lexsort((-rank, ring))
    pts, ring, reg = p0[ordered], ring[ordered], reg[ordered]
    del p0, rank, ordered
    starts = np.searchsorted(ring, np.arange(len(first) + 1))
    ring_reg = reg[starts[:-1]]
    rel = pts - pts[starts[:-1]][ring]  # shoelace on ring-relative coordinates
    nxt_rel = np.roll(rel, -1, axis=0)
    nxt_rel[starts[1:] - 1] = 0
    twice_area = np.bincount(ring, weights=rel[:, 0] * nxt_rel[:, 1] - nxt_rel[:, 0] * rel[:, 1], minlength=len(first))
    del rel, nxt_rel, reg
    closed = np.insert(pts, starts[1:], pts[starts[:-1]], axis=0)
    ring_geoms = shapely.linearrings(closed, indices=np.repeat(np.arange(len(first)), np.diff(starts) + 1))
    by = np.lexsort((twice_area < 0, ring_reg))  # per region its exterior, then its holes
    regions, owner = np.unique(ring_reg[by], return_inverse=True)
    return _polygons(ring_geoms[by], owner, len(regions))


def _ring_edges(polys: np.ndarray, row_len: int, split: Optional[Callable[[np.ndarray, np.ndarray], np.ndarray]] = None,
                only_split: bool = False):
    """Directed edges of the rings of ``polys`` (pixel coordinates, integer vertices), ring by
    ring: (start points, steps, start corner ids, end corner ids, ring of each edge, polygon of
    each ring, edge split?). The segments (a, b) that ``split(a, b)`` picks (all without it) are
    cut into pixel edges; ``only_split`` drops the others. Corner ids are ``row * row_len + column``."""
    import shapely

    rings, owner = shapely.get_rings(polys, return_index=True)
    xy, ring_of = shapely.get_coordinates(rings, return_index=True)
    same = ring_of[1:] == ring_of[:-1]
    a, b = xy[:-1][same].astype(np.int32), xy[1:][same].astype(np.int32)  # pixel corners: exact
    seg_ring = ring_of[:-1][same]
    del xy, ring_of, same
    cut = np.ones(len(a), bool) if split is None else split(a, b)
    if only_split:
        a, b, seg_ring, cut = a[cut], b[cut], seg_ring[cut], cut[cut]
    steps = np.where(cut, np.abs(b - a).sum(axis=1), 1)
    k = (np.arange(steps.sum()) - np.repeat(np.cumsum(steps) - steps, steps)).astype(np.int32)
    step = np.repeat((b - a) // np.maximum(steps, 1)[:, None], steps, axis=0)
    p0 = np.repeat(a, steps, axis=0) + step * k[:, None]
    u = p0[:, 1].astype(np.int64) * row_len + p0[:, 0]
    v = u + step[:, 1].astype(np.int64) * row_len + step[:, 0]
    return p0, step, u, v, np.repeat(seg_ring, steps), owner, np.repeat(cut, steps)


def _on_seams(seam_cols: np.ndarray, seam_rows: np.ndarray) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """``split`` for ``_ring_edges``: the segments lying on a seam column or row."""
    return lambda a, b: (((a[:, 0] == b[:, 0]) & np.isin(a[:, 0], seam_cols)) |
                         ((a[:, 1] == b[:, 1]) & np.isin(a[:, 1], seam_rows)))


def _gdal_polygonize(codes: np.ndarray, mask: np.ndarray, c0: int, r0: int) -> Tuple[np.ndarray, np.ndarray]:
    """GDAL polygonize (4-connectivity) of an int32 block whose top-left pixel is (c0, r0):
    (codes, polygons in pixel coordinates) of the regions under ``mask``, read back as WKB."""
    import shapely
    from osgeo import gdal, gdal_array, ogr

    ogr.UseExceptions()
    data, valid = gdal_array.OpenArray(codes), gdal_array.OpenArray(mask.view(np.uint8))
    data.SetGeoTransform((c0, 1, 0, r0, 0, 1))
    out = ogr.GetDriverByName("Memory").CreateDataSource("")  # kept: its layer dies with it
    layer = out.CreateLayer("regions", geom_type=ogr.wkbPolygon)
    layer.CreateField(ogr.FieldDefn("code", ogr.OFTInteger))
    if gdal.Polygonize(data.GetRasterBand(1), valid.GetRasterBand(1), layer, 0) != 0:
        raise RuntimeError(f"GDAL polygonize failed: {gdal.GetLastErrorMsg()}")
    values, wkbs = [], []
    for feat in layer:
        values.append(feat.GetField(0))
        wkbs.append(bytes(feat.GetGeometryRef().ExportToWkb()))
    return np.array(values, dtype=np.int64), shapely.from_wkb(np.array(wkbs, dtype=object))


def _junctions(codes: np.ndarray) -> np.ndarray:
    """For each inner pixel corner of ``codes``: do three or more different values meet there,
    or two diagonally (a checkerboard)? Those corners are where boundary arcs end."""
    a, b, c, d = codes[:-1, :-1], codes[:-1, 1:], codes[1:, :-1], codes[1:, 1:]
    distinct = (b != a).view(np.uint8) + np.uint8(1)
    distinct += (c != a) & (c != b)
    distinct += (d != a) & (d != b) & (d != c)
    return (distinct >= 3) | ((a == d) & (b == c) & (a != b))


def _fill_small_holes(geoms: np.ndarray, owners: np.ndarray, context: np.ndarray, grid: "_Grid",
                      hole_m2: float) -> Tuple[np.ndarray, int]:
    """Drop interior rings smaller than ``hole_m2`` that hold no other region (nunataks and
    other background only); ``context`` are all regions kept (classes and no-data)."""
    import shapely

    holes, hole_owner, hole_ring = [], [], []
    for i in owners:
        for j, ring in enumerate(geoms[i].interiors):
            holes.append(shapely.Polygon(ring))
            hole_owner.append(i)
            hole_ring.append(j)
    if not holes:
        return geoms, 0
    hole_geoms = np.array(holes, dtype=object)
    small = grid.area_m2(hole_geoms) < hole_m2 * (1 - _REL_EPS)
    occupied = np.zeros(len(hole_geoms), bool)
    hits, _ = shapely.STRtree(context).query(hole_geoms, predicate="covers")
    occupied[hits] = True
    fill = small & ~occupied
    out = geoms.copy()
    drop: Dict[int, set] = {}
    for h in np.flatnonzero(fill):
        drop.setdefault(hole_owner[h], set()).add(hole_ring[h])
    for i, rings in drop.items():
        out[i] = shapely.Polygon(geoms[i].exterior, [r for j, r in enumerate(geoms[i].interiors) if j not in rings])
    return out, int(fill.sum())


# ------------------------------------------------------------------------------ output
@contextlib.contextmanager
def _gpkg_writer(path: str, layer_name: str, crs_wkt: str) -> Iterator[Callable]:
    """A new GeoPackage polygon layer (GDAL/OGR); yields ``write(wkbs, rows)`` to append
    features in batches inside one transaction. The file is closed on exit, error or not."""
    from osgeo import ogr, osr

    ogr.UseExceptions()
    osr.UseExceptions()
    srs = osr.SpatialReference()
    srs.ImportFromWkt(crs_wkt)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(path)
    try:
        layer = ds.CreateLayer(layer_name, srs, ogr.wkbPolygon, options=["SPATIAL_INDEX=YES", "FID=fid"])
        for name, kind in (("class_name", ogr.OFTString), ("class_value", ogr.OFTInteger),
                           ("area_km2", ogr.OFTReal), ("perimeter_m", ogr.OFTReal), ("source", ogr.OFTString)):
            layer.CreateField(ogr.FieldDefn(name, kind))
        defn = layer.GetLayerDefn()

        def write(wkbs, rows) -> None:
            for wkb, row in zip(wkbs, rows):
                feat = ogr.Feature(defn)
                for name, value in row.items():
                    feat.SetField(name, value)
                feat.SetGeometry(ogr.CreateGeometryFromWkb(wkb))
                layer.CreateFeature(feat)

        layer.StartTransaction()
        yield write
        layer.CommitTransaction()
    finally:
        ds = None  # noqa: F841 (closes the file before atomic_output moves or removes it)


# -------------------------------------------------------------------------------- main
@dataclass(frozen=True)
class VectorizeOptions:
    """The settings of one ``vectorize`` run (each a keyword of ``vectorize``), checked by ``validate``.

    ``precedence`` / ``thresholds``: how a multi-band mask or probability raster is decided
    (``core.contract.decide_classes``). Regions under ``min_area_km2`` are dropped and holes under
    ``hole_area_km2`` holding only background filled (0 switches either off); ``smooth_iterations``
    Chaikin passes cut ``smooth_offset`` of each segment per corner; ``simplify_tolerance_m``
    simplifies the smoothed arcs. ``source`` fills the ``source`` field (default: the raster's file
    name), ``layer_name`` names the GeoPackage layer; ``background_value`` is not vectorized.
    Defaults and their sources: ``core.parameters`` (vectorize section).
    """

    precedence: Sequence[str] = ()
    thresholds: Optional[Mapping[str, float]] = None
    min_area_km2: float = parameters.OUTLINE_MIN_AREA_KM2
    hole_area_km2: float = parameters.OUTLINE_FILL_HOLE_KM2
    smooth_iterations: int = parameters.SMOOTH_ITERATIONS
    smooth_offset: float = parameters.SMOOTH_OFFSET
    simplify_tolerance_m: float = 0.0
    source: str = ""
    layer_name: str = "outlines"
    background_value: int = 0

    def validate(self) -> None:
        """``InputError`` naming the setting that is out of range and what it may be."""
        if not isinstance(self.smooth_iterations, (int, np.integer)) or not 0 <= self.smooth_iterations <= 10:
            raise InputError(f"smooth_iterations must be an integer from 0 to 10, got {self.smooth_iterations!r}.")
        if not 0.0 <= self.smooth_offset <= 0.5:
            raise InputError("smooth_offset must be between 0 and 0.5 (fraction of a segment cut per corner), "
                             f"got {self.smooth_offset!r}.")
        for name in ("min_area_km2", "hole_area_km2", "simplify_tolerance_m"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise InputError(f"{name} must be a number >= 0 (0 switches it off), got {value!r}.")
        if not self.layer_name:
            raise InputError("layer_name must not be empty; give the GeoPackage layer a name such as 'outlines'.")


@dataclass
class _Regions:
    """The class regions of a raster on its exact pixel geometry: ``codes[i]`` (class value, or
    ``NODATA_CODE``) of polygon ``pieces[i]`` in pixel coordinates, the junction ``nodes`` where
    arcs end, and the raster's grid."""

    codes: np.ndarray
    pieces: np.ndarray
    nodes: np.ndarray
    grid: "_Grid"
    crs_wkt: str
    width: int
    height: int

    @property
    def is_class(self) -> np.ndarray:
        return self.codes != NODATA_CODE

    def keep(self, mask: np.ndarray) -> None:
        self.codes, self.pieces = self.codes[mask], self.pieces[mask]


def _check_paths(class_raster: str, out_path: str) -> None:
    if not out_path.lower().endswith(".gpkg"):
        raise InputError(f"output {out_path!r} must be a GeoPackage: give a path ending in .gpkg.")
    if not raster_exists(class_raster):
        raise InputError(f"class raster {class_raster!r} does not exist (or GDAL cannot read it); check the path.")


def _check_band_classes(src, band_classes: Sequence[ClassInfo], options: VectorizeOptions) -> None:
    """A multi-band raster needs one class per band; precedence and thresholds name those classes."""
    if src.count <= 1:
        return
    if len(band_classes) != src.count:
        raise InputError(
            f"{os.path.basename(src.name)} has {src.count} bands; a multi-band mask needs a class table "
            f"with one class per band (got {len(band_classes)}). Give the model's .onnx/.json, or a "
            "single-band class raster."
        )
    by_name = {c.name: c for c in band_classes}
    unknown = [n for n in list(options.precedence) + list(options.thresholds or {}) if n not in by_name]
    if unknown:
        raise InputError(f"precedence or thresholds name unknown class(es) {unknown}; classes are {list(by_name)}.")


def _read_regions(class_raster: str, band_classes: Sequence[ClassInfo], options: VectorizeOptions,
                  progress) -> _Regions:
    """Open the raster, check it, and polygonize its classes block by block."""
    import rasterio

    try:
        src = rasterio.open(class_raster)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(
            f"cannot open {class_raster!r} as a raster ({exc}); give a GeoTIFF or another GDAL raster."
        ) from None
    with src, rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES):
        if src.crs is None:
            raise InputError(
                f"{os.path.basename(class_raster)} has no coordinate reference system, so areas cannot be "
                "computed; assign one (e.g. with gdal_edit.py -a_srs or QGIS 'Assign projection')."
            )
        _check_band_classes(src, band_classes, options)

        def read_codes(window):
            return _class_codes(src, window, band_classes, options.precedence, options.thresholds or {},
                                options.background_value)

        codes, pieces, nodes = _polygonize(src, read_codes, options.background_value, progress)
        return _Regions(codes, pieces, nodes, _Grid(src.crs, src.transform), src.crs.to_wkt(), src.width, src.height)


def _class_table(found: Sequence[int], band_classes: Sequence[ClassInfo], progress) -> Dict[int, ClassInfo]:
    """Class value -> class: the given table, plus ``class_<value>`` for values it lacks."""
    table = {c.value: c for c in band_classes}
    extra = [v for v in found if v not in table]
    if extra:
        if band_classes:
            progress.push_info(f"values {extra} are not in the class table; they are named class_<value>.")
        taken = len(table)
        for i, c in enumerate(generated_classes(extra)):
            table[c.value] = ClassInfo(c.name, c.value, PALETTE[(taken + i) % len(PALETTE)])
    return table


def _filter_regions(regions: _Regions, options: VectorizeOptions) -> Tuple[int, int]:
    """Filters on the exact pixel geometry: small regions out, then small background holes
    filled. Returns (regions removed, holes filled)."""
    is_class = regions.is_class
    keep = np.ones(len(regions.pieces), bool)
    min_m2 = options.min_area_km2 * 1e6 * (1 - _REL_EPS)
    keep[np.flatnonzero(is_class)] = regions.grid.area_m2(regions.pieces[is_class]) >= min_m2
    regions.keep(keep)
    filled = 0
    if options.hole_area_km2 > 0 and len(regions.pieces):
        regions.pieces, filled = _fill_small_holes(regions.pieces, np.flatnonzero(regions.is_class), regions.pieces,
                                                   regions.grid, options.hole_area_km2 * 1e6)
    return int((~keep).sum()), filled


class _OutlineBatches:
    """Smooth, measure and describe the class regions in batches (class, then largest first): a
    shared arc comes out identical from any batch. Simplification needs all arcs in one batch."""

    def __init__(self, regions: _Regions, table: Mapping[int, ClassInfo], options: VectorizeOptions, source: str):
        import shapely

        codes, pieces = regions.codes, regions.pieces
        by = np.lexsort((-shapely.area(pieces), codes)) if len(pieces) else np.zeros(0, int)
        self.codes, self.pieces = codes[by], regions.grid.pixel_orientation(pieces[by])
        self.regions, self.table, self.options, self.source = regions, table, options, source
        grid = regions.grid
        tolerance = options.simplify_tolerance_m
        self.simplify_px = tolerance / grid.pixel_size_m(regions.width, regions.height) if tolerance > 0 else 0.0
        self.cuts = self._cuts()

    def __len__(self) -> int:
        return len(self.pieces)

    def _cuts(self) -> List[int]:
        """Batch boundaries: about ``BATCH_EDGES`` pixel edges of boundary each (one batch when simplifying)."""
        import shapely

        pieces = self.pieces
        edges = np.cumsum(shapely.length(pieces)) if len(pieces) else np.zeros(0)  # pixel edges of boundary
        cuts = [0] if self.simplify_px > 0 or not len(pieces) else \
            np.unique(np.searchsorted(edges, np.arange(0, edges[-1], BATCH_EDGES), side="right")).tolist()
        return sorted(set(cuts) | {0}) + [len(pieces)]

    def outlines(self, i0: int, i1: int):
        """(WKB geometries, attribute rows) of polygons ``i0:i1``."""
        import shapely

        r, o = self.regions, self.options
        geoms = _smooth_topology(self.pieces[i0:i1], r.nodes, r.width, r.height, o.smooth_iterations,
                                 o.smooth_offset, self.simplify_px, r.grid.map_xy)
        area, perimeter = r.grid.measure(geoms)
        return shapely.to_wkb(geoms, output_dimension=2), [
            {"class_name": self.table[int(v)].name, "class_value": int(v), "area_km2": float(a / 1e6),
             "perimeter_m": float(p), "source": self.source}
            for v, a, p in zip(self.codes[i0:i1], area, perimeter)
        ]

    def jobs(self, progress) -> Iterator[Callable]:
        for i0, i1 in zip(self.cuts[:-1], self.cuts[1:]):
            check_cancel(progress)
            if i1 > i0:
                yield functools.partial(self.outlines, i0, i1)

    def write(self, out_path: str, progress) -> None:
        """All batches into a new GeoPackage layer at ``out_path`` (atomically)."""
        with atomic_output(out_path, progress) as tmp, \
                _gpkg_writer(tmp, self.options.layer_name, self.regions.crs_wkt) as write:
            for k, (wkbs, rows) in enumerate(_in_order(self.jobs(progress))):
                write(wkbs, rows)
                progress.set_progress(55 + 45 * (k + 1) / max(len(self.cuts) - 1, 1))
            check_cancel(progress)


def vectorize(class_raster: str, out_path: str, classes: Optional[Sequence[ClassInfo]] = None,
              options: Optional[VectorizeOptions] = None, *, progress=None, **settings: Any) -> VectorizeResult:
    """Vectorize a class raster into one polygon per connected region (4-connectivity) and class.

    ``class_raster``: single-band integer classes (``background_value`` and no-data are not
    vectorized), or a multi-band mask/probability raster with band k for ``classes[k]``,
    decided as the model does (``core.contract.decide_classes``: the most probable class when
    the classes include ``background_value``, else the first class in ``precedence`` order
    whose band reaches its threshold in ``thresholds``, default 0.5). Regions
    under ``min_area_km2`` are dropped, holes under ``hole_area_km2`` holding only background
    are filled (both on the exact pixel areas), then boundaries are smoothed with
    ``smooth_iterations`` Chaikin passes of ``smooth_offset`` on pixel-edge segments and
    simplified by ``simplify_tolerance_m`` — all with shared boundaries kept shared.

    The settings are ``options`` (``VectorizeOptions``) or its fields as keywords (``settings``,
    which override ``options``). Steps: settings and paths checked, regions polygonized
    (``_read_regions``), named (``_class_table``), filtered (``_filter_regions``), smoothed and
    written in batches (``_OutlineBatches``).
    """
    progress = ensure_progress(progress)
    options = dataclasses.replace(options or VectorizeOptions(), **settings)
    options.validate()
    _check_paths(class_raster, out_path)
    band_classes = list(classes or [])
    regions = _read_regions(class_raster, band_classes, options, SubProgress(progress, 0, 50))
    found = sorted(set(regions.codes[regions.is_class].tolist()))
    table = _class_table(found, band_classes, progress)
    check_cancel(progress)
    removed, filled = _filter_regions(regions, options)
    progress.set_progress(55)
    check_cancel(progress)
    regions.keep(regions.is_class)  # no-data regions were context for the hole filling only
    batches = _OutlineBatches(regions, table, options, options.source or os.path.basename(class_raster))
    if not len(batches):  # empty is a valid answer: an empty layer, with its fields
        min_area = options.min_area_km2
        progress.push_info(
            f"No class region{' of at least ' + format(min_area, 'g') + ' km²' if min_area > 0 else ''}: "
            "the outlines layer is empty.")
    batches.write(out_path, progress)
    progress.set_progress(100)
    used = tuple(table[v] for v in sorted(table) if v in set(found))
    return VectorizeResult(out_path, options.layer_name, len(batches), used, removed, filled)
