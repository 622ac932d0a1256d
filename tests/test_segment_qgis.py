"""glacierseg:segment in real QGIS: provider, processing.run, errors, cancel, qgis_process, zip."""
import os
import zipfile

import numpy as np
import pytest
import rasterio
from qgis.core import (
    QgsApplication,
    QgsPalettedRasterRenderer,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsRasterLayer,
)

from .helpers import ROOT, write_raster
from .oracle import sample_expectation

ALGORITHM = "glacierseg:segment"


def run_segment(tmp_path, feedback=None, **params):
    import processing

    params.setdefault("OUTPUT_PROBABILITIES", str(tmp_path / "prob.tif"))
    params.setdefault("OUTPUT_CLASSES", str(tmp_path / "classes.tif"))
    return processing.run(ALGORITHM, params, feedback=feedback or QgsProcessingFeedback())


def test_provider_and_algorithm_registered(glacierseg_provider):
    assert glacierseg_provider.id() == "glacierseg" and glacierseg_provider.name() == "GlacierSeg"
    assert not glacierseg_provider.icon().isNull()
    alg = QgsApplication.processingRegistry().algorithmById(ALGORITHM)
    assert alg is not None and alg.displayName() == "Segment raster with model"
    assert "receptive field" in alg.shortHelpString()


def test_segment_matches_expected_mask(glacierseg_provider, sample_scene, sample_model, tmp_path):
    result = run_segment(tmp_path, INPUT=sample_scene.image, MODEL=sample_model, TTA=1)
    _, want = sample_expectation(sample_scene.image)
    with rasterio.open(result["OUTPUT_CLASSES"]) as ds:
        np.testing.assert_array_equal(ds.read(1), want)
    with rasterio.open(result["OUTPUT_PROBABILITIES"]) as ds:
        assert ds.descriptions == ("glacier", "glacial_lake") and ds.dtypes[0] == "float32"
    assert result["EXECUTION_PROVIDER"] == "CPUExecutionProvider" and result["TILES_RUN"] > 1
    layer = QgsRasterLayer(result["OUTPUT_CLASSES"], "classes")
    assert layer.isValid() and layer.crs().authid() == "EPSG:32632"


def test_class_style_uses_model_colours(sample_model):
    from glacierseg.core.contract import read_contract
    from glacierseg.ui.styles import class_raster_renderer

    contract = read_contract(sample_model)
    layer = QgsRasterLayer(os.devnull, "x")
    renderer = class_raster_renderer(layer, contract.classes)
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [(c.value, c.color.name(), c.label) for c in renderer.classes()] == [
        (1, "#66ccff", "glacier"), (2, "#1f4eb4", "glacial_lake")]


def test_band_count_mismatch_is_a_clear_error(glacierseg_provider, sample_model, tmp_path):
    path = write_raster(tmp_path / "two.tif", np.ones((2, 40, 40), np.uint16))
    with pytest.raises(QgsProcessingException, match="reads 3 band.*raster has 2.*band mapping"):
        run_segment(tmp_path, INPUT=path, MODEL=sample_model)


def test_missing_metadata_key_is_named(glacierseg_provider, sample_scene, sample_model, tmp_path):
    import onnx

    model = onnx.load(sample_model)
    keep = [p for p in model.metadata_props if p.key != "resolution_m"]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    onnx.save(model, str(tmp_path / "no_resolution.onnx"))
    with pytest.raises(QgsProcessingException, match="missing model contract key.*'resolution_m'"):
        run_segment(tmp_path, INPUT=sample_scene.image, MODEL=str(tmp_path / "no_resolution.onnx"))


def test_non_onnx_file_is_refused(glacierseg_provider, sample_scene, tmp_path):
    fake = tmp_path / "model.onnx"
    fake.write_bytes(b"GIF89a not a model")
    with pytest.raises(QgsProcessingException, match="not a readable ONNX model"):
        run_segment(tmp_path, INPUT=sample_scene.image, MODEL=str(fake))


@pytest.mark.skipif("CUDAExecutionProvider" in __import__("onnxruntime").get_available_providers(),
                    reason="CUDA is available here")
