"""The model store (core/store.py), the contract's ``scores`` and glacierseg:install_model /
list_models, with real ONNX files exported by our code and a real http server on 127.0.0.1."""
import functools
import hashlib
import http.server
import json
import os
import threading

import pytest

from glacierseg.core.contract import ModelContract, read_contract, with_score
from glacierseg.core.errors import InputError, ModelContractError
from glacierseg.core.store import ModelStore, model_card
from glacierseg.models.sample import sample_contract


@pytest.fixture()
def bare_model(sample_model, tmp_path):
    """The sample network with its contract stripped (an ONNX file made elsewhere)."""
    import onnx

    bare = onnx.load(sample_model)
    del bare.metadata_props[:]
    path = tmp_path / "src" / "bare.onnx"
    path.parent.mkdir()
    onnx.save(bare, str(path))
    return str(path)


@pytest.fixture()
def http_folder(tmp_path):
    """(folder, base URL) of a real http server on 127.0.0.1 serving ``folder``."""
    folder = tmp_path / "www"
    folder.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def _visible(folder):
    return sorted(os.listdir(folder)) if os.path.isdir(folder) else []


def test_install_list_resolve_remove(sample_model, tmp_path):
    store = ModelStore(str(tmp_path / "models"))
    model = store.install(sample_model)
    assert model.name == "glacierseg-sample-index-model" and store.names() == [model.name]
    assert model.contract == sample_contract(tile_size=64)
    assert read_contract(model.path) == model.contract
    assert store.resolve(model.name) == model.path
    assert store.resolve(sample_model) == sample_model  # any .onnx path still works
    with pytest.raises(InputError, match="No installed model is called 'nope'.*glacierseg-sample-index-model"):
        store.resolve("nope")
    with pytest.raises(InputError, match="already installed"):
        store.install(sample_model)
    store.install(sample_model, name="second")
    assert store.names() == ["glacierseg-sample-index-model", "second"]
    store.remove("second")
    assert store.names() == ["glacierseg-sample-index-model"]
    assert _visible(store.folder) == ["glacierseg-sample-index-model"]


def test_sidecar_model_installs_and_runs(bare_model, tmp_path):
    from glacierseg.core.runtime import load_model

    sidecar = {k: json.loads(v) for k, v in sample_contract(tile_size=64).to_metadata().items()}
    with open(os.path.splitext(bare_model)[0] + ".json", "w") as fh:
        json.dump(sidecar, fh)
    store = ModelStore(str(tmp_path / "models"))
    model = store.install(bare_model, name="from-sidecar")
    assert load_model(store.resolve("from-sidecar"), "cpu").contract == sample_contract(tile_size=64)
    assert model.contract.bands == sample_contract().bands


def test_contract_less_file_is_refused_naming_missing_keys(bare_model, tmp_path):
    store = ModelStore(str(tmp_path / "models"))
    with pytest.raises(ModelContractError) as err:
        store.install(bare_model)
    for key in ("glacierseg_version", "task", "classes", "bands", "resolution_m", "tile_size", "activation"):
        assert f"'{key}'" in str(err.value)
    assert _visible(store.folder) == []


def test_bundled_models_are_listed_but_not_removable(sample_model, tmp_path):
    bundled = ModelStore(str(tmp_path / "bundled"))
    bundled.install(sample_model, name="glacierseg-sample")
    store = ModelStore(str(tmp_path / "user"), [bundled.folder])
    assert [(m.name, m.bundled) for m in store.models()] == [("glacierseg-sample", True)]
    with pytest.raises(InputError, match="ships with the plugin"):
        store.remove("glacierseg-sample")


