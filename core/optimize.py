"""Faster variants of a GlacierSeg model: int8 quantization for the CPU, float16 for CUDA.

Quantization uses onnxruntime's tools (``onnxruntime.quantization``): *static* int8 (QDQ
format, per-channel signed int8 weights, unsigned int8 activations whose ranges are calibrated
on tiles of a raster the user gives, MinMax calibration) or *dynamic* int8 (weights quantized,
activation ranges computed per call). Half precision converts weights and activations to
float16 (``onnxruntime.transformers.float16``), for CUDA. The variant is measured against the
original on a raster and, where given, a reference: in-model time of both (speed-up) and IoU /
F1 of both; with no reference, the variant is scored against the original's classes (the
change it makes). Both figures go into the new model's card as a ``scores`` entry. Segment
never picks a variant: the user chooses the model file.
"""
from __future__ import annotations

import dataclasses
import os
import tempfile
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple, cast

import numpy as np

from . import features
from .contract import ModelContract, with_score, write_contract
from .deps import require
from .errors import InputError, ModelContractError
from .io import atomic_output
from .progress import Progress, SubProgress, check_cancel, ensure_progress
from .runtime import CUDA, load_model
from .segment import BandMap, open_tiled

METHODS = ("int8_static", "int8_dynamic", "fp16")
METHOD_LABELS = ("int8, static (calibrated on the raster) — CPU", "int8, dynamic — CPU", "float16 — CUDA")
COMPUTE_OPS = {"Conv", "ConvTranspose", "MatMul", "Gemm"}  # the layers int8 / float16 make faster
QUANTIZED_OPS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QLinearConv", "QLinearMatMul",
                 "ConvInteger", "MatMulInteger"}
SPEED_ROUNDS = 5  # paired rounds (original's block, variant's block) whose median ratio is the speed-up
# consecutive batches per model and round; the first after each switch of model is run but not timed
SPEED_BLOCK = 3
CALIBRATION_TILES = 32  # tiles of the calibration raster, evenly spread over its valid tiles
# without a calibration raster: this share of the raster's rows (the top) calibrates, the rest is measured
CALIBRATION_SHARE = 0.25


@dataclass
class OptimizeResult:
    """The optimized model variant: path, method, contract and its measured speed and accuracy."""

    path: str
    method: str
    contract: ModelContract
    metrics: Dict[str, float]
    dataset: str


def refusal(model_path: str, method: str) -> Optional[str]:
    """Why ``method`` cannot make a faster variant of the ONNX model at ``model_path`` (None when it can)."""
    import onnx

    model = onnx.load(model_path)
    ops = {n.op_type for n in model.graph.node}
    name = os.path.basename(model_path)
    quantized = sorted(ops & QUANTIZED_OPS)
    if quantized:
        return (f"{name} is already quantized (it has {', '.join(quantized)} layers); quantize the original "
                "float32 model instead.")
    half = [i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT16]
    inputs_half = any(i.type.tensor_type.elem_type == onnx.TensorProto.FLOAT16 for i in model.graph.input)
    if half or inputs_half:
        return f"{name} is already in half precision (float16); start from the original float32 model."
    if not ops & COMPUTE_OPS:
        return (f"{name} has no Conv, ConvTranspose, MatMul or Gemm layers (its layers: {', '.join(sorted(ops))}): "
                f"{'int8 quantization' if method.startswith('int8') else 'half precision'} has nothing to make "
                "faster. Use the model as it is.")
    return None


