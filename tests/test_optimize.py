"""glacierseg:optimize_model: int8 / float16 variants of a real exported model, their card
figures, refusals with the reason, and the run through processing.run."""
import os

import numpy as np
import pytest
import rasterio
from qgis.core import QgsProcessingFeedback

from glacierseg.core.contract import read_contract
from glacierseg.core.errors import DeviceError, InputError, ModelContractError
from glacierseg.core.optimize import OptimizeOptions, measurement_windows, optimize_model, refusal
from glacierseg.core.runtime import available_providers, load_model
from glacierseg.core.segment import segment_raster

from .helpers import CONV_BANDS, Messages, write_raster

METRICS = {"iou", "f1", "iou_change", "f1_change", "speedup", "seconds", "original_seconds"}


@pytest.fixture(scope="module")
def scene_raster(tmp_path_factory):
    """The generated scene's bands the test U-Net reads, and its glacier truth."""
    from glacierseg.core.sample_data import S2_BANDS, make_scene

    folder = tmp_path_factory.mktemp("optscene")
    scene = make_scene(str(folder), size=256)
    with rasterio.open(scene.image) as ds:
        img = ds.read([S2_BANDS.index(b) + 1 for b in CONV_BANDS])
    return write_raster(folder / "three.tif", img, nodata=0, descriptions=list(CONV_BANDS)), scene.glacier_truth


@pytest.fixture(scope="module")
def int8_model(conv_model, scene_raster, tmp_path_factory):
    image, truth = scene_raster
    out = str(tmp_path_factory.mktemp("int8") / "unet-int8.onnx")
    return optimize_model(conv_model, out, "int8_static", image=image, reference=truth, calibration_tiles=8)


