"""Segment a raster with a GlacierSeg model, tile by tile with overlap and blending.

The raster is read tile by tile and the outputs are written strip by strip, so memory
does not grow with the raster's size. Probabilities of overlapping tiles are blended with
the window of ``core.tiling`` (never thresholded per tile); test-time augmentation
averages probabilities over flips / the 8 dihedral transforms (as in the Attention
DeepLabV3+ glacier work). Pixels that are nodata (or NaN) in any used band, or outside
the processing extent / mask, are nodata in both outputs.

``segment_raster`` is a short pipeline (after Deepness's processing-parameter dataclasses and
its tile generator / tile processor split): ``SegmentOptions`` (parameters) -> ``prepare_run``
(model) -> ``open_tiled`` (tile source) -> ``ModelStep`` (tile processor) -> ``TileLoop``
(batches into ``core.tiling.BlendAccumulator``) -> ``SegmentWriter`` (output rasters) ->
``core.vectorize`` (optional outlines).
"""
from __future__ import annotations

import dataclasses
import math
import os
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union, cast

import numpy as np

from . import features
from .contract import ModelContract, activate, canonical_band_name, class_colormap, input_range_warnings
from .errors import InputError
from .io import GDAL_CACHE_BYTES, atomic_outputs, geotiff_profile, raster_exists
from .progress import Progress, SubProgress, check_cancel, ensure_progress
from .runtime import LoadedModel, load_model
from .tiling import BlendAccumulator, TileGrid, apply_transform, dihedral_transforms, invert_transform, reflect_index

TTA_MODES = ("none", "flips", "d4")
PROBABILITY_NODATA = float("nan")
CLASS_NODATA = 255
# compared with the training range: up to 4096 valid pixels (evenly strided) of each of the first 64 tiles
RANGE_SAMPLE_TILES, RANGE_SAMPLE_PX = 64, 4096
TTA_CALL_TILES = 32  # the transforms of a batch share model calls of up to this many tiles (flips of batch 8: one call)
RESOLUTION_TOLERANCE = 0.01  # relative; rasters within 1 % of the model's resolution are used as they are
BandMap = Union[Sequence[int], Mapping[str, int], None]


@dataclass
class SegmentResult:
    """What ``segment_raster`` wrote (output paths) and how the run went (tiles, model calls, seconds)."""

    probabilities: str
    classes: str
    contract: ModelContract
    provider: str
    tiles_run: int
    tiles_skipped: int
    inference_seconds: float
    band_map: Dict[str, int]
    resampled: bool
    width: int
    height: int
    outlines: Optional[str] = None
    outline_count: int = 0
    model_calls: int = 0
    session: str = ""  # the session's settings (``LoadedModel.describe``)


# ------------------------------------------------------------------ band mapping
def _band_number(token, descriptions: Sequence[Optional[str]]) -> int:
    """A band-mapping entry as a raster band number: a number, or a band name ('B03', 'S2:B03',
    'B3') matched against the raster's band descriptions."""
    text = str(token).strip()
    if text.lstrip("-").isdigit():
        return int(text)
    wanted = canonical_band_name(text)
    matches = [i for i, d in enumerate(descriptions, start=1) if d and canonical_band_name(d) == wanted]
    if len(matches) != 1:
        named = _named_bands(descriptions)
        raise InputError(f"Band mapping names band {text!r}, but {'no' if not matches else 'more than one'} raster "
                         f"band is described so ({named}). Use raster band numbers instead, e.g. '3,8,11'.")
    return matches[0]


def resolve_band_map(
    contract: ModelContract, descriptions: Sequence[Optional[str]], band_map: BandMap = None
) -> Dict[str, int]:
    """Which raster band (1-based) feeds each sensor band the model reads.

    Explicit ``band_map`` (band numbers in the order of ``contract.source_bands``, or a
    name -> number mapping) wins; else band descriptions that name the bands; else the
    raster's bands in order when the counts agree.
    """
    wanted = contract.source_bands
    if band_map:
        return _explicit_band_map(wanted, descriptions, band_map)
    found = _bands_by_description(wanted, descriptions)
    if found is not None:
        return found
    if len(descriptions) == len(wanted):
        return _bands_in_order(wanted, descriptions)
    named = _named_bands(descriptions)
    raise InputError(
        f"The model reads {len(wanted)} band(s) ({', '.join(wanted)}) but the raster has {len(descriptions)} "
        f"({named}) and their descriptions do not name them all. Set the band mapping to the raster "
        f"band numbers for {', '.join(wanted)}, in that order "
        f"(e.g. '{','.join(str(i + 1) for i in range(len(wanted)))}')."
    )