@dataclass
class OptimizeOptions:
    """What ``optimize_model`` calibrates on and measures with.

    ``image``: the raster the variant is measured on (and, for ``int8_static`` without
    ``calibration_image``, calibrated on: see ``measurement_windows``); ``reference``: polygons or
    class raster to score both models against (None: the original's classes);
    ``calibration_image``: a separate raster for the static int8 calibration tiles."""

    image: Optional[str] = None
    reference: Optional[str] = None
    reference_field: Optional[str] = None
    calibration_image: Optional[str] = None
    band_map: BandMap = None
    calibration_tiles: int = CALIBRATION_TILES
    device: str = "auto"
    batch_size: int = 8

    def check(self, method: str) -> None:
        """Raise InputError for an unknown method or missing / unusable inputs."""
        if method not in METHODS:
            raise InputError(f"Unknown optimization {method!r}; choose one of {', '.join(METHODS)}.")
        if not self.image:
            raise InputError("Give a raster to measure the variant on (and, for static int8, to calibrate it): "
                             "one like those the model will segment.")
        for label, path in (("Raster", self.image), ("Calibration raster", self.calibration_image)):
            if path and not os.path.isfile(path):
                raise InputError(f"{label} not found: {path!r}.")
        if self.calibration_image and os.path.realpath(self.calibration_image) == os.path.realpath(self.image):
            raise InputError("The calibration raster is the raster the variant is measured on: give another one, or "
                             "none (the raster is then split into a calibration window and a measurement window).")
        if self.reference and not os.path.exists(self.reference.split("|")[0]):
            raise InputError(f"Reference not found: {self.reference!r}.")
        if self.calibration_tiles < 1:
            raise InputError("Calibration needs at least 1 tile.")


@dataclass(frozen=True)
class Windows:
    """Where the static int8 variant is calibrated and where both models are measured: a raster
    and bounds (in its CRS; None: all of it) each. The two never overlap."""

    calibration_image: str
    calibration_bounds: Optional[Tuple[float, float, float, float]]
    measurement_bounds: Optional[Tuple[float, float, float, float]]

    def describe(self, image: str) -> str:
        """Where calibration and measurement ran, for the report."""
        if self.calibration_bounds is None:
            return f"calibrated on {os.path.basename(self.calibration_image)}"
        return (f"calibrated on the top {CALIBRATION_SHARE:.0%} of {os.path.basename(image)}'s rows, "
                f"measured on the other {1 - CALIBRATION_SHARE:.0%}")


def measurement_windows(options: OptimizeOptions, method: str) -> Windows:
    """Disjoint calibration and measurement data: the calibration raster when given; else, for
    ``int8_static``, the raster's top ``CALIBRATION_SHARE`` of rows (on a row boundary) calibrates
    and the rest is measured, so the variant is never scored on the tiles that set its ranges.
    Methods without calibration are measured on the whole raster."""
    import rasterio

    image = cast(str, options.image)  # the raster to measure on (OptimizeOptions.check refuses none)
    if method != "int8_static" or options.calibration_image:
        return Windows(options.calibration_image or image, None, None)
    with rasterio.open(image) as ds:
        left, bottom, right, top = ds.bounds
        split_row = int(round(ds.height * CALIBRATION_SHARE))
        split_y = (ds.transform * (0, split_row))[1]
    if not 0 < split_row < ds.height:
        raise InputError(f"{os.path.basename(image)} is too small to split into calibration and measurement "
                         "windows; give a separate calibration raster.")
    return Windows(image, (left, split_y, right, top), (left, bottom, right, split_y))


