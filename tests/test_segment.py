"""Tiled inference core (QGIS-free): exactness, nodata, grids, devices, errors, cancel."""
import json
import os

import numpy as np
import pytest
import rasterio

from glacierseg.core.errors import CancelledError, DeviceError, InputError, ModelContractError
from glacierseg.core.runtime import available_providers, load_model
from glacierseg.core.segment import resolve_band_map, segment_raster
from glacierseg.models.sample import sample_contract

from .helpers import CancelAfter, write_raster
from .oracle import sample_expectation


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.transform, ds.nodata


def run(image, model, tmp_path, name="out", **kw):
    return segment_raster(image, model, str(tmp_path / f"{name}_p.tif"), str(tmp_path / f"{name}_c.tif"), **kw)


def test_matches_independent_computation(sample_scene, sample_model, tmp_path):
    result = run(sample_scene.image, sample_model, tmp_path)
    probs, _, _ = read(result.probabilities)
    classes, _, nodata = read(result.classes)
    want_p, want_c = sample_expectation(sample_scene.image)
    assert nodata == 255
    np.testing.assert_array_equal(classes[0], want_c)
    np.testing.assert_allclose(probs, want_p, atol=1e-5, equal_nan=True)
    assert result.band_map == {"S2:B03": 2, "S2:B08": 4, "S2:B11": 5}  # from band descriptions
    assert result.provider == "CPUExecutionProvider"
    assert {1, 2} <= set(np.unique(classes))  # both glacier and lake found


@pytest.mark.parametrize("tile,overlap", [(64, None), (48, 7), (100, 30), (37, 10)])
def test_tiled_equals_whole_image(sample_scene, sample_model, tmp_path, tile, overlap):
    whole = run(sample_scene.image, sample_model, tmp_path, "whole", tile_size=560, overlap=40)
    assert whole.tiles_run == 1
    tiled = run(sample_scene.image, sample_model, tmp_path, "tiled", tile_size=tile, overlap=overlap)
    assert tiled.tiles_run > 1
    a, _, _ = read(whole.probabilities)
    b, _, _ = read(tiled.probabilities)
    assert np.array_equal(np.isnan(a), np.isnan(b))
    assert np.nanmax(np.abs(a - b)) <= 1e-3
    # no seam: the largest jump between neighbouring pixels is no larger than in the whole-image run
    assert np.nanmax(np.abs(np.diff(b, axis=2))) <= np.nanmax(np.abs(np.diff(a, axis=2))) + 1e-3


def test_test_time_augmentation_inverts_transforms(sample_scene, sample_model, tmp_path):
    """The sample network is equivariant to rotations and flips, so TTA must change nothing."""
    plain, _, _ = read(run(sample_scene.image, sample_model, tmp_path, "plain").probabilities)
    for mode in ("flips", "d4"):
        tta, _, _ = read(run(sample_scene.image, sample_model, tmp_path, mode, tta=mode).probabilities)
        assert np.nanmax(np.abs(tta - plain)) < 1e-5


def test_nodata_and_nan_propagate_and_empty_tiles_are_skipped(sample_model, tmp_path):
    rng = np.random.default_rng(3)
    img = rng.uniform(500, 9000, (3, 150, 170)).astype(np.float32)
    img[:, :, :90] = np.nan  # a wholly empty left part: its tiles must not run
    img[1, 120, 150] = -9999.0  # nodata in one band only
    img[2, 10, 100] = np.nan
    path = write_raster(tmp_path / "nan.tif", img, nodata=-9999.0, descriptions=["S2:B03", "S2:B08", "S2:B11"])
    result = run(path, sample_model, tmp_path, tile_size=32)
    probs, _, _ = read(result.probabilities)
    classes, _, _ = read(result.classes)
    invalid = np.isnan(img).any(0) | (img == -9999.0).any(0)
    assert np.isnan(probs[:, invalid]).all() and not np.isnan(probs[:, ~invalid]).any()
    assert (classes[0][invalid] == 255).all() and (classes[0][~invalid] != 255).all()
    assert result.tiles_skipped >= 4
    want_p, _ = sample_expectation(path, {"S2:B03": 1, "S2:B08": 2, "S2:B11": 3})
    np.testing.assert_allclose(probs, want_p, atol=1e-5, equal_nan=True)