def _named_bands(descriptions: Sequence[Optional[str]]) -> str:
    return ", ".join(f"{i}:{d or '?'}" for i, d in enumerate(descriptions, start=1))


def _explicit_band_map(wanted: Sequence[str], descriptions: Sequence[Optional[str]],
                       band_map: Union[Sequence[int], Mapping[str, int]]) -> Dict[str, int]:
    """The user's band mapping (numbers or names in model band order, or name -> number), checked."""
    if isinstance(band_map, Mapping):
        missing = [b for b in wanted if b not in band_map]
        if missing:
            raise InputError(f"Band mapping does not say which raster band is {', '.join(missing)}.")
        mapping = {b: int(band_map[b]) for b in wanted}
    else:
        numbers = [_band_number(b, descriptions) for b in band_map]
        if len(numbers) != len(wanted):
            raise InputError(
                f"Band mapping lists {len(numbers)} band(s) but the model reads {len(wanted)}: "
                f"{', '.join(wanted)}. Give one raster band number per model band, in that order."
            )
        mapping = dict(zip(wanted, numbers))
    count = len(descriptions)
    bad = [f"{k}={v}" for k, v in mapping.items() if not 1 <= v <= count]
    if bad:
        raise InputError(f"Band mapping {', '.join(bad)} is outside the raster's bands 1–{count}.")
    return mapping


def _bands_by_description(wanted: Sequence[str], descriptions: Sequence[Optional[str]]) -> Optional[Dict[str, int]]:
    """The mapping the band descriptions give when they name every model band (distinct bands), else None."""
    by_name: Dict[str, int] = {}
    for i, d in enumerate(descriptions, start=1):
        if d:
            by_name.setdefault(d.strip().upper(), i)
            by_name.setdefault(canonical_band_name(d), i)
    found = {b: by_name.get(b.upper(), by_name.get(canonical_band_name(b))) for b in wanted}
    if all(found.values()) and len(set(found.values())) == len(wanted):
        return found  # type: ignore[return-value]
    return None


def _bands_in_order(wanted: Sequence[str], descriptions: Sequence[Optional[str]]) -> Dict[str, int]:
    """The raster's bands in model band order, unless a description names another band."""
    clash = [f"band {i} is described '{d}' but would be fed as {b}"
             for i, (d, b) in enumerate(zip(descriptions, wanted), start=1) if _contradicts(d, b, i, wanted)]
    if clash:
        raise InputError(
            "The raster's band descriptions contradict the model's bands: " + "; ".join(clash)
            + f". The model reads {', '.join(wanted)}. Give a raster with those bands, or set the band "
            "mapping to the raster band numbers for them, in that order, if the descriptions are wrong."
        )
    return {b: i for i, b in enumerate(wanted, start=1)}


def _contradicts(description: Optional[str], band: str, number: int, wanted: Sequence[str]) -> bool:
    """Whether the description of raster band ``number`` names a band other than ``band``
    (a sensor band 'B<n>' or another band the model reads). Empty descriptions and GDAL's
    generic 'Band <number>' name nothing."""
    if not description or not description.strip():
        return False
    generic = re.fullmatch(r"(?i)\s*band[\s_]*0*(\d+)\s*", description)
    if generic and int(generic.group(1)) == number:
        return False
    name = canonical_band_name(description)
    if name == canonical_band_name(band):
        return False
    return re.fullmatch(r"B\d+[A-Z]?", name) is not None or name in {canonical_band_name(w) for w in wanted}


# ------------------------------------------------------------------- tiles
def model_tiling(contract: ModelContract, tile_size: Optional[int] = None,
                 overlap: Optional[int] = None) -> Tuple[int, int, int]:
    """(tile, overlap, half receptive field) in pixels for a model: the contract's tile size and
    overlap unless overridden, both widened by the reach of its derived features."""
    reach = features.feature_reach(contract)
    tile = int(tile_size or contract.tile_size)
    if overlap is None:
        overlap = contract.default_overlap_px + 2 * reach
    if contract.receptive_field_px is not None:
        half_rf = contract.receptive_field_px // 2 + reach
    else:
        half_rf = contract.default_overlap_px // 4 + reach
    return tile, overlap, half_rf