class _CalibrationTiles:
    """onnxruntime ``CalibrationDataReader``: model inputs of ``count`` tiles spread over the
    valid tiles of a raster (within ``bounds``), one tile per call (the calibration's memory
    stays one tile)."""

    def __init__(self, image: str, contract: ModelContract, input_name: str, band_map: BandMap, count: int,
                 progress: Progress, bounds: Optional[Sequence[float]] = None):
        self.image, self.contract, self.input_name = image, contract, input_name
        self.band_map, self.count, self.progress, self.bounds = band_map, count, progress, bounds
        self._iter = None

    def _tiles(self):
        with ExitStack() as stack:
            src = open_tiled(self.image, self.contract, stack, band_map=self.band_map, bounds=self.bounds)
            origins = [(r, c) for r in src.grid.row_origins for c in src.grid.col_origins]
            picks = np.unique(np.linspace(0, len(origins) - 1, min(len(origins), 4 * self.count)).round().astype(int))
            used = 0
            for i in picks:
                check_cancel(self.progress)
                bands, valid = src.reader.read(*origins[i], src.grid.tile)
                if valid.mean() < 0.5:
                    continue
                x = features.model_inputs(self.contract, bands, src.pixel_size)
                x[:, ~valid] = 0.0
                used += 1
                self.progress.set_progress(100.0 * used / self.count)
                yield {self.input_name: x[None].astype(np.float32)}
                if used == self.count:
                    return
            if used == 0:
                where = f"the calibration window (top {CALIBRATION_SHARE:.0%} of the rows) of " if self.bounds else ""
                raise InputError(f"{where}{os.path.basename(self.image)} has no tile that is at least half valid "
                                 "pixels; give a calibration raster with data where the model is meant to run.")

    def get_next(self):
        if self._iter is None:
            self._iter = self._tiles()
        return next(self._iter, None)

    def rewind(self):
        self._iter = None


def _reduce_axes(node, initializers) -> Optional[List[int]]:
    """The ``axes`` of a ReduceMean node: its attribute (opset < 18) or its constant second input."""
    from onnx import helper, numpy_helper

    for attribute in node.attribute:
        if attribute.name == "axes":
            return [int(a) for a in helper.get_attribute_value(attribute)]
    if len(node.input) > 1 and node.input[1] in initializers:
        return [int(a) for a in numpy_helper.to_array(initializers[node.input[1]]).ravel()]
    return None


def _is_spatial_mean(node, ranks: Dict[str, int], initializers) -> bool:
    """Whether ``node`` is a ReduceMean over axes 2 and 3 of a 4-D tensor that keeps its dimensions."""
    from onnx import helper

    if node.op_type != "ReduceMean" or ranks.get(node.input[0]) != 4:
        return False
    keepdims = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "keepdims"), 1)
    axes = _reduce_axes(node, initializers)
    return keepdims == 1 and axes is not None and sorted(a % 4 for a in axes) == [2, 3]


def _tensor_ranks(graph) -> Dict[str, int]:
    """Rank of every tensor whose shape the graph records (inputs and shape-inferred values)."""
    return {v.name: len(v.type.tensor_type.shape.dim) for v in list(graph.value_info) + list(graph.input)
            if v.type.tensor_type.HasField("shape")}


def spatial_means_as_pooling(model) -> int:
    """Rewrite, in the shape-inferred ONNX ``model`` (in place), every ReduceMean over both spatial axes of a 4-D
    tensor (keepdims) as the GlobalAveragePool it equals (ONNX operator definitions: the mean
    over all spatial elements per sample and channel). Returns how many were rewritten.

    Same arithmetic in float32; the point is int8: onnxruntime's quantizer has a quantized
    global average pool (QLinearGlobalAveragePool) but leaves ReduceMean in float, so each
    squeeze-and-excitation block of an EfficientNet cost a DequantizeLinear of its whole
    activation and a float ReduceMean (measured: 10 % of the int8 model's time, docs/optimize-model.md)."""
    from onnx import helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    ranks = _tensor_ranks(graph)
    rewritten = 0
    for i, node in enumerate(graph.node):
        if _is_spatial_mean(node, ranks, initializers):
            graph.node[i].CopyFrom(helper.make_node("GlobalAveragePool", [node.input[0]], list(node.output),
                                                    name=node.name))
            rewritten += 1
    return rewritten


def _is_nearest_resize(node, ranks: Dict[str, int]) -> bool:
    """Whether ``node`` is a nearest-neighbour Resize of a 4-D tensor."""
    from onnx import helper

    if node.op_type != "Resize" or ranks.get(node.input[0]) != 4:
        return False
    mode = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "mode"), b"nearest")
    return mode in (b"nearest", "nearest")