def classes(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def test_static_int8_variant_is_measured_and_carded(int8_model, conv_model, scene_raster, tmp_path):
    image, truth = scene_raster
    contract = read_contract(int8_model.path)
    assert contract.name == "test-unet-int8-static"
    score = contract.scores[-1]
    assert score["dataset"] == os.path.basename(truth) and METRICS <= set(score["metrics"])
    m = score["metrics"]
    assert m["speedup"] > 0 and m["seconds"] > 0 and m["original_seconds"] > 0
    assert m["iou_change"] == pytest.approx(m["iou"] - m["original_iou"])
    assert "calibrated on the top 25% of three.tif's rows, measured on the other 75%" in score["method"]
    loaded = load_model(int8_model.path, "cpu")
    assert any(n.op_type == "QuantizeLinear" for n in __import__("onnx").load(int8_model.path).graph.node)
    # segment takes the variant like any model; its classes agree with the original's on most pixels
    a = segment_raster(image, conv_model, str(tmp_path / "a_p.tif"), str(tmp_path / "a_c.tif"))
    b = segment_raster(image, loaded, str(tmp_path / "b_p.tif"), str(tmp_path / "b_c.tif"))
    assert (classes(a.classes) == classes(b.classes)).mean() > 0.95


@pytest.mark.skipif("CUDAExecutionProvider" in available_providers(), reason="a CUDA provider is present")
def test_half_precision_variant_falls_back_to_cpu(conv_model, scene_raster, tmp_path):
    """No GPU here: device CUDA is refused before anything is written; Auto measures the float16
    variant on the CPU and says so."""
    image, _ = scene_raster
    with pytest.raises(DeviceError, match="no CUDA support"):
        optimize_model(conv_model, str(tmp_path / "cuda.onnx"), "fp16", image=image, device="cuda")
    assert not os.listdir(tmp_path)
    messages = Messages()
    result = optimize_model(conv_model, str(tmp_path / "half.onnx"), "fp16", image=image, device="auto",
                            progress=messages)
    assert "no CUDA here: the float16 variant is measured on CPUExecutionProvider" in messages.text
    loaded = load_model(result.path, "auto")  # no GPU here: the CPU runs the float16 graph
    assert loaded.half and loaded.provider == "CPUExecutionProvider" and not loaded.options["io_binding"]
    assert "float16 inputs" in loaded.describe()
    x = np.random.default_rng(0).normal(size=(2, 3, 64, 64)).astype(np.float32)
    got, want = loaded.run(x), load_model(conv_model, "cpu").run(x)
    assert got.dtype == np.float32 and np.abs(got - want).max() < 0.05
    # without a reference the variant is scored against the original's classes
    assert result.dataset.startswith("classes of test-unet") and result.metrics["iou"] > 0.9


def test_refuses_models_it_cannot_quantize_with_the_reason(int8_model, conv_model, scene_raster, tmp_path):
    image, _ = scene_raster
    with pytest.raises(ModelContractError, match="already quantized .*QuantizeLinear.*quantize the original"):
        optimize_model(int8_model.path, str(tmp_path / "again.onnx"), "int8_static", image=image)
    assert not (tmp_path / "again.onnx").exists()
    half = optimize_model(conv_model, str(tmp_path / "half.onnx"), "fp16", image=image).path
    with pytest.raises(ModelContractError, match="already in half precision"):
        optimize_model(half, str(tmp_path / "h2.onnx"), "int8_dynamic", image=image)
    # a model without convolution or matrix layers: nothing for int8 to make faster
    import onnx
    from onnx import TensorProto, helper

    from glacierseg.core.contract import write_contract

    graph = helper.make_graph([helper.make_node("Sigmoid", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h", "w"])])
    plain = str(tmp_path / "plain.onnx")
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), plain)
    contract = read_contract(conv_model)
    write_contract(plain, contract)
    assert "no Conv, ConvTranspose, MatMul or Gemm layers (its layers: Sigmoid)" in refusal(plain, "int8_static")
    with pytest.raises(ModelContractError, match="nothing to make faster"):
        optimize_model(plain, str(tmp_path / "p8.onnx"), "int8_static", image=image)


def test_calibration_and_measurement_windows_are_disjoint(conv_model, scene_raster, tmp_path):
    """Without a calibration raster, static int8 calibrates on the top quarter of the raster's
    rows and is measured on the rest; a separate calibration raster is used as given, and the
    measurement raster itself is refused as calibration raster."""
    image, truth = scene_raster
    with rasterio.open(image) as ds:
        left, bottom, right, top = ds.bounds
        img, res = ds.read(), ds.res[1]
    windows = measurement_windows(OptimizeOptions(image=image), "int8_static")
    split = top - 64 * res  # a quarter of the 256 rows
    assert windows.calibration_bounds == pytest.approx((left, split, right, top))
    assert windows.measurement_bounds == pytest.approx((left, bottom, right, split))
    assert measurement_windows(OptimizeOptions(image=image), "fp16").measurement_bounds is None  # no calibration
    # the calibration reads only its window: a raster whose top quarter is nodata has nothing to calibrate on
    blank_top = img.copy()
    blank_top[:, :64] = 0
    blank = write_raster(tmp_path / "blank_top.tif", blank_top, nodata=0, descriptions=list(CONV_BANDS))
    with pytest.raises(InputError, match=r"calibration window \(top 25% of the rows\) of blank_top.tif has no tile"):
        optimize_model(conv_model, str(tmp_path / "v.onnx"), "int8_static", image=blank, calibration_tiles=4)
    assert not (tmp_path / "v.onnx").exists()
    # as a separate calibration raster it is read whole (its lower three quarters have data)
    result = optimize_model(conv_model, str(tmp_path / "c.onnx"), "int8_static", image=image, reference=truth,
                            calibration_image=blank, calibration_tiles=4)
    assert "(calibrated on blank_top.tif):" in result.contract.scores[-1]["method"]
    with pytest.raises(InputError, match="calibration raster is the raster the variant is measured on"):
        optimize_model(conv_model, str(tmp_path / "s.onnx"), "int8_static", image=image, calibration_image=image)


def test_bad_input_is_refused(conv_model, tmp_path):
    with pytest.raises(InputError, match="Unknown optimization"):
        optimize_model(conv_model, str(tmp_path / "x.onnx"), "int4", image=conv_model)
    with pytest.raises(InputError, match="Give a raster"):
        optimize_model(conv_model, str(tmp_path / "x.onnx"), "int8_static")


def test_optimize_model_through_processing(glacierseg_provider, conv_model, scene_raster, tmp_path):
    import processing

    image, truth = scene_raster
    with rasterio.open(image) as ds:  # a second raster to calibrate on: the scene mirrored
        calibration = write_raster(tmp_path / "mirrored.tif", ds.read()[:, ::-1], nodata=0,
                                   descriptions=list(CONV_BANDS))
    out = str(tmp_path / "variant.onnx")
    result = processing.run("glacierseg:optimize_model", {
        "MODEL": conv_model, "METHOD": 0, "INPUT": image, "CALIBRATION": calibration, "REFERENCE": truth,
        "CALIBRATION_TILES": 4,
        "DEVICE": 1, "OUTPUT": out}, feedback=QgsProcessingFeedback())
    assert result["OUTPUT"] == out and os.path.isfile(out)
    metrics = read_contract(out).scores[-1]["metrics"]
    assert result["SPEEDUP"] == pytest.approx(metrics["speedup"])
    assert result["IOU_CHANGE"] == pytest.approx(metrics["iou_change"])
    assert "calibrated on mirrored.tif" in read_contract(out).scores[-1]["method"]
    with pytest.raises(Exception, match="already quantized"):
        processing.run("glacierseg:optimize_model", {"MODEL": out, "METHOD": 1, "INPUT": image,
                                                     "OUTPUT": str(tmp_path / "again.onnx")},
                       feedback=QgsProcessingFeedback())


def test_spatial_means_become_global_average_pools(tmp_path):
    """A squeeze-and-excitation step (ReduceMean over H, W) is rewritten as the GlobalAveragePool
    it equals (so int8 quantizes it); a mean over channels stays; outputs unchanged."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from glacierseg.core.optimize import rewrite_for_int8

    rng = np.random.default_rng(1)
    weight = numpy_helper.from_array(rng.normal(size=(4, 3, 3, 3)).astype(np.float32), "w")
    axes_hw = numpy_helper.from_array(np.array([-2, -1], np.int64), "axes_hw")
    axes_c = numpy_helper.from_array(np.array([1], np.int64), "axes_c")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("ReduceMean", ["c", "axes_hw"], ["squeeze"], keepdims=1),
             helper.make_node("Sigmoid", ["squeeze"], ["gate"]),
             helper.make_node("Mul", ["c", "gate"], ["excited"]),
             helper.make_node("ReduceMean", ["excited", "axes_c"], ["y"], keepdims=1)]
    graph = helper.make_graph(nodes, "se", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 1, 16, 16])],
                              [weight, axes_hw, axes_c])
    path = str(tmp_path / "se.onnx")
    onnx.save(onnx.shape_inference.infer_shapes(
        helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8)), path)
    x = rng.normal(size=(2, 3, 16, 16)).astype(np.float32)
    before = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert rewrite_for_int8(path, "int8_dynamic") == {"spatial means as pooling": 1}
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops.count("GlobalAveragePool") == 1 and ops.count("ReduceMean") == 1
    after = ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-6)
    assert rewrite_for_int8(path, "int8_dynamic") == {"spatial means as pooling": 0}


def _upsampling_net(path, head_channels=1):
    """Conv (3 -> 8) -> Relu -> nearest 2x Resize -> Conv (8 -> head_channels): a U-Net decoder's
    upsampling and output convolution in miniature (random weights, seeded)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.normal(size=(8, 3, 3, 3)).astype(np.float32), "w1"),
             numpy_helper.from_array(rng.normal(size=(head_channels, 8, 3, 3)).astype(np.float32), "w2"),
             numpy_helper.from_array(rng.normal(size=head_channels).astype(np.float32), "b2"),
             numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")]
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Resize", ["r1", "", "scales"], ["up"], mode="nearest"),
             helper.make_node("Conv", ["up", "w2", "b2"], ["y"], pads=[1, 1, 1, 1])]
    graph = helper.make_graph(
        nodes, "decoder", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 32, 32])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", head_channels, 64, 64])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), path)
    return path


