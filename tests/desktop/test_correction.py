"""Manual correction in a real QGIS desktop window (see drivers/correction.py)."""
import shutil
from pathlib import Path

import pytest

from .harness import assert_not_blank

pytestmark = [pytest.mark.desktop, pytest.mark.slow]
DRIVERS = Path(__file__).parent / "drivers"


def test_correction_workflow(desktop_qgis, sample_scene, tmp_path):
    from glacierseg.core.contract import ClassInfo
    from glacierseg.core.vectorize import vectorize

    outlines = str(tmp_path / "outlines.gpkg")
    vectorize(sample_scene.glacier_truth, outlines,
              [ClassInfo("glacier", 1, "#66ccff"), ClassInfo("debris_covered_glacier", 2, "#8d6e63")])
    dem = str(tmp_path / "dem.tif")
    shutil.copyfile(sample_scene.dem, dem)
    run = desktop_qgis.run(DRIVERS / "correction.py", timeout=240, inputs={
        "outlines": outlines, "dem": dem, "glaciers": str(tmp_path / "glaciers.gpkg")})
    data = run.data
    assert {p.stem for p in run.screenshots} == {
        "dialog_prepare_correction_from_menu", "canvas_new_polygon_unclassified", "canvas_after_correction"}
    for png in run.screenshots:
        assert_not_blank(png)

    # the editing set-up
    assert data["menu_action"] == "Prepare outlines for correction…"
    assert data["topological_editing"] and data["snapping"]
    assert data["widgets"] == {"class_value": "ValueMap", "class_name": "Hidden", "review_status": "ValueMap",
                               "area_km2": "Range"}
    # the new polygon renders (catch-all category) and its area and perimeter are right
    assert data["new_symbols"] == 1
    assert data["new_area_km2"] == pytest.approx(data["new_true_area_km2"], abs=1e-6)
    assert data["new_area_km2"] == pytest.approx(0.16, abs=1e-6) and data["new_perimeter_m"] == pytest.approx(1600)
    assert data["new_review_status"] == "corrected" and data["new_class_name"] == "glacier"
    # the shared vertex moved in both neighbours: valid, no overlap, still touching
    assert all(data["valid"].values())
    assert data["moved_vertex_in_both"] and data["neighbours_touch"]
    assert data["neighbour_overlap_m2"] < 1e-6
    for attribute, geometry in data["moved_areas"].values():
        assert attribute == pytest.approx(geometry, abs=1e-6)
    edited = set(data["moved_owners"]) | {data["new_fid"]}
    assert {fid for fid, s in data["review_after_edit"].items() if s == "corrected"} == edited
    # update in place: only the edited features change
    assert data["n_updated"] == len(edited)
    middle, after = data["middle"], data["after"]
    changed = {fid for fid in after if after[fid] != middle[fid]}
    assert changed == edited
    assert after[data["new_fid"]]["zmed_m"] is not None and after[data["new_fid"]]["dem_source"] == "sample DEM"
    for fid in after:
        assert after[fid]["review_status"] == middle[fid]["review_status"]
        assert after[fid]["fid"] == middle[fid]["fid"]