def upsampling_kept_channels_first(model) -> int:
    """Insert, in the shape-inferred ONNX ``model`` (in place), a shape-keeping Reshape (target shape all zeros: every
    dimension copied, ONNX Reshape definition) before every nearest-neighbour Resize of a 4-D
    tensor. Returns how many were inserted (0 when the model already has them).

    The same values in float32; the point is int8 on the CPU. onnxruntime runs an int8 model's
    QLinearConv channels-last and pushes the layout's transposes through a Resize, which then
    upsamples uint8 channels-last, where its 2x nearest-neighbour fast path (channels-first
    scales only) does not apply: 18 % of the int8 U-Net EfficientNet-B0's time for its five
    decoder upsamplings. A Reshape is not pushed through, so the Resize stays channels-first
    (1.5 % of the time) at the cost of two transposes (measured in docs/optimize-model.md)."""
    from onnx import helper, numpy_helper

    graph = model.graph
    ranks = _tensor_ranks(graph)
    producers = {out: n for n in graph.node for out in n.output}
    keep = "glacierseg_keep_shape"
    nodes, inserted = [], 0
    for node in graph.node:
        source = producers.get(node.input[0]) if node.input else None
        kept = source is not None and source.op_type == "Reshape" and source.input[1] == keep
        if _is_nearest_resize(node, ranks) and not kept:
            channels_first = f"{node.input[0]}_channels_first_{inserted}"
            nodes.append(helper.make_node("Reshape", [node.input[0], keep], [channels_first],
                                          name=f"{node.name or 'Resize'}_channels_first"))
            node.input[0] = channels_first
            inserted += 1
        nodes.append(node)
    if inserted:
        if keep not in {i.name for i in graph.initializer}:
            graph.initializer.append(numpy_helper.from_array(np.zeros(4, np.int64), keep))
        del graph.node[:]
        graph.node.extend(nodes)
    return inserted


NARROW_CONV_CHANNELS = 8  # int8 convolutions with fewer output channels are widened (``narrow_convolutions_widened``)
WIDENED_CONV_CHANNELS = 16