def test_scores_in_contract_and_on_the_card(sample_model, tmp_path):
    score = {"dataset": "Hintereisferner outline 2018", "region": "Ötztal Alps", "date": "2018-08-23",
             "metrics": {"iou": 0.81, "f1": 0.9}, "method": "glacierseg:evaluate, 10 m grid"}
    contract = with_score(sample_contract(), score)
    again = ModelContract.from_metadata(contract.to_metadata())
    assert again.scores == (score,) and again == contract
    with pytest.raises(ModelContractError, match=r"scores\[0\].*metrics"):
        metadata = {k: json.loads(v) for k, v in sample_contract().to_metadata().items()}
        ModelContract.from_dict({**json.loads(json.dumps(metadata)), "scores": [{"dataset": "x", "metrics": {}}]})
    store = ModelStore(str(tmp_path / "models"))
    store.install(sample_model, name="m")
    model = store.add_score("m", score)
    assert model.contract.scores == (score,)
    card = dict((label, text) for label, text in model_card(model.contract) if label != "Score")
    assert card["Task"] == "custom" and card["Resolution"] == "20 m" and card["Tile size"] == "64 px"
    assert card["Receptive field"] == "7 px" and card["Sensor"] == "S2"
    assert "glacier = 1 (#66ccff)" in card["Classes"] and card["Bands"] == "S2:B03, S2:B08, S2:B11"
    scores = [text for label, text in model_card(model.contract) if label == "Score"]
    assert scores == ["Hintereisferner outline 2018 (Ötztal Alps, 2018-08-23): iou 0.810, f1 0.900 — "
                      "glacierseg:evaluate, 10 m grid"]


def test_url_install_checks_sha256_and_leaves_nothing_on_failure(sample_model, bare_model, http_folder, tmp_path):
    www, base = http_folder
    data = open(sample_model, "rb").read()
    (www / "glacier.onnx").write_bytes(data)
    (www / "bare.onnx").write_bytes(open(bare_model, "rb").read())
    store = ModelStore(str(tmp_path / "models"))
    with pytest.raises(InputError, match="SHA-256"):
        store.install_url(f"{base}/glacier.onnx", "")
    with pytest.raises(InputError, match="not the expected"):
        store.install_url(f"{base}/glacier.onnx", "0" * 64)
    assert _visible(store.folder) == []
    with pytest.raises(ModelContractError, match="'glacierseg_version'.*'classes'"):
        store.install_url(f"{base}/bare.onnx", hashlib.sha256((www / "bare.onnx").read_bytes()).hexdigest())
    assert _visible(store.folder) == []
    with pytest.raises(InputError, match="Could not download"):
        store.install_url(f"{base}/missing.onnx", "0" * 64)
    model = store.install_url(f"{base}/glacier.onnx", hashlib.sha256(data).hexdigest())
    assert model.name == "glacier" and _visible(store.folder) == ["glacier"]
    assert open(model.path, "rb").read() == data
    # an ONNX file made elsewhere, published with its sidecar contract beside it
    sidecar = {k: json.loads(v) for k, v in sample_contract(tile_size=64).to_metadata().items()}
    (www / "bare.json").write_text(json.dumps(sidecar))
    model = store.install_url(f"{base}/bare.onnx", hashlib.sha256((www / "bare.onnx").read_bytes()).hexdigest())
    assert model.name == "bare" and model.contract == sample_contract(tile_size=64)
    assert _visible(store.folder) == ["bare", "glacier"]


