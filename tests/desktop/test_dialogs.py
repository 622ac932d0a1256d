"""Every GlacierSeg dialog in a real QGIS desktop window (see drivers/dialogs.py)."""
from pathlib import Path

import pytest

from .harness import ROOT, assert_not_blank

pytestmark = [pytest.mark.desktop, pytest.mark.slow]
DRIVERS = Path(__file__).parent / "drivers"
DIALOGS = ["segment", "vectorize", "map_glaciers_band_ratio", "map_lakes", "evaluate", "split_glaciers",
           "inventory_attributes", "train", "prepare_correction"]


@pytest.fixture(scope="module")
def reference_outlines(sample_scene, tmp_path_factory):
    """Reference glacier outlines: the scene's truth mask vectorized by our own vectorizer."""
    from glacierseg.core.contract import ClassInfo
    from glacierseg.core.vectorize import vectorize

    path = str(tmp_path_factory.mktemp("reference") / "reference.gpkg")
    vectorize(sample_scene.glacier_truth, path,
              [ClassInfo("glacier", 1, "#66ccff"), ClassInfo("debris_covered_glacier", 2, "#8d6e63")])
    return path


def test_every_dialog_opens_fills_runs_and_styles(desktop_qgis, sample_scene, sample_model, reference_outlines,
                                                  monkeypatch, tmp_path):
    import rasterio

    from glacierseg.core.contract import read_contract
    from glacierseg.core.segment import resolve_band_map

    # (the harness runs Mesa's softpipe: pysheds' numba beside llvmpipe's LLVM kills QGIS, see
    # docs/manual.md, "Known problems")
    monkeypatch.setenv("NUMBA_CACHE_DIR", str(ROOT / ".build" / "numba-desktop"))
    contract = read_contract(sample_model)
    with rasterio.open(sample_scene.image) as ds:
        mapping = resolve_band_map(contract, list(ds.descriptions))
    bands = [mapping[b] for b in contract.source_bands]
    run = desktop_qgis.run(DRIVERS / "dialogs.py", timeout=560, inputs={
        "image": sample_scene.image, "dem": sample_scene.dem, "reference": reference_outlines,
        "model": sample_model, "model_bands": bands, "trained_model": str(tmp_path / "trained.onnx")})
    data = run.data

    # every dialog screenshot, and the canvas, is there and not blank
    names = {p.stem for p in run.screenshots}
    assert {f"dialog_{d}" for d in DIALOGS} <= names and "canvas_final" in names
    for png in run.screenshots:
        assert_not_blank(png)

    # segment: one band combo per model band, preset from the band descriptions, value = band numbers
    assert data["segment_band_labels"] == list(contract.source_bands)
    assert data["segment_band_combos"] == bands
    assert data["segment_band_value"] == ",".join(map(str, bands))
    assert len(data["batch_band_mapping_fields"]) == 1  # batch keeps a text form ("3,8,11 or B03,B08,B11")
    assert data["modeler_band_mapping_fields"] == 1 and data["modeler_band_mapping"] == ["B03,B08,B11"]  # modeler too
    assert "glacierseg:train" in data["dialogs"] and (tmp_path / "trained.onnx").is_file()
    for alg, info in data["dialogs"].items():
        assert info["results"], f"{alg} did not finish through its dialog:\n{info['log_tail']}"

    # evaluate with a raster prediction: the field widget follows the vector reference
    assert "class_value" in data["evaluate_reference_fields"]
    # split: glacier classes ticked, lakes not
    assert data["split_class_items"] == {"glacier": 2, "glacial_lake": 0}
    assert data["inventory_date_value"].startswith("PyQt5.QtCore.QDate(2021, 8, 24)")
    assert data["train_parameters"] == {"NETWORK": "attention_deeplabv3plus", "LOSS": "focal_iou",
                                        "CLASS_FIELD": "class_value"}

    layers = data["layers"]
    by_name = {layer["name"]: layer for layer in layers}
    # names carry the input's name
    for name in ("Outlines — S2A_sample_scene", "Classes — S2A_sample_scene", "Probabilities — S2A_sample_scene"):
        assert name in by_name, sorted(by_name)
    # each run's vectors above its rasters (the first match of a name is the topmost), lines above polygons
    names_in_order = [layer["name"] for layer in layers]
    top = {name: names_in_order.index(name) for name in by_name}
    assert top["Outlines — S2A_sample_scene"] < top["Classes — S2A_sample_scene"]
    assert top["Outlines — S2A_sample_scene"] < top["Probabilities — S2A_sample_scene"]
    assert names_in_order.index("S2A_sample_scene") > max(i for i, n in enumerate(names_in_order) if "—" in n)
    outlines = next(layer for layer in layers if layer["name"] == "Outlines — S2A_sample_scene")
    assert outlines["renderer"] == "QgsCategorizedSymbolRenderer" and "" in outlines["categories"]
    # outlines to be corrected are kept beside the input, not in Processing's temporary folder
    assert Path(outlines["source"]).parent == Path(sample_scene.image).parent
    glaciers = next(layer for layer in layers if layer["name"].startswith("Glaciers with attributes"))
    assert Path(glaciers["source"]).parent == Path(sample_scene.image).parent
    assert outlines["widgets"]["class_value"] == "ValueMap" and outlines["widgets"]["review_status"] == "ValueMap"
    assert outlines["widgets"]["area_km2"] == "Range"
    assert "area(" in outlines["defaults"]["area_km2"] and "perimeter(" in outlines["defaults"]["perimeter_m"]
    classes = next(layer for layer in layers if layer["name"] == "Classes — S2A_sample_scene")
    assert classes["renderer"] == "QgsPalettedRasterRenderer" and not classes["visible"] and classes["opacity"] == 0.5
    probabilities = by_name["Probabilities — S2A_sample_scene"]
    assert probabilities["renderer"] == "QgsSingleBandPseudoColorRenderer" and probabilities["band"] == 1
    glacier_layers = [n for n in by_name if n.startswith("Glaciers")]
    divides = [n for n in by_name if n.startswith("Ice divides")]
    assert glacier_layers and divides
    assert data["glacier_ids"] and all(i.startswith("HEF-") for i in data["glacier_ids"])
    assert names_in_order.index(divides[0]) < min(names_in_order.index(g) for g in glacier_layers)