def narrow_convolutions_widened(model) -> int:
    """Widen, in the shape-inferred ONNX ``model`` (in place), every Conv (group 1, constant weights, output larger than
    1 × 1 pixel) with fewer than ``NARROW_CONV_CHANNELS`` output channels to about
    ``WIDENED_CONV_CHANNELS`` by repeating its filters, and take its first channels back with a
    Slice. Returns how many were widened.

    The same values in float32 (the repeats are copies); the point is int8 on the CPU, where
    onnxruntime's channels-last QLinearConv with one output channel runs as a matrix product one
    column wide: the 1-channel output convolution of a U-Net EfficientNet-B0 took 16.7 ms per batch
    of 8 tiles, as long as the 16-channel convolution before it with 16 times the arithmetic;
    widened to 16 channels, 7.4 ms plus 4 ms for the Slice (docs/optimize-model.md). Repeating the
    filters (not zero ones) keeps each channel's int8 weight scale and the output's range as they were."""
    from onnx import helper, numpy_helper

    graph = model.graph
    initializers = {i.name: i for i in graph.initializer}
    pointwise = {v.name for v in graph.value_info  # outputs of 1 × 1 pixel (squeeze-and-excitation)
                 if [d.dim_value for d in v.type.tensor_type.shape.dim][2:] == [1, 1]}
    nodes, widened = [], 0
    for node in graph.node:
        constants = node.op_type == "Conv" and len(node.input) > 1 and all(i in initializers for i in node.input[1:])
        weight = initializers[node.input[1]] if constants else None
        group = next((helper.get_attribute_value(a) for a in node.attribute if a.name == "group"), 1)
        if (weight is None or group != 1 or len(weight.dims) != 4 or weight.dims[0] >= NARROW_CONV_CHANNELS
                or node.output[0] in pointwise):
            nodes.append(node)
            continue
        channels = int(weight.dims[0])
        repeats = max(2, WIDENED_CONV_CHANNELS // channels)
        inputs = [node.input[0]]
        for name in node.input[1:]:  # weights, bias
            wide = numpy_helper.from_array(np.concatenate([numpy_helper.to_array(initializers[name])] * repeats),
                                           f"{name}_widened_{widened}")
            graph.initializer.append(wide)
            inputs.append(wide.name)
        wide_out = f"{node.output[0]}_widened"
        nodes.append(helper.make_node("Conv", inputs, [wide_out], name=node.name, domain=node.domain))
        nodes[-1].attribute.extend(node.attribute)
        bounds = [numpy_helper.from_array(np.array([v], np.int64), f"{node.name or 'Conv'}_{what}_{widened}")
                  for what, v in (("start", 0), ("end", channels), ("axis", 1))]
        graph.initializer.extend(bounds)
        nodes.append(helper.make_node("Slice", [wide_out] + [b.name for b in bounds], list(node.output),
                                      name=f"{node.name or 'Conv'}_first_channels"))
        widened += 1
    if widened:
        del graph.node[:]
        graph.node.extend(nodes)
        used = {i for n in graph.node for i in n.input}
        kept = [i for i in graph.initializer if i.name in used]  # the narrow filters are no longer read
        del graph.initializer[:]
        graph.initializer.extend(kept)
    return widened


def rewrite_for_int8(path: str, method: str) -> Dict[str, int]:
    """The graph rewrites before quantizing, in the ONNX file at ``path`` (read, shape-inferred and
    written once), each keeping the float32 values; returns how many of each were made. Spatial
    means as pooling (both methods); for ``int8_static``, whose QLinearConv onnxruntime runs
    channels-last, nearest upsampling kept channels-first and narrow convolutions widened (dynamic
    int8's ConvInteger stays channels-first, where neither helps)."""
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(path))  # tensor ranks and sizes the rewrites read
    made = {"spatial means as pooling": spatial_means_as_pooling(model)}
    if method == "int8_static":
        made["upsampling kept channels-first"] = upsampling_kept_channels_first(model)
        made["narrow convolutions widened"] = narrow_convolutions_widened(model)
    if any(made.values()):
        onnx.save(model, path)
    return made


def _quantize(model_path: str, out_path: str, method: str, calibration: Optional[_CalibrationTiles]) -> None:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_dynamic, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with tempfile.TemporaryDirectory() as tmp:
        prepared = os.path.join(tmp, "prepared.onnx")
        # folds and infers shapes, as the tools advise
        quant_pre_process(model_path, prepared, skip_symbolic_shape=True)
        rewrite_for_int8(prepared, method)
        if method == "int8_dynamic":
            quantize_dynamic(prepared, out_path, weight_type=QuantType.QInt8, per_channel=True)
        else:
            quantize_static(prepared, out_path, calibration, quant_format=QuantFormat.QDQ, per_channel=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)


def _half(model_path: str, out_path: str) -> None:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = convert_float_to_float16(onnx.load(model_path), keep_io_types=False)
    onnx.save(model, out_path)


def _classes_and_time(image: str, model_path: str, out_dir: str, tag: str, options: OptimizeOptions,
                      bounds: Optional[Sequence[float]], progress: Progress):
    from .segment import segment_raster

    loaded = load_model(model_path, options.device)
    c = loaded.contract
    # first-call allocations
    loaded.run(np.zeros((options.batch_size, len(c.bands), c.tile_size, c.tile_size), np.float32))
    result = segment_raster(image, loaded, os.path.join(out_dir, f"{tag}_p.tif"), os.path.join(out_dir, f"{tag}_c.tif"),
                            band_map=options.band_map, bounds=bounds, batch_size=options.batch_size, progress=progress)
    return result.classes, result.inference_seconds, loaded.describe()


