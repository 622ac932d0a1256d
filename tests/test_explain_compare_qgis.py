"""glacierseg:explain and glacierseg:compare_outlines in real QGIS: toolbox (processing.run),
batch, the modeler and qgis_process."""
import csv
import json
import os

import pytest
import rasterio
from qgis.core import (
    QgsApplication,
    QgsProcessingContext,
    QgsProcessingFeedback,
    QgsProcessingModelAlgorithm,
    QgsProcessingModelChildAlgorithm,
    QgsProcessingModelChildParameterSource,
    QgsProcessingModelOutput,
    QgsProcessingModelParameter,
    QgsProcessingOutputHtml,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterRasterLayer,
    QgsVectorLayer,
)

from .test_compare import CASES, write_pair

EXPLAIN, COMPARE = "glacierseg:explain", "glacierseg:compare_outlines"


def test_registered_in_evaluation_with_docs(glacierseg_provider):
    for alg_id, page in ((EXPLAIN, "explain.md"), (COMPARE, "compare-outlines.md")):
        alg = QgsApplication.processingRegistry().algorithmById(alg_id)
        assert alg is not None and alg.group() == "Evaluation" and alg.groupId() == "evaluation"
        assert alg.shortDescription() and len(alg.tags()) >= 5 and alg.shortHelpString()
        url = alg.helpUrl()
        assert url.startswith("file://") and url.endswith(page)
        assert os.path.isfile(url[len("file://"):]), url
        # the HTML report is an HTML output: the Results Viewer lists it
        assert isinstance(alg.outputDefinition("OUTPUT_REPORT"), QgsProcessingOutputHtml)


def test_explain_from_the_toolbox(glacierseg_provider, sample_scene, sample_model, tmp_path):
    import processing

    context = QgsProcessingContext()
    result = processing.run(EXPLAIN, {
        "INPUT": sample_scene.image, "MODEL": sample_model, "OUTPUT_FOLDER": str(tmp_path / "imp"),
        "OUTPUT_TABLE": str(tmp_path / "imp.csv"), "OUTPUT_REPORT": str(tmp_path / "imp.html"),
    }, context=context, feedback=QgsProcessingFeedback())
    assert result["METHOD"] == "occlusion" and result["TILES_RUN"] >= 1
    top = json.loads(result["MOST_IMPORTANT"])
    assert top["glacier"] in ("S2:B03", "S2:B11") and top["glacial_lake"] in ("S2:B03", "S2:B08")
    with rasterio.open(tmp_path / "imp" / "importance_glacier.tif") as ds:
        assert ds.descriptions == ("S2:B03", "S2:B08", "S2:B11") and ds.count == 3
    with open(result["OUTPUT_TABLE"], newline="") as fh:
        rows = {(r["class"], r["channel"]): float(r["mean_abs_value"]) for r in csv.DictReader(fh)}
    assert rows[("glacier", "S2:B08")] <= 1e-6 and rows[("glacial_lake", "S2:B11")] <= 1e-6
    assert "<img" in open(result["OUTPUT_REPORT"], encoding="utf-8").read()
    # the per-class rasters are loaded with the results
    assert any(p.endswith("importance_glacier.tif") for p in context.layersToLoadOnCompletion())


@pytest.mark.slow
def test_explain_checkpoint_from_the_toolbox(glacierseg_provider, trained, tmp_path):
    """The checkpoint path with an extent and a mask, which travel to the child process."""
    import numpy as np
    import processing
    from shapely.geometry import box

    from .helpers import write_vector

    scene, model, checkpoint = trained
    mask = write_vector(tmp_path / "mask.gpkg", [box(630400.0, 5188400.0, 631000.0, 5189600.0)])
    result = processing.run(EXPLAIN, {
        "INPUT": scene.image, "MODEL": model, "CHECKPOINT": checkpoint, "DEVICE": 1,
        "EXTENT": "630400,631600,5188400,5189600 [EPSG:32632]", "MASK": mask,
        "OUTPUT_FOLDER": str(tmp_path / "sal"), "OUTPUT_TABLE": str(tmp_path / "sal.csv"),
        "OUTPUT_REPORT": str(tmp_path / "sal.html"),
    }, feedback=QgsProcessingFeedback())
    assert result["METHOD"] == "saliency"
    for name in ("saliency_glacier.tif", "gradcam_glacier.tif"):
        with rasterio.open(tmp_path / "sal" / name) as ds:
            data = ds.read()
            # the extent and the mask bounds intersect in 30 × 60 px (20 m) from (630400, 5189600)
            assert data.shape[1:] == (60, 30) and (ds.transform.c, ds.transform.f) == (630400.0, 5189600.0)
            assert np.isfinite(data).any()