# ------------------------------------------------------------------- geometry
def _pixel_size_m(src) -> Tuple[float, float]:
    """(x, y) pixel size in metres (``core.geo.pixel_size_m``). A geographic raster is refused here,
    naming its UTM zone: the model's resolution is one size in metres over the whole raster."""
    from .geo import pixel_size_m, utm_crs_for  # shapely and pyproj load with the first run, not with the plugin

    if src.crs is not None and src.crs.is_geographic:
        raise InputError(
            f"The raster is in a geographic CRS ({src.crs.to_string()}, pixel size in degrees), so its "
            f"resolution cannot be compared with the model's in metres. Reproject it first, e.g. with "
            f"Raster › Projections › Warp (gdal:warpreproject) to its UTM zone {utm_crs_for(src.bounds, src.crs)}."
        )
    row, col = pixel_size_m(src.crs, src.transform)  # no CRS: InputError asking to assign one
    return col, row


def _open_source(src, contract: ModelContract, stack: ExitStack):
    """The raster as read: itself, or a warped view at the model's resolution."""
    from rasterio.enums import Resampling
    from rasterio.transform import Affine
    from rasterio.vrt import WarpedVRT

    xres, yres = _pixel_size_m(src)
    target = contract.resolution_m
    if max(abs(xres - target), abs(yres - target)) <= RESOLUTION_TOLERANCE * target:
        return src, False
    unit = xres / abs(src.transform.a)
    step = target / unit  # model pixel in CRS units
    width = max(1, int(round(src.width * abs(src.transform.a) / step)))
    height = max(1, int(round(src.height * abs(src.transform.e) / step)))
    transform = Affine(step, 0.0, src.bounds.left, 0.0, -step, src.bounds.top)
    resampling = Resampling.average if target > max(xres, yres) else Resampling.bilinear
    vrt = stack.enter_context(
        WarpedVRT(src, crs=src.crs, transform=transform, width=width, height=height, resampling=resampling)
    )
    return vrt, True


def _extent_window(ds, bounds: Optional[Sequence[float]], shapes: Optional[list]):
    """Pixel window of ``ds`` covering the extent and the mask's bounds (both optional)."""
    from rasterio.windows import Window, from_bounds

    boxes = [tuple(bounds)] if bounds is not None else []
    if shapes:
        import shapely
        from shapely.geometry import shape as to_shape

        boxes.append(tuple(shapely.total_bounds([to_shape(s) for s in shapes])))
    col0, row0, col1, row1 = 0, 0, ds.width, ds.height
    for box in boxes:
        w = from_bounds(*box, transform=ds.transform)
        col0, row0 = max(col0, int(math.floor(w.col_off))), max(row0, int(math.floor(w.row_off)))
        col1 = min(col1, int(math.ceil(w.col_off + w.width)))
        row1 = min(row1, int(math.ceil(w.row_off + w.height)))
    if col1 <= col0 or row1 <= row0:
        raise InputError(
            "The processing extent / mask does not overlap the raster; choose an extent inside the layer."
        )
    return Window(col0, row0, col1 - col0, row1 - row0)


class _TileReader:
    """Reads one tile of the used bands and its valid mask (nodata, NaN, outside the mask)."""

    def __init__(self, ds, window, band_map: Dict[str, int], shapes: Optional[list]):
        self.ds, self.window, self.band_map = ds, window, band_map
        self.bands = sorted(set(band_map.values()))
        self.nodata = ds.nodatavals
        self.shapes = shapes

    def read(self, row: int, col: int, size: int):
        """Bands and valid mask of the tile at ``row, col`` (window coordinates). Context beyond
        the window comes from the raster itself; only the raster's own edges are reflected."""
        from rasterio.windows import Window

        ri = reflect_index(np.arange(row, row + size) + int(self.window.row_off), self.ds.height)
        ci = reflect_index(np.arange(col, col + size) + int(self.window.col_off), self.ds.width)
        r0, c0 = int(ri.min()), int(ci.min())
        win = Window(c0, r0, int(ci.max()) - c0 + 1, int(ri.max()) - r0 + 1)
        block = self.ds.read(self.bands, window=win)
        block = block[:, (ri - r0)[:, None], (ci - c0)[None, :]]
        valid = np.ones((size, size), bool)
        arrays = {}
        for k, b in enumerate(self.bands):
            a = block[k]
            nd = self.nodata[b - 1]
            if np.issubdtype(a.dtype, np.floating):
                valid &= np.isfinite(a)
            if nd is not None and not (isinstance(nd, float) and math.isnan(nd)):
                valid &= a != nd
            arrays[b] = a.astype(np.float32)
        if self.shapes:
            from .geo import rasterize

            inside = rasterize([(s, 1) for s in self.shapes], self.ds.window_transform(win),
                               (int(win.height), int(win.width))).astype(bool)
            valid &= inside[(ri - r0)[:, None], (ci - c0)[None, :]]
        return {name: arrays[b] for name, b in self.band_map.items()}, valid