def paired_speedup(original: str, variant: str, device: str, batch_size: int, progress: Progress,
                   rounds: int = SPEED_ROUNDS) -> float:
    """Median over ``rounds`` of (original's / variant's) time per batch. Each round runs
    ``SPEED_BLOCK`` consecutive batches of the original, then as many of the variant, on the same
    input, and times all but the first of each block: drifting load on a shared machine touches both
    alike (a round takes a second or two), and each model is timed as segment runs it, batch after
    batch. The first batch after a switch of model is slower (its weights and buffers out of the
    caches, the other session's threads still awake): measured 11 % for a float32 and 33 % for an
    int8 EfficientNet-B0 U-Net, which alternating single batches would have counted as the
    variant's speed (docs/optimize-model.md)."""
    import time

    models = [load_model(p, device) for p in (original, variant)]
    c = models[0].contract
    x = np.random.default_rng(0).normal(size=(batch_size, len(c.bands), c.tile_size, c.tile_size)).astype(np.float32)
    ratios = []
    for _ in range(rounds):
        check_cancel(progress)
        seconds = []
        for m in models:
            m.run(x)  # after the switch: not timed
            t0 = time.perf_counter()
            for _ in range(SPEED_BLOCK - 1):
                m.run(x)
            seconds.append(time.perf_counter() - t0)
        ratios.append(seconds[0] / seconds[1])
    return float(np.median(ratios))


def measure(original: str, variant: str, options: OptimizeOptions, bounds: Optional[Sequence[float]] = None,
            progress: Optional[Progress] = None) -> Dict[str, float]:
    """In-model seconds of segmenting ``options.image`` (within ``bounds``), IoU and F1 (all
    classes against background) of ``original`` and ``variant`` against ``options.reference``
    (class raster or polygons; None: the original's own classes), the changes, and the
    speed-up (``paired_speedup``)."""
    from .evaluate import evaluate

    progress = ensure_progress(progress)
    with tempfile.TemporaryDirectory() as tmp:
        runs = {}
        for i, (tag, path) in enumerate((("original", original), ("variant", variant))):
            runs[tag] = _classes_and_time(cast(str, options.image), path, tmp, tag, options, bounds,
                                          SubProgress(progress, 45.0 * i, 45.0 * (i + 1)))
        classes = load_model(original, "cpu").contract.classes
        scores = {}
        for tag in ("original", "variant"):
            ref = options.reference or runs["original"][0]
            row = evaluate(runs[tag][0], ref, reference_field=options.reference_field,
                           classes=classes).row("all").scores
            scores[tag] = (row.iou, row.f1)
    speedup = paired_speedup(original, variant, options.device, options.batch_size, progress)
    progress.set_progress(100.0)
    metrics = {
        "iou": scores["variant"][0], "f1": scores["variant"][1],
        "iou_change": scores["variant"][0] - scores["original"][0],
        "f1_change": scores["variant"][1] - scores["original"][1],
        "seconds": runs["variant"][1], "original_seconds": runs["original"][1],
        "speedup": speedup,
    }
    if options.reference:
        metrics.update(original_iou=scores["original"][0], original_f1=scores["original"][1])
    return metrics


def _checked_model(model_path: str, method: str, device: str):
    """The model loaded on ``device`` (its file and contract checked; DeviceError, before anything
    is written, where ``cuda`` is asked for and cannot run); ModelContractError when ``method``
    cannot make it faster (``refusal``)."""
    loaded = load_model(model_path, device)
    reason = refusal(model_path, method)
    if reason:
        raise ModelContractError(f"Cannot make a {method} variant: {reason}")
    return loaded


def _write_variant(model_path: str, out_path: str, method: str, loaded, options: OptimizeOptions, windows: Windows,
                   progress: Progress) -> None:
    """The variant's graph at ``out_path``; onnxruntime's tool failures become a ModelContractError."""
    if method == "fp16":
        _half(model_path, out_path)
        return
    calibration = None
    if method == "int8_static":
        calibration = _CalibrationTiles(windows.calibration_image, loaded.contract, loaded.input_name,
                                         options.band_map, options.calibration_tiles, progress,
                                         windows.calibration_bounds)
    try:
        _quantize(model_path, out_path, method, calibration)
    except (InputError, ModelContractError):
        raise
    except Exception as exc:  # onnxruntime's tools raise plain exceptions for graphs they cannot handle
        raise ModelContractError(
            f"Cannot make a {method} variant of {os.path.basename(model_path)}: onnxruntime's quantization "
            f"failed ({str(exc).splitlines()[0][:200]}). Try 'int8_dynamic', or use the model as it is."
        ) from None


