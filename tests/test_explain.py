"""glacierseg:explain core: occlusion importance of ONNX models whose dependence is known by
construction, tiled = untiled, nodata, extent; checkpoint saliency / Grad-CAM in a child process."""
import csv
import math

import numpy as np
import pytest
import rasterio
from torch import nn

from glacierseg.core.contract import ClassInfo, InputSpec, ModelContract
from glacierseg.core.errors import CancelledError, InputError
from glacierseg.core.explain import explain_raster, parse_baselines
from glacierseg.models.export import export_onnx

from .helpers import CancelAfter, write_raster

BANDS = ("S2:B03", "S2:B08", "S2:B11")


class OneBandModel(nn.Module):
    """Logit = 3×3 mean of input channel ``band`` − 0.2 (reads no other channel)."""

    def __init__(self, band: int):
        super().__init__()
        self.band = band
        self.box = nn.Conv2d(1, 1, 3, padding=1, bias=False)
        nn.init.constant_(self.box.weight, 1.0 / 9.0)

    def forward(self, x):
        return 4.0 * (self.box(x[:, self.band : self.band + 1]) - 0.2)


@pytest.fixture(scope="module")
def one_band_model(tmp_path_factory):
    contract = ModelContract(
        task="glacier", classes=(ClassInfo("glacier", 1, "#66ccff"),),
        bands=tuple(InputSpec(b, mean=2000.0, std=1000.0) for b in BANDS), resolution_m=20.0, tile_size=64,
        activation="sigmoid", thresholds={"glacier": 0.5}, receptive_field_px=3, name="reads B08 only")
    return export_onnx(OneBandModel(1).eval(), contract, str(tmp_path_factory.mktemp("m") / "one_band.onnx"))


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(), ds.descriptions, ds.transform, ds.crs