def test_cuda_unavailable_is_a_clear_error(glacierseg_provider, sample_scene, sample_model, tmp_path):
    with pytest.raises(QgsProcessingException, match="CUDA.*onnxruntime-gpu"):
        run_segment(tmp_path, INPUT=sample_scene.image, MODEL=sample_model, DEVICE=2)
    assert not os.path.exists(tmp_path / "classes.tif")


class CancellingFeedback(QgsProcessingFeedback):
    """Cancels once the run has reported some progress."""

    def setProgress(self, progress):  # noqa: N802
        super().setProgress(progress)
        if progress > 20:
            self.cancel()


def test_cancel_leaves_no_output(glacierseg_provider, sample_scene, sample_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run_segment(out, feedback=CancellingFeedback(), INPUT=sample_scene.image, MODEL=sample_model, TILE_SIZE=64)
    assert os.listdir(out) == []


def test_extent_and_mask_parameters(glacierseg_provider, sample_scene, sample_model, tmp_path):
    x0, y0 = 630000.0 + 100 * 20, 5190000.0 - 300 * 20
    result = run_segment(tmp_path, INPUT=sample_scene.image, MODEL=sample_model,
                         EXTENT=f"{x0},{x0 + 4000},{y0},{y0 + 2000} [EPSG:32632]")
    _, want = sample_expectation(sample_scene.image)
    with rasterio.open(result["OUTPUT_CLASSES"]) as ds:
        np.testing.assert_array_equal(ds.read(1), want[200:300, 100:300])


def test_batch_process_style_reuse(glacierseg_provider, sample_scene, sample_model, tmp_path):
    """The same algorithm instance runs twice with different parameters (as batch processing does)."""
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALGORITHM)
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    for name, tta in (("a", 0), ("b", 2)):
        params = {"INPUT": sample_scene.image, "MODEL": sample_model, "TTA": tta,
                  "OUTPUT_PROBABILITIES": str(tmp_path / f"{name}_p.tif"),
                  "OUTPUT_CLASSES": str(tmp_path / f"{name}_c.tif")}
        results, ok = alg.run(params, context, feedback)
        assert ok and os.path.exists(results["OUTPUT_CLASSES"])


@pytest.mark.slow
def test_qgis_process_runs_segment(qgis_process, sample_scene, sample_model, tmp_path):
    rc, result, output = qgis_process.run(
        ALGORITHM, INPUT=sample_scene.image, MODEL=sample_model,
        OUTPUT_PROBABILITIES=str(tmp_path / "p.tif"), OUTPUT_CLASSES=str(tmp_path / "c.tif"))
    assert rc == 0, output
    _, want = sample_expectation(sample_scene.image)
    with rasterio.open(result["results"]["OUTPUT_CLASSES"]) as ds:
        np.testing.assert_array_equal(ds.read(1), want)


@pytest.mark.slow
def test_qgis_process_reports_errors(qgis_process, sample_scene, tmp_path):
    rc, _, output = qgis_process.run(ALGORITHM, INPUT=sample_scene.image, MODEL=str(tmp_path / "nope.onnx"),
                                     OUTPUT_PROBABILITIES=str(tmp_path / "p.tif"),
                                     OUTPUT_CLASSES=str(tmp_path / "c.tif"))
    assert rc != 0 and "nope.onnx" in output


INSTALL_CHECK = r"""
import sys
import qgis.utils
from qgis.core import QgsApplication
plugins = sys.argv[1]
app = QgsApplication([], False)
app.initQgis()
sys.path.append(QgsApplication.pkgDataPath() + "/python/plugins")  # QGIS's own plugins: processing
import processing.core.Processing
processing.core.Processing.Processing.initialize()
sys.path.insert(0, plugins)
qgis.utils.plugin_paths.insert(0, plugins)  # as QGIS does for a profile's plugin folder
assert qgis.utils.loadPlugin("glacierseg") and qgis.utils.startPlugin("glacierseg")
assert sys.modules["glacierseg"].__file__.startswith(plugins)
registry = QgsApplication.processingRegistry()
assert registry.algorithmById("glacierseg:segment") is not None
from glacierseg.processing_provider.model_parameters import resolve_model_path
from glacierseg.core.contract import read_contract
sample = resolve_model_path("glacierseg-sample")  # the zip ships the sample model installed
assert sample.startswith(plugins) and read_contract(sample).name == "glacierseg-sample-index-model", sample
import processing
listed = processing.run("glacierseg:list_models", {"OUTPUT": "TEMPORARY_OUTPUT"})["OUTPUT"]
assert [(f["name"], f["bundled"]) for f in listed.getFeatures()] == [("glacierseg-sample", True)]
qgis.utils.plugins["glacierseg"].unload()  # what Plugin Manager calls on uninstall/disable
assert registry.providerById("glacierseg") is None
print("installed, loaded and unloaded")
"""