def _write_profile(ds, window, count: int, dtype: str, nodata) -> dict:
    return geotiff_profile(ds.crs, ds.window_transform(window), window.width, window.height, count, dtype, nodata)


@dataclass
class TiledSource:
    """A raster opened for tiled inference: the dataset as read (resampled to the model's
    pixel size when needed), the processing window, the tile grid and the tile reader."""

    ds: Any
    window: Any
    mapping: Dict[str, int]
    resampled: bool
    pixel_size: float
    grid: TileGrid
    reader: "_TileReader"

    @property
    def width(self) -> int:
        """Width of the processing window (= of the outputs) in pixels."""
        return int(self.window.width)

    @property
    def height(self) -> int:
        """Height of the processing window (= of the outputs) in pixels."""
        return int(self.window.height)

    def profile(self, count: int, dtype: str, nodata) -> dict:
        """GeoTIFF profile of an output on the processing window's grid."""
        return _write_profile(self.ds, self.window, count, dtype, nodata)


def open_tiled(image: str, contract: ModelContract, stack: ExitStack, *, band_map: BandMap = None,
               bounds: Optional[Sequence[float]] = None, shapes: Optional[list] = None,
               tile_size: Optional[int] = None, overlap: Optional[int] = None,
               progress: Optional[Progress] = None) -> TiledSource:
    """Open ``image`` (within ``stack``) for tiled runs of a model with ``contract``: band
    mapping, resampling to the model's resolution, extent / mask window and tile grid."""
    import rasterio

    progress = ensure_progress(progress)
    stack.enter_context(rasterio.Env(GDAL_CACHEMAX=GDAL_CACHE_BYTES))
    try:
        src = stack.enter_context(rasterio.open(image))
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"Cannot read raster {image!r}: {exc}") from None
    mapping = resolve_band_map(contract, list(src.descriptions), band_map)
    ds, resampled = _open_source(src, contract, stack)
    window = _extent_window(ds, bounds, shapes)
    pixel_size = contract.resolution_m if resampled else _pixel_size_m(src)[0]
    tile, overlap, half_rf = model_tiling(contract, tile_size, overlap)
    if tile < 16:
        raise InputError(
            f"Tile size {tile} is too small; use at least 16 px (the model suggests {contract.tile_size})."
        )
    if overlap >= tile:
        raise InputError(f"Overlap ({overlap} px) must be smaller than the tile size ({tile} px).")
    grid = TileGrid.plan(int(window.height), int(window.width), tile, overlap, half_rf)
    if grid.margin < half_rf:
        progress.push_info(
            f"Warning: overlap {overlap} px is less than the model's receptive field "
            f"({2 * half_rf} px): tile edges are blended but not exact."
        )
    return TiledSource(ds, window, mapping, resampled, pixel_size, grid, _TileReader(ds, window, mapping, shapes))


@dataclass
class _Tile:
    """One tile of the grid in raster order: tile row ``k``, column origin ``col``; ``x`` and
    ``valid`` are None for a tile skipped as wholly nodata."""

    k: int
    col: int
    x: Optional[np.ndarray]
    valid: Optional[np.ndarray]


class _TilePrefetcher:
    """Reads tiles and computes their model inputs in a background thread, at most ``ahead``
    tiles ahead of the consumer (bounded queue, so memory stays flat): tile reading and feature
    computation overlap the model call (onnxruntime and GDAL release the GIL)."""

    _END = object()

    def __init__(self, src: "TiledSource", contract: ModelContract, ahead: int):
        import queue
        import threading

        self.queue: "queue.Queue" = queue.Queue(maxsize=max(1, ahead))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._produce, args=(src, contract), daemon=True,
                                       name="glacierseg-tile-reader")
        self.thread.start()

    def _put(self, item) -> bool:
        import queue

        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _produce(self, src: "TiledSource", contract: ModelContract) -> None:
        grid, reader = src.grid, src.reader
        blend = grid.window()
        try:
            for k, row in enumerate(grid.row_origins):
                for col in grid.col_origins:
                    bands, valid = reader.read(row, col, grid.tile)
                    if not (valid & (blend > 0)).any():
                        item = _Tile(k, col, None, None)
                    else:
                        x = features.model_inputs(contract, bands, src.pixel_size)
                        x[:, ~valid] = 0.0
                        item = _Tile(k, col, x, valid)
                    if not self._put(item):
                        return
            self._put(self._END)
        except BaseException as exc:  # handed to the consumer, raised there
            self._put(exc)

    def __iter__(self):
        while True:
            item = self.queue.get()
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()
        self.thread.join()


