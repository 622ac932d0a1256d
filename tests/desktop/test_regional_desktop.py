"""glacierseg:map_inventory in a real QGIS desktop window (see drivers/regional.py)."""
import os
from pathlib import Path

import pytest

from .harness import ROOT, assert_not_blank

pytestmark = [pytest.mark.desktop, pytest.mark.slow]
DRIVERS = Path(__file__).parent / "drivers"


def test_map_inventory_dialog_runs_in_the_qgis_process(desktop_qgis, monkeypatch, tmp_path):
    from osgeo import ogr

    from glacierseg.core.regional.pipeline import InventoryOptions, band_ratio_method, run_inventory
    from glacierseg.core.regional.sample import make_region_scenes

    # the split's numba beside llvmpipe's LLVM: the harness runs Mesa's softpipe (see test_dialogs)
    monkeypatch.setenv("NUMBA_CACHE_DIR", os.environ.get("NUMBA_CACHE_DIR", str(ROOT / ".build" / "numba-desktop")))
    region = make_region_scenes(str(tmp_path / "region"))
    expected = run_inventory(InventoryOptions(region.scenes, region.region.dem, str(tmp_path / "expected.gpkg"),
                                              band_ratio_method(median=False)))
    out = tmp_path / "desktop" / "inventory.gpkg"
    out.parent.mkdir()
    run = desktop_qgis.run(DRIVERS / "regional.py", timeout=560, inputs={
        "scenes": region.scenes, "dem": region.region.dem, "output": str(out)})
    data = run.data

    names = {p.stem for p in run.screenshots}
    assert {"dialog_map_inventory", "dialog_map_inventory_done", "canvas_inventory"} <= names
    for png in run.screenshots:
        assert_not_blank(png)
    assert len(data["scenes_value"]) == 4 and data["workers_value"] == 0
    assert data["results"], data["log_tail"]
    assert float(data["results"]["N_GLACIERS"]) == expected["glaciers"] and float(data["results"]["N_FAILED"]) == 0
    ds = ogr.Open(str(out))
    assert ds.GetLayerByName("glaciers").GetFeatureCount() == expected["glaciers"]
    assert ds.GetLayerByName("footprints").GetFeatureCount() == 4
    dates = sorted({f["src_date"] for f in ds.GetLayerByName("glaciers")})
    assert len(dates) > 1  # per glacier, from the scene that supplied most of it
    loaded = " | ".join(data["layers"])
    for word in ("glaciers", "divides", "footprints"):
        assert word in loaded, loaded
    assert data["footprint_fill_alpha"] == 0  # footprints drawn as outlines: the scenes show through
    # glaciers and divides styled as split_glaciers styles them (not QGIS's random default fill)
    assert data["glacier_fill"] == "#a6cee3" and data["divide_colour"] == "#e31a1c"