def _variant_contract(contract: ModelContract, name: str, method: str, metrics: Dict[str, float], dataset: str,
                      how: str) -> ModelContract:
    """The original's contract renamed ``<name>-<method>``, described, with the measured score."""
    variant = dataclasses.replace(
        contract, name=f"{name}-{method.replace('_', '-')}",
        description=(f"{method} variant of {name} made by glacierseg:optimize_model. "
                     + (contract.description or "")).strip(),
    )
    return with_score(variant, {"dataset": dataset, "metrics": metrics, "method": how})


def optimize_model(model_path: str, out_path: str, method: str, options: Optional[OptimizeOptions] = None, *,
                   progress: Optional[Progress] = None, **fields) -> OptimizeResult:
    """Write a faster variant of the GlacierSeg model ``model_path`` to ``out_path`` with
    ``method`` (one of ``METHODS``), calibrated and measured as ``options`` (or the
    ``OptimizeOptions`` ``fields``) say: ``int8_static`` calibrates on tiles of
    ``calibration_image`` or of a window of ``image`` it is then not measured on
    (``measurement_windows``); ``fp16`` is measured on ``device`` (CUDA when available with
    ``auto``). The figures (``measure``) go into the variant's card."""
    progress = ensure_progress(progress)
    options = options or OptimizeOptions(**fields)
    require("onnxruntime", "onnx")  # onnxruntime's quantization tools need the onnx package
    options.check(method)
    assert options.image is not None  # check refuses a missing raster
    loaded = _checked_model(model_path, method, options.device)
    if method == "fp16" and loaded.provider != CUDA:
        progress.push_info(f"Warning: no CUDA here: the float16 variant is measured on {loaded.provider}, where it "
                           "runs but is not faster; its speed-up on a GPU is not measured.")
    windows = measurement_windows(options, method)
    name = loaded.contract.name or os.path.splitext(os.path.basename(model_path))[0]
    with atomic_output(out_path, progress=progress) as tmp_out:
        _write_variant(model_path, tmp_out, method, loaded, options, windows, SubProgress(progress, 0.0, 30.0))
        progress.set_progress(35.0)
        metrics = measure(model_path, tmp_out, options, windows.measurement_bounds, SubProgress(progress, 35.0, 100.0))
        dataset = (os.path.basename(options.reference.split("|")[0]) if options.reference
                   else f"classes of {name} (the original) on {os.path.basename(options.image)}")
        how = (f"glacierseg:optimize_model {method} on {os.path.basename(options.image)}"
               f"{' (' + windows.describe(options.image) + ')' if method == 'int8_static' else ''}: IoU/F1 of all "
               f"classes against background; iou_change/f1_change vs the original; speedup = median of {SPEED_ROUNDS} "
               f"paired rounds of {SPEED_BLOCK} consecutive batches of {options.batch_size} tiles per model (the "
               f"first after each switch untimed), original's / variant's "
               f"({loaded.describe() if method != 'fp16' else options.device})")
        variant = _variant_contract(loaded.contract, name, method, metrics, dataset, how)
        write_contract(tmp_out, variant)
    progress.push_info(
        f"{method} variant written to {out_path}: speed-up {metrics['speedup']:.2f}× (in-model time), "
        f"IoU {metrics['iou']:.4f} ({metrics['iou_change']:+.4f}), "
        f"F1 {metrics['f1']:.4f} ({metrics['f1_change']:+.4f}) "
        f"against {dataset}."
    )
    return OptimizeResult(out_path, method, variant, metrics, dataset)