def batch_span(grid: TileGrid, batch_size: int) -> int:
    """Tile rows a batch may reach below its first tile's row: ``batch_size`` consecutive tiles
    span ``(batch_size - 1) // columns + 1`` more rows (a batch that would reach further, past
    rows of wholly nodata tiles, is run early)."""
    return min((batch_size - 1) // len(grid.col_origins) + 1, len(grid.row_origins) - 1)


def strip_rows(grid: TileGrid, batch_size: int) -> int:
    """Rows the strip accumulator holds: those of the tile rows one batch spans (its first
    tile's row still open, ``batch_span`` more), plus one tile."""
    rows, span = grid.row_origins, batch_span(grid, batch_size)
    return max(rows[k + span] - rows[k] for k in range(len(rows) - span)) + grid.tile


Predict = Callable[[np.ndarray, np.ndarray], np.ndarray]
Write = Callable[[np.ndarray, np.ndarray, Any], None]


class _ModelCalls:
    """Runs ``predict`` on batch n in a worker thread while the caller's thread blends and writes
    batch n - 1 into ``accumulator`` (rows finished before a batch are written before it is added)."""

    def __init__(self, executor, predict: Predict, accumulator: BlendAccumulator, write: Write):
        self.executor, self.predict, self.accumulator, self.write = executor, predict, accumulator, write
        self.pending: Optional[Tuple[List[_Tile], Any]] = None
        self.calls = 0
        self.tiles_run = 0

    def push(self, batch: List[_Tile]) -> None:
        """Start the model on ``batch``, then blend the batch started before it."""
        self.calls += 1
        # batches hold only tiles that were read (x and valid set; skipped tiles never join one)
        inputs = cast(List[np.ndarray], [t.x for t in batch])
        masks = cast(List[np.ndarray], [t.valid for t in batch])
        following = batch, self.executor.submit(self.predict, np.stack(inputs), np.stack(masks))
        self._finish()
        self.pending = following

    def close(self) -> None:
        """Blend the last batch and write every finished row."""
        self._finish()
        self.pending = None
        self.accumulator.flush(self.write)

    def _finish(self) -> None:
        if self.pending is None:
            return
        batch, future = self.pending
        self.accumulator.flush(self.write)
        for t, values in zip(batch, future.result()):
            self.accumulator.add(t.k, t.col, values, cast(np.ndarray, t.valid))  # a read tile (see push)
        self.tiles_run += len(batch)
        self.accumulator.flush(self.write)


@dataclass
class TileLoop:
    """Every tile of ``src`` through a model step into a ``BlendAccumulator`` (the tile generator /
    tile processor split of Deepness): ``run(predict, write)``; afterwards ``tiles_run``,
    ``tiles_skipped`` (wholly nodata), ``calls`` (model calls) and ``strip_rows`` (rows held)."""

    src: TiledSource
    contract: ModelContract
    channels: int
    batch_size: int = 4
    tiles_run: int = 0
    tiles_skipped: int = 0
    calls: int = 0

    @property
    def strip_rows(self) -> int:
        """Rows the blend accumulator holds (``strip_rows``)."""
        return strip_rows(self.src.grid, self.batch_size)

    def run(self, predict: Predict, write: Write, progress: Optional[Progress] = None) -> Tuple[int, int]:
        """See ``blend_tiles``; returns (tiles run, tiles skipped)."""
        from concurrent.futures import ThreadPoolExecutor

        progress = ensure_progress(progress)
        self.tiles_skipped = 0
        accumulator = BlendAccumulator(self.src.grid, self.channels, self.strip_rows)
        prefetch = _TilePrefetcher(self.src, self.contract, ahead=self.batch_size)
        try:
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="glacierseg-model") as executor:
                model = _ModelCalls(executor, predict, accumulator, write)
                self._batches(prefetch, model, accumulator, progress)
                model.close()
        finally:
            prefetch.close()
        self.tiles_run, self.calls = model.tiles_run, model.calls
        return self.tiles_run, self.tiles_skipped

    def _batches(self, tiles: Iterable[_Tile], model: _ModelCalls, accumulator: BlendAccumulator,
                 progress: Progress) -> None:
        """Fill batches in raster order across tile rows; a wholly nodata tile only counts its
        row down, and a batch that would reach past the strip (rows of nodata tiles between its
        tiles) is run early."""
        span, total = batch_span(self.src.grid, self.batch_size), len(self.src.grid)
        batch: List[_Tile] = []
        for done, t in enumerate(tiles, start=1):
            check_cancel(progress)
            if t.x is None:
                self.tiles_skipped += 1
                accumulator.skip(t.k)
            else:
                if batch and t.k - batch[0].k > span:
                    model.push(batch)
                    batch = []
                batch.append(t)
            progress.set_progress(100.0 * done / total)
            if len(batch) == self.batch_size:
                model.push(batch)
                batch = []
        if batch:
            model.push(batch)


