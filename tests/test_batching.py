"""Tiled inference gives the same output whatever the batch size and thread count: batches
fill across tile rows and the raster's end, the reader and model run in their own threads,
tiles blend in raster order. A small convolutional U-Net (our registry, random weights, exported
by our code) so that neighbouring pixels matter."""
import numpy as np
import pytest
import rasterio

from glacierseg.core.runtime import load_model, usable_cores
from glacierseg.core.segment import segment_raster

from .helpers import CONV_BANDS as BANDS
from .helpers import write_raster


@pytest.fixture(scope="module", params=["hole", "nodata_rows"])
def holey_raster(tmp_path_factory, request):
    """5 tile rows × 6 tile columns of 64-px tiles with wholly nodata tiles: a block in the middle
    (skipped tiles between run ones), or whole rows of them (a batch would outgrow the strip)."""
    img = np.random.default_rng(7).uniform(500, 9000, (3, 230, 290)).astype(np.float32)
    if request.param == "hole":
        img[:, 80:170, 100:220] = np.nan
    else:
        img[:, 60:200, :] = np.nan
        img[:, 60:200, 270:] = 1000.0
    return request.param, write_raster(tmp_path_factory.mktemp("holey") / "img.tif", img, nodata=-9999.0,
                                       descriptions=list(BANDS))


def probabilities(image, model, tmp_path, name, **kw):
    r = segment_raster(image, model, str(tmp_path / f"{name}_p.tif"), str(tmp_path / f"{name}_c.tif"), **kw)
    with rasterio.open(r.probabilities) as ds:
        return r, ds.read()


@pytest.mark.parametrize("tta", ["none", "flips"])
def test_output_identical_whatever_batch_size_and_threads(holey_raster, conv_model, tmp_path, tta):
    kind, holey_raster = holey_raster
    base, want = probabilities(holey_raster, conv_model, tmp_path, "base", batch_size=1, threads=1, tta=tta)
    assert base.tiles_skipped > 0 and base.tiles_run > 8
    for batch, threads in [(3, 1), (8, 2), (7, usable_cores()), (1000, 2)]:
        r, got = probabilities(holey_raster, conv_model, tmp_path, f"b{batch}t{threads}", batch_size=batch,
                               threads=threads, tta=tta)
        assert np.array_equal(np.isnan(got), np.isnan(want))
        assert np.nanmax(np.abs(got - want)) <= 1e-6, (batch, threads)
        assert r.tiles_run == base.tiles_run
        if kind == "hole":
            assert r.model_calls == -(-r.tiles_run // batch)  # every call but the last is full
        else:  # batches are cut where rows of nodata tiles would take them beyond the strip
            assert -(-r.tiles_run // batch) <= r.model_calls <= -(-r.tiles_run // batch) + 2
        assert f"{threads} intra-op thread(s)" in r.session


def test_session_options_are_set_and_described(conv_model):
    loaded = load_model(conv_model, "cpu", threads=1, optimization="basic")
    assert loaded.options == {"threads": 1, "optimization": "basic", "io_binding": False}  # no IOBinding on CPU
    assert loaded.describe() == ("CPUExecutionProvider, 1 intra-op thread(s), graph optimization basic, "
                                 "float32 inputs")
    assert load_model(conv_model, "cpu").options["threads"] == usable_cores()


def test_reader_error_reaches_the_caller_and_no_output_is_left(conv_model, tmp_path, monkeypatch):
    from glacierseg.core import features
    from glacierseg.core.errors import InputError

    img = np.random.default_rng(1).uniform(500, 9000, (3, 200, 200)).astype(np.float32)
    path = write_raster(tmp_path / "img.tif", img, descriptions=list(BANDS))
    calls = []

    def failing(*args, **kw):
        calls.append(1)
        if len(calls) == 5:
            raise InputError("broken tile")
        return real(*args, **kw)

    real = features.model_inputs
    monkeypatch.setattr(features, "model_inputs", failing)
    with pytest.raises(InputError, match="broken tile"):
        probabilities(path, conv_model, tmp_path, "fail", batch_size=2)
    assert not list(tmp_path.glob("fail_*"))