def test_compare_from_the_toolbox(glacierseg_provider, tmp_path):
    import processing

    before, after = write_pair(tmp_path, CASES)
    result = processing.run(COMPARE, {
        "INPUT_1": before, "INPUT_2": after, "DATE_1": "2000", "DATE_2": "2010-01-01",
        "OUTPUT_OBJECTS": str(tmp_path / "objects.gpkg"), "OUTPUT_CHANGES": str(tmp_path / "changes.gpkg"),
        "OUTPUT_SUMMARY": str(tmp_path / "summary.csv"), "OUTPUT_REPORT": str(tmp_path / "report.html"),
    }, feedback=QgsProcessingFeedback())
    assert result["OBJECTS"] == 6
    assert result["AREA_1_KM2"] == pytest.approx(5.59) and result["AREA_2_KM2"] == pytest.approx(5.22)
    assert result["CHANGE_KM2"] == pytest.approx(-0.37)
    objects = QgsVectorLayer(result["OUTPUT_OBJECTS"], "objects", "ogr")
    assert objects.isValid() and objects.featureCount() == 6
    assert sorted(f["match_type"] for f in objects.getFeatures()) == sorted(t for *_, t in CASES.values())
    changes = QgsVectorLayer(result["OUTPUT_CHANGES"], "changes", "ogr")
    assert {f["change"] for f in changes.getFeatures()} == {"gain", "loss"}


def test_batch_runs_reuse_the_algorithm(glacierseg_provider, sample_scene, sample_model, tmp_path):
    """Rows of the batch dialog run through processing's AlgorithmExecutor.execute on one algorithm instance."""
    from processing.gui.AlgorithmExecutor import execute

    before, after = write_pair(tmp_path, CASES)
    context, feedback = QgsProcessingContext(), QgsProcessingFeedback()
    compare = QgsApplication.processingRegistry().createAlgorithmById(COMPARE)
    for row, overlap in (("a", 50.0), ("b", 99.0)):
        ok, results = execute(compare, {
            "INPUT_1": before, "INPUT_2": after, "MIN_OVERLAP": overlap,
            "OUTPUT_OBJECTS": str(tmp_path / f"{row}_o.gpkg"), "OUTPUT_CHANGES": str(tmp_path / f"{row}_c.gpkg"),
            "OUTPUT_SUMMARY": str(tmp_path / f"{row}.csv"), "OUTPUT_REPORT": str(tmp_path / f"{row}.html"),
        }, context, feedback)
        assert ok and os.path.exists(results["OUTPUT_SUMMARY"])
    with open(tmp_path / "b.csv", newline="") as fh:
        strict = next(csv.DictReader(fh))
    assert int(strict["objects"]) > 6  # at 99 % the split and merged outlines no longer link
    explain = QgsApplication.processingRegistry().createAlgorithmById(EXPLAIN)
    for row, band_map in (("a", ""), ("b", "2,4,5")):
        ok, results = execute(explain, {
            "INPUT": sample_scene.image, "MODEL": sample_model, "BAND_MAPPING": band_map,
            "OUTPUT_FOLDER": str(tmp_path / f"x{row}"), "OUTPUT_TABLE": str(tmp_path / f"x{row}.csv"),
            "OUTPUT_REPORT": str(tmp_path / f"x{row}.html")}, context, feedback)
        assert ok and os.path.exists(results["OUTPUT_REPORT"])
    assert (tmp_path / "xa.csv").read_text() == (tmp_path / "xb.csv").read_text()