def blend_tiles(src: TiledSource, contract: ModelContract, channels: int, predict: Predict, write: Write, *,
                batch_size: int = 4, progress: Optional[Progress] = None) -> Tuple[int, int]:
    """Run ``predict`` over every tile of ``src`` and blend its outputs; returns (tiles run,
    tiles skipped as wholly nodata).

    ``predict`` maps a float32 (N, inputs, tile, tile) batch of model inputs (0 at invalid
    pixels) and its (N, tile, tile) valid mask to (N, channels, tile, tile) values, which are
    blended with the grid's window weighted by the valid mask (``core.tiling.BlendAccumulator``).
    Batches fill across tile rows and the raster's end, so every call but the last has
    ``batch_size`` tiles (unless rows of wholly nodata tiles lie between a batch's tiles: it is run
    before it would outgrow the strip). Finished rows go to ``write(strip, covered, window)`` strip
    by strip (``strip`` (channels, h, w) blended values, ``covered`` where any valid tile pixel
    contributed, ``window`` the rasterio Window in the output); the strip holds the tile rows a
    batch spans (``strip_rows``), whatever the raster's size.

    Three things overlap: a reader thread reads tiles and computes their inputs one batch ahead,
    ``predict`` runs batch n in a worker thread while this thread blends and writes batch n - 1.
    Tiles are blended in raster order whatever the batch size, so the sums are the same.
    """
    return TileLoop(src, contract, channels, batch_size).run(predict, write, progress)


def prepare_run(
    image: str, model: Union[str, LoadedModel], device: str, batch_size: int,
    mask_shapes: Optional[Iterable[dict]], threads: Optional[int] = None,
) -> Tuple[LoadedModel, Optional[list]]:
    """Checks shared by the tiled model runs (segment, explain): batch size, raster present,
    model loaded with known derived features, mask with polygons. Returns (model, mask shapes)."""
    if batch_size < 1:
        raise InputError("Batch size must be at least 1.")
    if not raster_exists(image):
        raise InputError(f"Raster not found (or not readable by GDAL): {image!r}.")
    loaded = model if isinstance(model, LoadedModel) else load_model(model, device, threads=threads)
    features.validate_features(loaded.contract)
    shapes = list(mask_shapes) if mask_shapes is not None else None
    if shapes is not None and not shapes:
        raise InputError("The mask layer has no polygons; choose a layer with at least one polygon or no mask.")
    return loaded, shapes


# ------------------------------------------------------------------- segment: the pipeline's steps
@dataclass(frozen=True)
class SegmentOptions:
    """The processing parameters of one segment run (as Deepness's processing-parameter
    dataclasses); every field is a keyword of ``segment_raster``.

    ``band_map``: see ``resolve_band_map``. ``bounds`` (xmin, ymin, xmax, ymax) and
    ``mask_shapes`` (GeoJSON-like geometries) are in the raster's CRS. ``tile_size`` / ``overlap``
    override the model's (``model_tiling``). ``tta``: one of ``TTA_MODES``. ``threads``:
    onnxruntime's intra-op threads (default: the cores this process may use). ``thresholds``
    override the contract's per class. ``outline_options``: keyword arguments of
    ``core.vectorize.vectorize`` for the optional outlines.
    """

    band_map: BandMap = None
    bounds: Optional[Sequence[float]] = None
    mask_shapes: Optional[Iterable[dict]] = None
    tile_size: Optional[int] = None
    overlap: Optional[int] = None
    tta: str = "none"
    device: str = "auto"
    batch_size: int = 4
    threads: Optional[int] = None
    thresholds: Optional[Mapping[str, float]] = None
    outline_options: Optional[Mapping[str, Any]] = None

    def validate(self) -> None:
        """Checks that need neither the raster nor the model (the rest are ``prepare_run``'s)."""
        if self.tta not in TTA_MODES:
            raise InputError(f"Unknown test-time augmentation {self.tta!r}; choose one of {', '.join(TTA_MODES)}.")