def table(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return {(r["class"], r["channel"]): r for r in csv.DictReader(fh)}


def run(image, model, tmp_path, name="x", **kw):
    return explain_raster(image, model, str(tmp_path / name), str(tmp_path / f"{name}.csv"),
                          str(tmp_path / f"{name}.html"), **kw)


def test_model_reading_one_band_puts_all_importance_on_it(sample_scene, one_band_model, tmp_path):
    result = run(sample_scene.image, one_band_model, tmp_path)
    data, names, _, _ = read(result.rasters["glacier"])
    assert names == BANDS
    assert np.nanmax(np.abs(data[0])) <= 1e-6 and np.nanmax(np.abs(data[2])) <= 1e-6
    assert np.nanmax(np.abs(data[1])) > 0.1
    imp = result.importance["glacier"]
    assert imp["S2:B03"] <= 1e-6 and imp["S2:B11"] <= 1e-6 and imp["S2:B08"] > 0.05
    rows = table(result.table)
    assert float(rows[("glacier", "S2:B08")]["mean_abs_value"]) == pytest.approx(imp["S2:B08"], rel=1e-6)
    assert int(rows[("glacier", "S2:B08")]["class_pixels"]) == result.class_pixels["glacier"] > 0
    # occluding B08 with the contract's mean (scaled 0) gives p = sigmoid(−0.8): Δp = sigmoid(−0.8) − p,
    # p computed independently (3×3 mean of the scaled band, mirrored at the raster's edges)
    from scipy import ndimage

    with rasterio.open(sample_scene.image) as src:
        b08 = src.read(4).astype(np.float64)
        valid = src.read_masks(1) > 0
    p = 1 / (1 + np.exp(-4.0 * (ndimage.uniform_filter((b08 - 2000.0) / 1000.0, 3, mode="mirror") - 0.2)))
    inner = ndimage.binary_erosion(valid, iterations=2)
    want = 1 / (1 + math.exp(0.8)) - p
    np.testing.assert_allclose(data[1][inner], want[inner], atol=1e-5)
    html = open(result.report, encoding="utf-8").read()
    assert "data:image/png;base64," in html and "S2:B08" in html


def test_sample_ndsi_model_depends_only_on_its_index_bands(sample_scene, sample_model, tmp_path):
    result = run(sample_scene.image, sample_model, tmp_path)
    glacier, names, _, _ = read(result.rasters["glacier"])
    lake, _, _, _ = read(result.rasters["glacial_lake"])
    assert names == BANDS
    # glacier = NDSI(B03, B11): B08 does nothing; lake = NDWI(B03, B08): B11 does nothing
    assert np.nanmax(np.abs(glacier[1])) <= 1e-6
    assert np.nanmax(np.abs(lake[2])) <= 1e-6
    imp = result.importance
    assert imp["glacier"]["S2:B08"] <= 1e-6 and imp["glacier"]["S2:B03"] > 0.01 and imp["glacier"]["S2:B11"] > 0.01
    assert imp["glacial_lake"]["S2:B11"] <= 1e-6 and imp["glacial_lake"]["S2:B03"] > 0.01
    assert imp["glacial_lake"]["S2:B08"] > 0.01
    # scale-only inputs are occluded with their mean over the raster (neutral values reported)
    assert len(result.extra["neutral"]) == 3 and all(v > 0 for v in result.extra["neutral"])


def test_stated_baseline_is_used(sample_scene, sample_model, tmp_path):
    """Occluding B11 with B03's own value makes NDSI 0: Δp = sigmoid(12·(0−0.4)) − p on glacier."""
    result = run(sample_scene.image, sample_model, tmp_path, baselines={"S2:B11": 0.0, "S2:B03": 0.0})
    assert result.extra["neutral"][2] == 0.0 and result.extra["neutral"][0] == 0.0
    with pytest.raises(InputError, match="unknown channel"):
        run(sample_scene.image, sample_model, tmp_path, "bad", baselines={"B99": 1.0})
    assert parse_baselines("S2:B11=1500; NDSI(S2:B03,S2:B11)=0") == {"S2:B11": 1500.0, "NDSI(S2:B03,S2:B11)": 0.0}
    with pytest.raises(InputError, match="channel=value"):
        parse_baselines("S2:B11")


def test_tiled_equals_untiled(sample_scene, sample_model, tmp_path):
    whole = run(sample_scene.image, sample_model, tmp_path, "whole", tile_size=560, overlap=40)
    tiled = run(sample_scene.image, sample_model, tmp_path, "tiled", tile_size=64)
    assert whole.tiles_run == 1 and tiled.tiles_run > 1
    for cls in ("glacier", "glacial_lake"):
        a, b = read(whole.rasters[cls])[0], read(tiled.rasters[cls])[0]
        assert np.array_equal(np.isnan(a), np.isnan(b))
        assert np.nanmax(np.abs(a - b)) <= 1e-4
        for ch in BANDS:
            assert tiled.importance[cls][ch] == pytest.approx(whole.importance[cls][ch], abs=1e-5)


def test_nodata_propagates_and_extent(tmp_path, one_band_model):
    rng = np.random.default_rng(1)
    img = (rng.uniform(500, 4000, (3, 90, 110))).astype(np.float32)
    img[2, 10:20, 30:50] = -9999  # nodata in an unused band still makes the pixel nodata
    img[:, 60:, 80:] = -9999
    path = write_raster(tmp_path / "img.tif", img, nodata=-9999, descriptions=BANDS)
    result = run(path, one_band_model, tmp_path, tile_size=64)
    data, _, transform, crs = read(result.rasters["glacier"])
    assert crs.to_epsg() == 32632 and transform.c == 630000.0 and data.shape == (3, 90, 110)
    nodata = (img == -9999).any(axis=0)
    assert np.isnan(data[:, nodata]).all() and not np.isnan(data[:, ~nodata]).any()
    # extent: the outputs cover the extent only, on the input's grid
    part = run(path, one_band_model, tmp_path, "part", bounds=(630400.0, 5189000.0, 631000.0, 5189600.0))
    d, _, t, _ = read(part.rasters["glacier"])
    assert d.shape == (3, 30, 30) and (t.c, t.f) == (630400.0, 5189600.0)


def test_errors_and_cancel_leave_no_output(sample_scene, sample_model, tmp_path):
    with pytest.raises(CancelledError):
        run(sample_scene.image, sample_model, tmp_path, "c", progress=CancelAfter(5))
    assert not (tmp_path / "c.csv").exists() and not (tmp_path / "c.html").exists()
    assert not list((tmp_path / "c").glob("*.tif"))
    with pytest.raises(InputError, match="Raster not found"):
        run(str(tmp_path / "missing.tif"), sample_model, tmp_path)


# ------------------------------------------------------------------ checkpoint path
@pytest.mark.slow
def test_checkpoint_saliency_and_gradcam_in_child_process(trained, tmp_path):
    from glacierseg.core.explain import explain_checkpoint

    scene, model, checkpoint = trained
    messages = []

    class Log:
        def set_progress(self, p):
            messages.append(p)

        def is_canceled(self):
            return False

        def push_info(self, m):
            messages.append(m)

    result = explain_checkpoint(scene.image, model, checkpoint, str(tmp_path / "sal"), str(tmp_path / "sal.csv"),
                                str(tmp_path / "sal.html"), device="cpu", progress=Log())
    assert result.method == "saliency"
    assert result.extra["target_class"] == "glacier" and result.extra["layer"]
    assert any(isinstance(m, str) and "Grad-CAM" in m for m in messages)
    assert any(isinstance(m, float) and m >= 99 for m in messages)
    sal, names, transform, crs = read(result.rasters["glacier"])
    cam, cam_names, cam_transform, cam_crs = read(result.gradcam)
    with rasterio.open(scene.image) as src:
        assert (src.width, src.height) == (128, 128)
        assert transform == src.transform == cam_transform and crs == src.crs == cam_crs
        valid = src.read_masks(1) > 0
    assert names == BANDS and sal.shape == (3, 128, 128) and cam.shape == (1, 128, 128)
    assert cam_names == ("gradcam_glacier",)
    assert (~valid).any() and np.isnan(sal[:, ~valid]).all() and np.isnan(cam[0][~valid]).all()
    assert np.isfinite(sal[:, valid]).all() and (sal[:, valid] >= 0).all()
    with rasterio.open(scene.glacier_truth) as t:
        truth = t.read(1)
    glacier, ground = np.isin(truth, (1, 2)), truth == 0
    # Grad-CAM lights up on the glacier: non-zero on most of it, far stronger than off it
    assert np.mean(cam[0][glacier] > 0) > 0.5
    assert np.nanmean(cam[0][glacier]) > 10 * np.nanmean(cam[0][ground])
    assert result.class_pixels["glacier"] > 0 and all(v > 0 for v in result.importance["glacier"].values())
    assert "data:image/png;base64," in open(result.report, encoding="utf-8").read()


@pytest.mark.slow
def test_checkpoint_errors_come_back_from_the_child(trained, tmp_path):
    from glacierseg.core.errors import GlacierSegError
    from glacierseg.core.explain import explain_checkpoint

    scene, model, checkpoint = trained
    with pytest.raises(GlacierSegError, match="Layer 'nope' is not in the network"):
        explain_checkpoint(scene.image, model, checkpoint, str(tmp_path / "e"), str(tmp_path / "e.csv"),
                           str(tmp_path / "e.html"), layer="nope", device="cpu")
    assert not (tmp_path / "e.csv").exists()


@pytest.mark.slow
def test_checkpoint_cancel_terminates_the_child(trained, tmp_path):
    from glacierseg.core.explain import explain_checkpoint

    scene, model, checkpoint = trained

    class CancelOnceRunning:  # Cancel as soon as the child reports that it works on the raster
        running = False

        def set_progress(self, percent):
            pass

        def is_canceled(self):
            return self.running

        def push_info(self, message):
            self.running = True

    with pytest.raises(CancelledError):
        explain_checkpoint(scene.image, model, checkpoint, str(tmp_path / "c"), str(tmp_path / "c.csv"),
                           str(tmp_path / "c.html"), device="cpu", progress=CancelOnceRunning())
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]  # nothing written, no partial file left