@pytest.mark.slow
def test_zip_installs_and_loads(tmp_path):
    """The zip from scripts/package.py, unpacked into a profile's plugin folder, loads in a fresh QGIS
    with the sample model installed (offered by name)."""
    import subprocess
    import sys

    target = tmp_path / "glacierseg.zip"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "package.py"), str(target)], check=True)
    plugins = tmp_path / "profile" / "python" / "plugins"
    with zipfile.ZipFile(target) as zf:
        names = zf.namelist()
        assert "glacierseg/metadata.txt" in names and "glacierseg/processing_provider/provider.py" in names
        assert not any(n.startswith("glacierseg/tests/") for n in names)
        assert "glacierseg/bundled_models/glacierseg-sample/model.onnx" in names
        assert "glacierseg/requirements.txt" in names  # core/deps.py reads the pins from it
        zf.extractall(plugins)
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    env["GLACIERSEG_HOME"] = str(tmp_path / "home")  # an empty user model folder
    proc = subprocess.run([sys.executable, "-c", INSTALL_CHECK, str(plugins)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert proc.returncode == 0 and "installed, loaded and unloaded" in proc.stdout, proc.stderr[-3000:]

def test_outlines_output_matches_class_raster(glacierseg_provider, sample_scene, sample_model, tmp_path):
    from qgis.core import QgsVectorLayer

    result = run_segment(tmp_path, INPUT=sample_scene.image, MODEL=sample_model,
                         OUTPUT_OUTLINES=str(tmp_path / "outlines.gpkg"), MIN_AREA=0.0)
    layer = QgsVectorLayer(result["OUTPUT_OUTLINES"], "outlines", "ogr")
    assert layer.isValid() and layer.featureCount() > 0
    areas = {}
    for f in layer.getFeatures():
        assert f.geometry().isGeosValid()
        areas[f["class_name"]] = areas.get(f["class_name"], 0.0) + f["area_km2"]
    with rasterio.open(result["OUTPUT_CLASSES"]) as ds:
        classes = ds.read(1)
    for name, value in (("glacier", 1), ("glacial_lake", 2)):
        pixel_km2 = (classes == value).sum() * 20.0 * 20.0 / 1e6
        assert areas[name] == pytest.approx(pixel_km2, rel=0.01)
    assert next(layer.getFeatures())["source"] == "image.tif; model glacierseg-sample-index-model"


def test_outlines_can_be_switched_off(glacierseg_provider, sample_scene, sample_model, tmp_path):
    result = run_segment(tmp_path, INPUT=sample_scene.image, MODEL=sample_model, OUTPUT_OUTLINES=None)
    assert "OUTPUT_OUTLINES" not in result or not result["OUTPUT_OUTLINES"]
    assert os.path.exists(result["OUTPUT_CLASSES"])


class CancelDuringOutlines(QgsProcessingFeedback):
    def setProgress(self, progress):  # noqa: N802
        super().setProgress(progress)
        if progress > 86:
            self.cancel()


def test_cancel_while_vectorizing_leaves_no_output(glacierseg_provider, sample_scene, sample_model, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with pytest.raises(QgsProcessingException, match="cancelled"):
        run_segment(out, feedback=CancelDuringOutlines(), INPUT=sample_scene.image, MODEL=sample_model,
                    OUTPUT_OUTLINES=str(out / "outlines.gpkg"))
    assert os.listdir(out) == []