@pytest.mark.parametrize("shape", [(23, 41), (130, 67), (1, 5)])
def test_small_and_odd_sized_rasters(sample_model, tmp_path, shape):
    rng = np.random.default_rng(0)
    img = rng.integers(100, 9000, (3,) + shape).astype(np.uint16)
    path = write_raster(tmp_path / "small.tif", img, nodata=0, descriptions=["B03", "B08", "B11"])
    result = run(path, sample_model, tmp_path, tile_size=64)
    probs, _, _ = read(result.probabilities)
    assert probs.shape == (2,) + shape
    want_p, _ = sample_expectation(path, {"S2:B03": 1, "S2:B08": 2, "S2:B11": 3})
    np.testing.assert_allclose(probs, want_p, atol=1e-5)


def test_resampled_to_model_resolution(sample_scene, sample_model, tmp_path):
    """A 10 m raster and a 20 m model: outputs on a 20 m grid over the same area."""
    with rasterio.open(sample_scene.image) as src:
        img, descriptions = src.read(), list(src.descriptions)
    fine = np.repeat(np.repeat(img, 2, axis=1), 2, axis=2)  # each 20 m pixel as 2×2 10 m pixels
    path = write_raster(tmp_path / "fine.tif", fine, pixel_size=10.0, nodata=0, descriptions=descriptions)
    result = run(path, sample_model, tmp_path, "fine")
    assert result.resampled
    classes, transform, _ = read(result.classes)
    assert classes.shape[1:] == img.shape[1:] and transform.a == 20.0
    _, want = sample_expectation(sample_scene.image)
    assert (classes[0] == want).mean() > 0.995


def test_extent_and_mask_limit_the_output(sample_scene, sample_model, tmp_path):
    x0, y0 = 630000.0 + 100 * 20, 5190000.0 - 300 * 20
    result = run(sample_scene.image, sample_model, tmp_path, "ext", bounds=(x0, y0, x0 + 200 * 20, y0 + 100 * 20))
    classes, transform, _ = read(result.classes)
    assert classes.shape == (1, 100, 200) and (transform.c, transform.f) == (x0, y0 + 100 * 20)
    _, want = sample_expectation(sample_scene.image)
    np.testing.assert_array_equal(classes[0], want[200:300, 100:300])
    square = {"type": "Polygon", "coordinates": [[(x0, y0), (x0 + 800, y0), (x0 + 800, y0 + 800), (x0, y0 + 800), (x0, y0)]]}
    masked = run(sample_scene.image, sample_model, tmp_path, "mask", mask_shapes=[square])
    classes, _, _ = read(masked.classes)
    assert classes.shape == (1, 40, 40) and (classes != 255).all()


def test_band_mapping_rules():
    contract = sample_contract()
    assert resolve_band_map(contract, ["S2:B02", "b3", "B04", "B8", "B11"]) == {"S2:B03": 2, "S2:B08": 4, "S2:B11": 5}
    assert resolve_band_map(contract, [None, None, None]) == {"S2:B03": 1, "S2:B08": 2, "S2:B11": 3}
    assert resolve_band_map(contract, [None] * 6, [2, 4, 5]) == {"S2:B03": 2, "S2:B08": 4, "S2:B11": 5}
    with pytest.raises(InputError, match="reads 3 band.*raster has 2"):
        resolve_band_map(contract, [None, None])
    with pytest.raises(InputError, match="outside the raster's bands 1–6"):
        resolve_band_map(contract, [None] * 6, [2, 4, 7])
    with pytest.raises(InputError, match="lists 2 band"):
        resolve_band_map(contract, [None] * 6, [2, 4])


def test_geographic_raster_is_refused_with_reprojection_hint(sample_model, tmp_path):
    img = np.full((3, 20, 20), 1000, np.uint16)
    path = write_raster(tmp_path / "geo.tif", img, crs="EPSG:4326", pixel_size=0.0002, origin=(10.8, 46.8))
    with pytest.raises(InputError, match=r"geographic CRS.*EPSG:32632"):
        run(path, sample_model, tmp_path)