def test_install_and_list_algorithms(glacierseg_provider, sample_model, bare_model, http_folder, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException

    monkeypatch.setenv("GLACIERSEG_HOME", str(tmp_path / "home"))
    www, base = http_folder
    (www / "sample.onnx").write_bytes(open(sample_model, "rb").read())
    (www / "bare.onnx").write_bytes(open(bare_model, "rb").read())
    models = tmp_path / "home" / "models"
    with pytest.raises(QgsProcessingException, match="not the expected"):
        processing.run("glacierseg:install_model", {"URL": f"{base}/sample.onnx", "SHA256": "1" * 64})
    with pytest.raises(QgsProcessingException, match="missing model contract key.*'task'"):
        processing.run("glacierseg:install_model", {"MODEL_FILE": bare_model})
    assert _visible(models) == []
    digest = hashlib.sha256((www / "sample.onnx").read_bytes()).hexdigest()
    out = processing.run("glacierseg:install_model", {"URL": f"{base}/sample.onnx", "SHA256": digest, "NAME": "alps"})
    assert out["MODEL_NAME"] == "alps" and out["MODEL_PATH"] == str(models / "alps" / "model.onnx")
    out = processing.run("glacierseg:list_models", {"OUTPUT": "TEMPORARY_OUTPUT"})
    assert out["COUNT"] >= 1
    rows = {f["name"]: f for f in out["OUTPUT"].getFeatures()}
    assert rows["alps"]["task"] == "custom" and rows["alps"]["classes"] == "glacier, glacial_lake"
    assert rows["alps"]["resolution_m"] == 20.0 and rows["alps"]["bundled"] is False


@pytest.fixture()
def home_with_sample(sample_model, tmp_path, monkeypatch):
    """GLACIERSEG_HOME with the sample model installed as 'alps'."""
    home = tmp_path / "home"
    monkeypatch.setenv("GLACIERSEG_HOME", str(home))
    ModelStore(str(home / "models")).install(sample_model, name="alps")
    return home


def test_segment_by_name_then_evaluate_adds_score_to_card(glacierseg_provider, home_with_sample, sample_scene,
                                                          sample_model, tmp_path):
    import processing
    import rasterio
    from qgis.core import QgsProcessingException

    by_name = processing.run("glacierseg:segment", {
        "INPUT": sample_scene.image, "MODEL": "alps", "OUTPUT_OUTLINES": None,
        "OUTPUT_PROBABILITIES": str(tmp_path / "p.tif"), "OUTPUT_CLASSES": str(tmp_path / "c.tif")})
    by_path = processing.run("glacierseg:segment", {
        "INPUT": sample_scene.image, "MODEL": sample_model, "OUTPUT_OUTLINES": None,
        "OUTPUT_PROBABILITIES": str(tmp_path / "p2.tif"), "OUTPUT_CLASSES": str(tmp_path / "c2.tif")})
    with rasterio.open(by_name["OUTPUT_CLASSES"]) as a, rasterio.open(by_path["OUTPUT_CLASSES"]) as b:
        assert (a.read() == b.read()).all() and (a.read(1) == 1).any()
    with pytest.raises(QgsProcessingException, match="No installed model is called 'alpz'.*alps"):
        processing.run("glacierseg:segment", {"INPUT": sample_scene.image, "MODEL": "alpz",
                                              "OUTPUT_PROBABILITIES": str(tmp_path / "p3.tif"),
                                              "OUTPUT_CLASSES": str(tmp_path / "c3.tif")})
    out = processing.run("glacierseg:evaluate", {
        "PREDICTION": by_name["OUTPUT_CLASSES"], "REFERENCE": sample_scene.lake_truth,
        "OUTPUT_TABLE": str(tmp_path / "scores.csv"), "SCORE_MODEL": "alps",
        "SCORE_DATASET": "generated scene lakes", "SCORE_REGION": "synthetic Alps"})
    card = ModelStore(str(home_with_sample / "models")).get("alps").contract.scores
    assert len(card) == 1 and card[0]["dataset"] == "generated scene lakes" and card[0]["region"] == "synthetic Alps"
    assert card[0]["metrics"]["iou"] == pytest.approx(out["IOU"])
    assert card[0]["metrics"]["f1"] == pytest.approx(out["F1"])
    with pytest.raises(QgsProcessingException, match="Name the reference dataset"):
        processing.run("glacierseg:evaluate", {"PREDICTION": by_name["OUTPUT_CLASSES"],
                                               "REFERENCE": sample_scene.lake_truth,
                                               "OUTPUT_TABLE": str(tmp_path / "s2.csv"), "SCORE_MODEL": "alps"})


@pytest.mark.slow
def test_qgis_process_takes_a_model_name(qgis_process, home_with_sample, sample_scene, tmp_path):
    qgis_process.env["GLACIERSEG_HOME"] = str(home_with_sample)
    try:
        rc, result, output = qgis_process.run("glacierseg:segment", INPUT=sample_scene.image, MODEL="alps",
                                              OUTPUT_PROBABILITIES=str(tmp_path / "p.tif"),
                                              OUTPUT_CLASSES=str(tmp_path / "c.tif"), OUTPUT_OUTLINES="")
        assert rc == 0, output
        assert os.path.exists(tmp_path / "c.tif")
        rc, result, output = qgis_process.run("glacierseg:list_models", OUTPUT=str(tmp_path / "models.csv"))
        assert rc == 0 and result["results"]["COUNT"] == 1, output
        assert "alps" in (tmp_path / "models.csv").read_text()
    finally:
        del qgis_process.env["GLACIERSEG_HOME"]
