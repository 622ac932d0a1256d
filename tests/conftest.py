"""Test set-up: real QGIS (pytest-qgis), the plugin importable as ``glacierseg``, shared fixtures."""
from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from .helpers import CONV_BANDS, PKG_DIR, QGIS_PROCESS, ROOT, SHARED_DATA, QgisProcess

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")


def _link_package() -> None:
    PKG_DIR.mkdir(parents=True, exist_ok=True)
    link = PKG_DIR / "glacierseg"
    if not link.exists():
        try:
            link.symlink_to(ROOT, target_is_directory=True)
        except FileExistsError:
            pass
    if str(PKG_DIR) not in sys.path:
        sys.path.insert(0, str(PKG_DIR))


_link_package()


@pytest.fixture(scope="session")
def glacierseg_provider(qgis_processing):
    """The GlacierSeg provider, registered in the session's processing registry."""
    from qgis.core import QgsApplication

    from glacierseg.processing_provider.provider import GlacierSegProvider

    registry = QgsApplication.processingRegistry()
    provider = registry.providerById("glacierseg")
    if provider is None:
        provider = GlacierSegProvider()
        registry.addProvider(provider)
    return provider


@pytest.fixture(scope="session")
def sample_scene(tmp_path_factory):
    """The generated mountain scene (image, DEM, truth masks) — written once per session."""
    from glacierseg.core.sample_data import make_scene

    return make_scene(str(tmp_path_factory.mktemp("scene")))


@pytest.fixture(scope="session")
def shared_data():
    """``../shared/data`` beside the project root; skips where it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared reference data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def qgis_process(tmp_path_factory):
    """A ``QgisProcess`` runner (subprocess, separate QGIS) with GlacierSeg enabled."""
    if not Path(QGIS_PROCESS).exists():
        pytest.skip(f"{QGIS_PROCESS} not installed")
    return QgisProcess(tmp_path_factory.mktemp("qgis_profile"))


@pytest.fixture(scope="session")
def sample_model(tmp_path_factory):
    """The fixed NDSI/NDWI sample network (receptive field 7 px), exported to ONNX by our code."""
    from glacierseg.models.sample import export_sample_model

    return export_sample_model(str(tmp_path_factory.mktemp("models") / "sample.onnx"), tile_size=64)


@pytest.fixture(scope="session")
def conv_model(tmp_path_factory):
    """A small convolutional U-Net of our registry (random weights, seeded; 64-px tiles, bands
    CONV_BANDS, classes glacier and lake), exported to ONNX by our code."""
    import torch

    from glacierseg.core.contract import ClassInfo, InputSpec, ModelContract
    from glacierseg.models.export import export_onnx
    from glacierseg.models.registry import build_model

    torch.manual_seed(0)
    net = build_model("unet", len(CONV_BANDS), 2, widths=(4, 8, 8, 16, 16)).eval()
    contract = ModelContract(
        task="glacier", classes=(ClassInfo("glacier", 1, "#66ccff"), ClassInfo("lake", 2, "#0000ff")),
        activation="softmax", bands=tuple(InputSpec(b, mean=3000.0, std=2000.0) for b in CONV_BANDS),
        resolution_m=20.0, tile_size=64, receptive_field_px=24, thresholds={"glacier": 0.5, "lake": 0.5},
        name="test-unet")
    return export_onnx(net, contract, str(tmp_path_factory.mktemp("conv") / "unet.onnx"))


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny U-Net trained for seconds (~6 s on one CPU thread; validation IoU ~0.8) on the sample
    scene's glacier mask (bands CONV_BANDS), with its checkpoint; module scope: each module trains its own."""
    import torch

    from glacierseg.core.sample_data import make_scene
    from glacierseg.models.datasets import parse_classes
    from glacierseg.models.train import TrainConfig, train_rasters

    out = tmp_path_factory.mktemp("trained")
    scene = make_scene(str(out / "scene"), size=128, seed=3)
    config = TrainConfig(classes=parse_classes("glacier=1,2"), inputs=list(CONV_BANDS), network="unet",
                         network_kwargs={"widths": [8, 16]}, epochs=4, batch_size=4, tile_size=64,
                         tiles_per_epoch=16, learning_rate=0.01, device="cpu", seed=0)
    torch.set_num_threads(1)
    result = train_rasters([scene.image], config, str(out / "tiny.onnx"), labels_raster=scene.glacier_truth,
                           cell_px=64, val_fraction=0.25, checkpoint=str(out / "tiny.pt"))
    return scene, result.model, result.checkpoint


@pytest.hookimpl(hookwrapper=True, tryfirst=True)
def pytest_sessionfinish(session, exitstatus):
    """End the test process with pytest's own exit status as soon as every report is written.

    After pytest-qgis's exitQgis() the remaining Qt/sip, GDAL and torch objects are destroyed in
    no fixed order; in CI rehearsals that crashed (SIGSEGV) twice after all 422 tests had passed
    and the summary was printed, failing the run. Nothing of the plugin runs after this point, so
    skipping the rest of the shutdown loses nothing."""
    yield  # the other session-finish work, the terminal summary included
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(int(session.exitstatus))