@pytest.mark.skipif("CUDAExecutionProvider" in available_providers(), reason="a CUDA provider is present")
def test_cuda_unavailable_is_an_error_and_auto_falls_back(sample_model):
    with pytest.raises(DeviceError, match="onnxruntime-gpu"):
        load_model(sample_model, "cuda")
    assert load_model(sample_model, "auto").provider == "CPUExecutionProvider"


def test_model_file_errors(tmp_path, sample_model):
    text = tmp_path / "notes.onnx"
    text.write_text("not a model")
    with pytest.raises(ModelContractError, match="not a readable ONNX model"):
        load_model(str(text))
    with pytest.raises(InputError, match="not found"):
        load_model(str(tmp_path / "missing.onnx"))
    import onnx

    bare = onnx.load(sample_model)
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelContractError, match="no 'glacierseg_version'"):
        load_model(str(tmp_path / "bare.onnx"))
    # a sidecar JSON makes it a GlacierSeg model; a missing key in it is named
    contract = json.loads(json.dumps({k: json.loads(v) for k, v in sample_contract().to_metadata().items()}))
    (tmp_path / "bare.json").write_text(json.dumps(contract))
    assert load_model(str(tmp_path / "bare.onnx")).contract == sample_contract()
    del contract["tile_size"]
    (tmp_path / "bare.json").write_text(json.dumps(contract))
    with pytest.raises(ModelContractError, match="'tile_size'"):
        load_model(str(tmp_path / "bare.onnx"))


def test_cancel_leaves_no_output(sample_scene, sample_model, tmp_path):
    out = tmp_path / "cancel"
    out.mkdir()
    with pytest.raises(CancelledError):
        segment_raster(sample_scene.image, sample_model, str(out / "p.tif"), str(out / "c.tif"),
                       tile_size=64, progress=CancelAfter(10))
    assert os.listdir(out) == []


def test_failed_run_keeps_previous_output_untouched(sample_scene, sample_model, tmp_path):
    prob, cls = tmp_path / "p.tif", tmp_path / "c.tif"
    prob.write_bytes(b"previous")
    with pytest.raises(InputError):
        segment_raster(sample_scene.image, sample_model, str(prob), str(cls), band_map=[1, 2, 99])
    assert prob.read_bytes() == b"previous" and not cls.exists()


def test_input_is_not_modified(sample_scene, sample_model, tmp_path):
    before = open(sample_scene.image, "rb").read()
    run(sample_scene.image, sample_model, tmp_path)
    assert open(sample_scene.image, "rb").read() == before


def test_options_value_equals_keywords(sample_scene, sample_model, tmp_path):
    """``SegmentOptions`` is segment_raster's keywords as one value: same outputs, keywords
    override it, a bad value is refused by the options, a misspelt keyword is a TypeError."""
    from glacierseg.core.segment import SegmentOptions

    options = SegmentOptions(tta="flips", batch_size=3, tile_size=48, overlap=12)
    a = segment_raster(sample_scene.image, sample_model, str(tmp_path / "a_p.tif"), str(tmp_path / "a_c.tif"), options)
    b = run(sample_scene.image, sample_model, tmp_path, "b", tta="flips", batch_size=3, tile_size=48, overlap=12)
    assert (a.tiles_run, a.model_calls) == (b.tiles_run, b.model_calls)
    for x, y in ((a.probabilities, b.probabilities), (a.classes, b.classes)):
        assert np.array_equal(read(x)[0], read(y)[0], equal_nan=True)
    c = segment_raster(sample_scene.image, sample_model, str(tmp_path / "c_p.tif"), str(tmp_path / "c_c.tif"), options,
                       batch_size=1)
    got, want = read(c.probabilities)[0], read(a.probabilities)[0]
    assert c.model_calls == c.tiles_run and np.array_equal(np.isnan(got), np.isnan(want))
    assert np.nanmax(np.abs(got - want)) <= 1e-6
    with pytest.raises(InputError, match="test-time augmentation"):
        SegmentOptions(tta="rotate").validate()
    with pytest.raises(TypeError):
        run(sample_scene.image, sample_model, tmp_path, "d", tiles=64)