class ModelStep:
    """The tile processor: model inputs -> class probabilities, averaged over the test-time
    transforms (``core.tiling.dihedral_transforms``; the transforms of a batch share model calls
    of up to ``TTA_CALL_TILES`` tiles). Keeps the model's seconds and a sample of the scaled inputs
    of valid pixels (compared with the training range afterwards)."""

    def __init__(self, loaded: LoadedModel, tta: str):
        self.loaded, self.contract = loaded, loaded.contract
        self.transforms = dihedral_transforms(tta)
        self.channels = len(self.contract.classes)
        self.seconds = 0.0
        self.samples: List[np.ndarray] = []

    def __call__(self, x: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """(N, classes, tile, tile) probabilities of a batch of model inputs (``blend_tiles``'s ``predict``)."""
        self._sample(x, valid)
        if len(self.transforms) == 1:  # no TTA: the batch as it is, no copies
            return self._call(x)
        n = len(x)
        group = max(1, TTA_CALL_TILES // n)
        probs: Optional[np.ndarray] = None
        for g in range(0, len(self.transforms), group):
            chosen = self.transforms[g : g + group]
            raw = self._call(np.concatenate([apply_transform(x, turns, flip) for turns, flip in chosen]))
            for i, (turns, flip) in enumerate(chosen):
                p = invert_transform(raw[i * n : (i + 1) * n], turns, flip)
                if probs is None:
                    probs = p.copy()
                else:
                    probs += p
        assert probs is not None  # dihedral_transforms gives at least the identity
        probs /= len(self.transforms)
        return probs

    def _call(self, batch: np.ndarray) -> np.ndarray:
        """Probabilities of one model call (the contract's activation of its raw output)."""
        t0 = time.perf_counter()
        raw = self.loaded.run(np.ascontiguousarray(batch, dtype=np.float32))
        self.seconds += time.perf_counter() - t0
        if raw.shape[1] != self.channels:
            raise InputError(
                f"The model returned {raw.shape[1]} channels but its contract lists {self.channels} classes."
            )
        return activate(raw, self.contract.activation)

    def _sample(self, x: np.ndarray, valid: np.ndarray) -> None:
        """Up to ``RANGE_SAMPLE_PX`` valid pixels of each of the first ``RANGE_SAMPLE_TILES`` tiles, on an
        even grid (strided before the valid pixels are picked: this runs between model calls)."""
        stride = max(1, math.ceil(math.sqrt(x.shape[-2] * x.shape[-1] / RANGE_SAMPLE_PX)))
        for xi, vi in zip(x, valid):
            if len(self.samples) < RANGE_SAMPLE_TILES:
                self.samples.append(xi[:, ::stride, ::stride][:, vi[::stride, ::stride]])

    def range_warnings(self) -> List[str]:
        """Warnings for inputs far from the training range (``contract.input_range_warnings``)."""
        if not self.samples:
            return []
        return input_range_warnings(self.contract.bands, list(np.concatenate(self.samples, axis=1)))


class SegmentWriter:
    """The output writer: probability raster (float32, a band per class, NaN = nodata) and class
    raster (uint8 with the class colour table, ``CLASS_NODATA`` = nodata), written strip by strip;
    classes decided by the contract's rule (``ModelContract.classify``) with ``thresholds``."""

    def __init__(self, probabilities: str, classes: str, src: TiledSource, contract: ModelContract,
                 thresholds: Mapping[str, float], stack: ExitStack):
        import rasterio

        self.contract, self.thresholds = contract, dict(thresholds)
        n_classes = len(contract.classes)
        self.prob_ds = stack.enter_context(rasterio.open(probabilities, "w", **src.profile(n_classes, "float32",
                                                                                            PROBABILITY_NODATA)))
        self.class_ds = stack.enter_context(rasterio.open(classes, "w", **src.profile(1, "uint8", CLASS_NODATA)))
        for i, name in enumerate(contract.class_names, start=1):
            self.prob_ds.set_band_description(i, name)
        self.class_ds.set_band_description(1, "class")
        self.class_ds.write_colormap(1, class_colormap(contract.classes, contract.background))

    def write(self, strip: np.ndarray, covered: np.ndarray, window) -> None:
        """Write blended probabilities and their classes where ``covered`` (``Write`` of ``TileLoop.run``)."""
        cls = self.contract.classify(strip, self.thresholds)
        cls[~covered] = CLASS_NODATA
        strip[:, ~covered] = PROBABILITY_NODATA
        self.prob_ds.write(strip, window=window)
        self.class_ds.write(cls, 1, window=window)

    def close(self) -> None:
        """Close both rasters (before their temporary files are moved onto the outputs)."""
        self.prob_ds.close()
        self.class_ds.close()


def _describe_run(loaded: LoadedModel, src: TiledSource, options: SegmentOptions) -> str:
    """The run's settings in one line, for the log."""
    contract, grid = loaded.contract, src.grid
    return (
        f"Model {contract.name or os.path.basename(loaded.path)} on {loaded.describe()}; "
        f"batch {options.batch_size}; {src.width}×{src.height} px in {len(grid)} tiles of {grid.tile} px, "
        f"overlap {grid.overlap} px, TTA {options.tta}; "
        f"bands {', '.join(f'{k}←{v}' for k, v in src.mapping.items())}"
        + (f"; resampled to the model's {contract.resolution_m:g} m" if src.resampled else "")
    )


def _write_outlines(image: str, classes_tmp: str, outlines_tmp: str, loaded: LoadedModel,
                    options: SegmentOptions, progress: Progress) -> int:
    """Smoothed class outlines of the class raster (``core.vectorize``); returns their count."""
    from .vectorize import vectorize

    contract = loaded.contract
    outline = vectorize(
        classes_tmp, outlines_tmp, contract.classes, precedence=contract.precedence,
        background_value=contract.background.value, layer_name="outlines",
        source=f"{os.path.basename(image)}; model {contract.name or os.path.basename(loaded.path)}",
        progress=progress, **dict(options.outline_options or {}),
    )
    return outline.feature_count


def segment_raster(image: str, model: Union[str, LoadedModel], probabilities_out: str, classes_out: str,
                   options: Optional[SegmentOptions] = None, *, outlines_out: Optional[str] = None,
                   progress: Optional[Progress] = None, **settings: Any) -> SegmentResult:
    """Run ``model`` (ONNX path or loaded model) over ``image``; write the probability
    raster (float32, one band per class) and the class raster (uint8, 255 = nodata).

    The run's parameters are ``options`` (``SegmentOptions``) or its fields as keywords
    (``settings``, which override ``options``). Outputs are on the input's grid, or — when the
    raster's pixel size differs from the model's ``resolution_m`` by more than 1 % — on a grid with
    the model's pixel size, the input's CRS and its upper-left corner. The session's settings are
    logged. ``outlines_out`` (a GeoPackage path) adds smoothed class outlines made by
    ``core.vectorize.vectorize`` with ``outline_options``; all outputs appear together only when
    every step succeeded.

    Steps: options checked, model loaded (``prepare_run``), tile source opened (``open_tiled``),
    outputs opened (``SegmentWriter``), tiles run through the ``ModelStep`` and blended
    (``TileLoop``), outlines vectorized.
    """
    options = dataclasses.replace(options or SegmentOptions(), **settings)
    outer = ensure_progress(progress)
    progress = SubProgress(outer, 0.0, 85.0) if outlines_out else outer
    options.validate()
    loaded, shapes = prepare_run(image, model, options.device, options.batch_size, options.mask_shapes, options.threads)
    contract = loaded.contract
    thresholds = dict(contract.thresholds, **(options.thresholds or {}))
    outline_count = 0
    with ExitStack() as stack:
        src = open_tiled(image, contract, stack, band_map=options.band_map, bounds=options.bounds, shapes=shapes,
                         tile_size=options.tile_size, overlap=options.overlap, progress=progress)
        progress.push_info(_describe_run(loaded, src, options))
        temporary = stack.enter_context(  # all outputs commit together, on success
            atomic_outputs(probabilities_out, classes_out, outlines_out or None, progress=outer))
        # paths given get paths; outlines_tmp is None only without outlines_out, and used only with it
        prob_tmp, class_tmp, outlines_tmp = cast(List[str], temporary)
        writer = SegmentWriter(prob_tmp, class_tmp, src, contract, thresholds, stack)
        step = ModelStep(loaded, options.tta)
        loop = TileLoop(src, contract, step.channels, options.batch_size)
        loop.run(step, writer.write, progress)
        writer.close()
        for warning in step.range_warnings():
            progress.push_info(warning)
        if outlines_out:
            outline_count = _write_outlines(image, class_tmp, outlines_tmp, loaded, options,
                                            SubProgress(outer, 85.0, 100.0))
    outer.set_progress(100.0)
    return SegmentResult(
        probabilities=probabilities_out, classes=classes_out, contract=contract, provider=loaded.provider,
        tiles_run=loop.tiles_run, tiles_skipped=loop.tiles_skipped, inference_seconds=step.seconds,
        band_map=src.mapping, resampled=src.resampled, width=src.width, height=src.height,
        outlines=outlines_out or None, outline_count=outline_count,
        model_calls=loop.calls, session=loaded.describe(),
    )