def _run(path, x):
    import onnxruntime as ort

    return ort.InferenceSession(path, providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]


def test_graph_rewrites_before_int8_keep_the_float_outputs(tmp_path):
    """The nearest-neighbour Resize gets a shape-keeping Reshape before it, the 1-channel output
    convolution is widened and sliced back: float outputs unchanged, and a second pass changes nothing."""
    import onnx

    from glacierseg.core.optimize import rewrite_for_int8

    path = _upsampling_net(str(tmp_path / "decoder.onnx"))
    x = np.random.default_rng(3).normal(size=(2, 3, 32, 32)).astype(np.float32)
    before = _run(path, x)
    assert rewrite_for_int8(path, "int8_static") == {  # the 8-channel Conv is left alone
        "spatial means as pooling": 0, "upsampling kept channels-first": 1, "narrow convolutions widened": 1}
    ops = [n.op_type for n in onnx.load(path).graph.node]
    assert ops == ["Conv", "Relu", "Reshape", "Resize", "Conv", "Slice"]
    np.testing.assert_allclose(_run(path, x), before, rtol=1e-5, atol=1e-5)
    assert not any(rewrite_for_int8(path, "int8_static").values())
    two = _upsampling_net(str(tmp_path / "two.onnx"), head_channels=2)
    before = _run(two, x)
    assert rewrite_for_int8(two, "int8_static")["narrow convolutions widened"] == 1
    initializers = {i.name: list(i.dims) for i in onnx.load(two).graph.initializer}
    assert initializers["w2_widened_0"] == [16, 8, 3, 3] and initializers["b2_widened_0"] == [16]
    assert "w2" not in initializers and "b2" not in initializers  # the narrow filters are dropped
    np.testing.assert_allclose(_run(two, x), before, rtol=1e-5, atol=1e-5)