def test_checkpoint_options_reach_the_child_as_given(tmp_path):
    """CheckpointOptions is the one definition of the checkpoint methods' options: what the QGIS
    side puts on the child's command line parses back (models.cli) to the same values."""
    from glacierseg.core.explain import CheckpointOptions
    from glacierseg.models.cli import parser

    options = CheckpointOptions(target_class="lake", layer="decoder.conv", band_map=[3, 8, 11],
                                bounds=(630000.0, 5189000.5, 631000.0, 5190000.0), tile_size=128, overlap=0,
                                device="cpu", batch_size=3)
    base = ["explain", "--image", "i.tif", "--model", "m.onnx", "--checkpoint", "c.pt", "--out-dir", "o",
            "--table", "t.csv", "--report", "r.html"]
    args = parser().parse_args(base + options.cli_args(str(tmp_path / "mask.json")))
    assert (args.target_class, args.layer, args.tile_size, args.overlap, args.device, args.batch_size) == (
        "lake", "decoder.conv", 128, 0, "cpu", 3)
    assert [int(b) for b in args.band_map.split(",")] == [3, 8, 11]
    assert tuple(float(v) for v in args.bounds.split(",")) == options.bounds
    assert args.mask == str(tmp_path / "mask.json")
    defaults = parser().parse_args(base + CheckpointOptions().cli_args(None))
    assert (defaults.target_class, defaults.layer, defaults.band_map, defaults.bounds, defaults.mask,
            defaults.overlap) == (None, None, None, None, None, None)