def test_modeler_chains_segment_compare_and_explain(glacierseg_provider, sample_scene, sample_model, tmp_path):
    """A model built as in the modeler: segment the scene, compare its outlines with the truth
    outlines, and explain the same model on the same raster."""
    from glacierseg.core.vectorize import vectorize
    from glacierseg.models.sample import sample_contract

    truth = vectorize(sample_scene.glacier_truth, str(tmp_path / "truth.gpkg"),
                      (sample_contract().classes[0],), layer_name="truth").path
    model = QgsProcessingModelAlgorithm("segment and compare", "GlacierSeg tests")
    model.addModelParameter(QgsProcessingParameterRasterLayer("scene", "Scene"), QgsProcessingModelParameter("scene"))
    model.addModelParameter(QgsProcessingParameterFile("onnx", "Model", extension="onnx"),
                            QgsProcessingModelParameter("onnx"))
    model.addModelParameter(QgsProcessingParameterFeatureSource("truth", "Truth"), QgsProcessingModelParameter("truth"))

    src = QgsProcessingModelChildParameterSource

    def child(alg_id, child_id, sources, outputs):
        c = QgsProcessingModelChildAlgorithm(alg_id)
        c.setChildId(child_id)
        for d in QgsApplication.processingRegistry().algorithmById(alg_id).parameterDefinitions():
            if d.name() in sources:  # the modeler dialog fills every other parameter with its default
                c.addParameterSources(d.name(), [sources[d.name()]])
            elif not d.isDestination() and d.defaultValue() is not None:
                c.addParameterSources(d.name(), [src.fromStaticValue(d.defaultValue())])
        outs = {}
        for name in outputs:
            out = QgsProcessingModelOutput(f"{child_id}_{name}", f"{child_id} {name}")
            out.setChildOutputName(name)
            out.setChildId(child_id)
            outs[f"{child_id}_{name}"] = out
        c.setModelOutputs(outs)
        model.addChildAlgorithm(c)

    child("glacierseg:segment", "segment",
          {"INPUT": src.fromModelParameter("scene"), "MODEL": src.fromModelParameter("onnx")},
          ["OUTPUT_CLASSES", "OUTPUT_PROBABILITIES", "OUTPUT_OUTLINES"])
    child(COMPARE, "compare", {"INPUT_1": src.fromModelParameter("truth"),
                               "INPUT_2": src.fromChildOutput("segment", "OUTPUT_OUTLINES"),
                               "CLASS_FIELD": src.fromStaticValue("class_name"), "DATE_1": src.fromStaticValue("2020"),
                               "DATE_2": src.fromStaticValue("2021")},
          ["OUTPUT_OBJECTS", "OUTPUT_CHANGES", "OUTPUT_SUMMARY", "OUTPUT_REPORT"])
    child(EXPLAIN, "explain", {"INPUT": src.fromModelParameter("scene"), "MODEL": src.fromModelParameter("onnx")},
          ["OUTPUT_FOLDER", "OUTPUT_TABLE", "OUTPUT_REPORT"])
    ok, message = model.validate()
    assert ok, message
    params = {"scene": sample_scene.image, "onnx": sample_model, "truth": truth}
    outputs = {"segment": {"OUTPUT_CLASSES": "tif", "OUTPUT_PROBABILITIES": "tif", "OUTPUT_OUTLINES": "gpkg"},
               "compare": {"OUTPUT_OBJECTS": "gpkg", "OUTPUT_CHANGES": "gpkg", "OUTPUT_SUMMARY": "csv",
                           "OUTPUT_REPORT": "html"},
               "explain": {"OUTPUT_FOLDER": "", "OUTPUT_TABLE": "csv", "OUTPUT_REPORT": "html"}}
    for child_id, outs in outputs.items():  # a model's destination parameters are named 'child:output'
        for name, ext in outs.items():
            params[f"{child_id}:{child_id}_{name}"] = str(tmp_path / (f"{child_id}_{name}.{ext}" if ext else child_id))
    path = str(tmp_path / "chain.model3")
    assert model.toFile(path)
    loaded = QgsProcessingModelAlgorithm()
    assert loaded.fromFile(path)
    feedback = QgsProcessingFeedback()
    results, ok = loaded.run(params, QgsProcessingContext(), feedback)
    assert ok, feedback.textLog()[-3000:]
    assert results["compare:compare_OUTPUT_SUMMARY"] == str(tmp_path / "compare_OUTPUT_SUMMARY.csv")
    with open(tmp_path / "compare_OUTPUT_SUMMARY.csv", newline="") as fh:
        summary = {r["class"]: r for r in csv.DictReader(fh)}
    # the sample model finds most of the truth glacier: the areas agree within a fifth
    glacier = summary["glacier"]
    assert float(glacier["area_2_km2"]) == pytest.approx(float(glacier["area_1_km2"]), rel=0.2)
    assert int(glacier["same"]) + int(glacier["merged"]) + int(glacier["split"]) + int(glacier["split_merged"]) >= 1
    assert (tmp_path / "explain" / "importance_glacier.tif").exists()


@pytest.mark.slow
def test_both_through_qgis_process(qgis_process, trained, tmp_path):
    scene, model, checkpoint = trained
    rc, result, output = qgis_process.run(
        EXPLAIN, INPUT=scene.image, MODEL=model, CHECKPOINT=checkpoint, DEVICE=1, OUTPUT_FOLDER=tmp_path / "sal",
        OUTPUT_TABLE=tmp_path / "sal.csv", OUTPUT_REPORT=tmp_path / "sal.html")
    assert rc == 0, output
    assert result["results"]["METHOD"] == "saliency" and (tmp_path / "sal" / "gradcam_glacier.tif").exists()
    rc, result, output = qgis_process.run(
        EXPLAIN, INPUT=scene.image, MODEL=model, OUTPUT_FOLDER=tmp_path / "occ",
        OUTPUT_TABLE=tmp_path / "occ.csv", OUTPUT_REPORT=tmp_path / "occ.html")
    assert rc == 0, output
    assert result["results"]["METHOD"] == "occlusion" and (tmp_path / "occ" / "importance_glacier.tif").exists()
    before, after = write_pair(tmp_path, CASES)
    rc, result, output = qgis_process.run(
        COMPARE, INPUT_1=before, INPUT_2=after, DATE_1=2000, DATE_2=2010, OUTPUT_OBJECTS=tmp_path / "o.gpkg",
        OUTPUT_CHANGES=tmp_path / "c.gpkg", OUTPUT_SUMMARY=tmp_path / "s.csv", OUTPUT_REPORT=tmp_path / "r.html")
    assert rc == 0, output
    assert result["results"]["OBJECTS"] == 6 and result["results"]["CHANGE_KM2"] == pytest.approx(-0.37)
    assert "split_merged 1" in output  # the per-class summary in the log