def test_int8_upsampling_runs_channels_first(tmp_path):
    """In onnxruntime's optimized int8 graph the Resize is fed by the shape-keeping Reshape with its
    own (channels-first) scales; without the rewrite the layout transform feeds it a channels-last
    QLinearConv and permutes its scales to channels-last."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper
    from onnxruntime.quantization import CalibrationDataReader

    from glacierseg.core.optimize import _quantize

    class Tiles(CalibrationDataReader):
        def __init__(self):
            self.tiles = iter([{"x": t[None]} for t in np.random.default_rng(4).normal(
                size=(8, 3, 32, 32)).astype(np.float32)])

        def get_next(self):
            return next(self.tiles, None)

    def resize_feeds(quantized):
        options = ort.SessionOptions()
        options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
        ort.InferenceSession(quantized, options, providers=["CPUExecutionProvider"])
        graph = onnx.load(str(tmp_path / "optimized.onnx")).graph
        producers = {out: n.op_type for n in graph.node for out in n.output}
        constants = {i.name: numpy_helper.to_array(i).tolist() for i in graph.initializer}
        return [(producers.get(n.input[0]), constants.get(n.input[2])) for n in graph.node if n.op_type == "Resize"]

    source = _upsampling_net(str(tmp_path / "decoder.onnx"))
    _quantize(source, str(tmp_path / "int8.onnx"), "int8_static", Tiles())
    assert resize_feeds(str(tmp_path / "int8.onnx")) == [("Reshape", [1, 1, 2, 2])]
    x = np.random.default_rng(5).normal(size=(2, 3, 32, 32)).astype(np.float32)
    assert np.corrcoef(_run(str(tmp_path / "int8.onnx"), x).ravel(), _run(source, x).ravel())[0, 1] > 0.99
    # the layout transform's effect without the rewrite (what the Reshape prevents)
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    quantize_static(source, str(tmp_path / "plain.onnx"), Tiles(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    assert resize_feeds(str(tmp_path / "plain.onnx")) == [("QLinearConv", [1, 2, 2, 1])]
