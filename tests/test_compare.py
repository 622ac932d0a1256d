"""glacierseg:compare_outlines core: constructed outline pairs covering every match type with
exact areas, ID matching, classes, dates; the real RGI 5 vs RGI 7 comparison."""
import csv
import datetime

import pytest
from shapely.geometry import box

from glacierseg.core.compare import compare_outlines, decimal_year
from glacierseg.core.errors import InputError
from glacierseg.core.geo import read_features

from .helpers import write_vector

X0, Y0 = 630000.0, 5190000.0  # UTM 32N (EPSG:32632), the zone of the outlines' centre


def sq(x0, x1, y0=0.0, y1=1000.0):
    return box(X0 + x0, Y0 + y0, X0 + x1, Y0 + y1)


# name -> (earlier outlines, later outlines, expected match type)
CASES = {
    "same": ([sq(0, 1000)], [sq(0, 900)], "same"),  # 1 -> 0.9 km², inside the old outline
    "split": ([sq(3000, 5000)], [sq(3000, 3900), sq(4100, 5000)], "split"),  # 2 -> 0.9 + 0.9
    "merged": ([sq(7000, 7500, 0, 500), sq(7600, 8100, 0, 500)], [sq(6950, 8150, 0, 600)], "merged"),  # 0.5 -> 0.72
    # A, B -> C (inside A) and D (half of A, most of B): one object, 2:2
    "split_merged": ([sq(10000, 11000), sq(11000, 12000)], [sq(10000, 10450), sq(10500, 11600)], "split_merged"),
    "new": ([], [sq(20000, 20500, 0, 500)], "new"),
    "vanished": ([sq(25000, 25300, 0, 300)], [], "vanished"),
}


def write_pair(tmp_path, cases, *, with_ids=False, classes=None):
    before, after, rows_b, rows_a = [], [], [], []
    for name, (old, new, _) in cases.items():
        for i, g in enumerate(old):
            before.append(g)
            rows_b.append({"name": f"{name}_{i}", **({"class": classes[name]} if classes else {})})
        for i, g in enumerate(new):
            after.append(g)
            rows_a.append({"name": f"{name}_{i}", **({"class": classes[name]} if classes else {})})
    return write_vector(tmp_path / "before.gpkg", before, rows_b), write_vector(tmp_path / "after.gpkg", after, rows_a)


def run(tmp_path, before, after, name="out", **kw):
    return compare_outlines(before, after, str(tmp_path / f"{name}_objects.gpkg"),
                            str(tmp_path / f"{name}_changes.gpkg"), str(tmp_path / f"{name}_summary.csv"),
                            str(tmp_path / f"{name}.html"), **kw)


def by_type(result):
    return {o.match_type: o for o in result.objects}


def test_every_match_type_with_exact_areas(tmp_path):
    before, after = write_pair(tmp_path, CASES)
    result = run(tmp_path, before, after, date_before=2000, date_after="2010-01-01")
    assert result.crs_epsg == 32632
    objs = by_type(result)
    assert sorted(objs) == sorted(t for *_, t in CASES.values()) and len(result.objects) == 6
    expected = {  # (area 1, area 2) in km², exact
        "same": (1.0, 0.9), "split": (2.0, 1.8), "merged": (0.5, 0.72), "split_merged": (2.0, 1.55),
        "new": (0.0, 0.25), "vanished": (0.09, 0.0),
    }
    layer = read_features(result.objects_out)
    rows = {r["match_type"]: r for r in layer.attributes}
    for kind, (a1, a2) in expected.items():
        o = objs[kind]
        assert o.area_1_m2 / 1e6 == pytest.approx(a1, rel=1e-12, abs=1e-12)
        assert o.area_2_m2 / 1e6 == pytest.approx(a2, rel=1e-12, abs=1e-12)
        r = rows[kind]
        assert r["area_1_km2"] == pytest.approx(a1, rel=1e-12, abs=1e-12)
        assert r["change_km2"] == pytest.approx(a2 - a1, rel=1e-9, abs=1e-12)
        # gained − lost = change
        assert (result.gained_m2[o.object_id] - result.lost_m2[o.object_id]) / 1e6 == pytest.approx(a2 - a1, abs=1e-9)
        assert r["years"] == pytest.approx(10.0)
    assert (objs["split"].matched_by, objs["new"].matched_by) == ("overlap", "")
    assert (len(objs["split_merged"].before), len(objs["split_merged"].after)) == (2, 2)
    assert rows["same"]["change_pct"] == pytest.approx(-10.0)
    assert rows["same"]["rate_km2_a"] == pytest.approx(-0.01)
    assert rows["merged"]["rate_pct_a"] == pytest.approx(4.4)
    assert rows["new"]["change_pct"] is None and rows["new"]["rate_km2_a"] == pytest.approx(0.025)
    # gained and lost areas: the same glacier lost 0.1 km², gained nothing; the lakes gained 0.22
    changes = read_features(result.changes_out)
    pieces = {(r["object_id"], r["change"]): r["area_km2"] for r in changes.attributes}
    assert pieces[(objs["same"].object_id, "loss")] == pytest.approx(0.1)
    assert (objs["same"].object_id, "gain") not in pieces
    assert pieces[(objs["merged"].object_id, "gain")] == pytest.approx(0.22)
    assert pieces[(objs["vanished"].object_id, "loss")] == pytest.approx(0.09)
    # summary per class (no class field: one class "all")
    with open(result.summary_out, newline="", encoding="utf-8") as fh:
        summary = list(csv.DictReader(fh))
    assert len(summary) == 1 and summary[0]["class"] == "all"
    s = summary[0]
    assert int(s["objects"]) == 6 and int(s["count_1"]) == 7 and int(s["count_2"]) == 7
    assert all(int(s[t]) == 1 for t in ("same", "split", "merged", "split_merged", "new", "vanished"))
    assert float(s["area_1_km2"]) == pytest.approx(5.59) and float(s["area_2_km2"]) == pytest.approx(5.22)
    assert float(s["gained_km2"]) - float(s["lost_km2"]) == pytest.approx(5.22 - 5.59)
    with open(result.report_out, encoding="utf-8") as fh:
        html = fh.read()
    assert "data:image/png;base64," in html and "split_merged" in html


def test_slivers_do_not_link_and_the_threshold_is_the_rule(tmp_path):
    # earlier 1 km²; later 1.05 km² shifted so that 0.05 km² overlaps (5 % of the smaller)
    cases = {"x": ([sq(0, 1000)], [sq(950, 2000)], None)}
    before, after = write_pair(tmp_path, cases)
    types = sorted(o.match_type for o in run(tmp_path, before, after).objects)
    assert types == ["new", "vanished"]
    loose = run(tmp_path, before, after, "loose", min_overlap=0.04)
    assert [o.match_type for o in loose.objects] == ["same"]
    with pytest.raises(InputError, match="Minimum overlap"):
        run(tmp_path, before, after, "bad", min_overlap=0.0)


def test_id_matching_wins_over_overlap_and_classes_filter(tmp_path):
    # G1 moved away entirely (still the same ID), G2 and G3 swapped places
    before = write_vector(tmp_path / "b.gpkg", [sq(0, 1000), sq(2000, 3000), sq(4000, 5000), sq(6000, 6500)],
                          [{"RGIId": "G1", "class": "glacier"}, {"RGIId": "G2", "class": "glacier"},
                           {"RGIId": "G3", "class": "glacier"}, {"RGIId": "L1", "class": "lake"}])
    after = write_vector(tmp_path / "a.gpkg", [sq(50000, 50800), sq(4000, 5000), sq(2000, 2500), sq(6000, 6700)],
                         [{"RGIId": "G1", "class": "glacier"}, {"RGIId": "G2", "class": "glacier"},
                          {"RGIId": "G3", "class": "glacier"}, {"RGIId": "L1", "class": "lake"}])
    result = run(tmp_path, before, after, class_field="class", date_before=2000, date_after=2020)
    assert result.id_fields == ("RGIId", "RGIId")
    objs = {(o.cls, o.before[0].ident): o for o in result.objects}
    assert all(o.matched_by == "id" and o.match_type == "same" for o in result.objects)
    assert objs[("glacier", "G3")].area_2_m2 == 500 * 1000.0
    assert set(result.summary) == {"glacier", "lake"}
    assert result.summary["lake"]["change_km2"] == pytest.approx(0.2)
    lakes = run(tmp_path, before, after, "lakes", class_field="class", classes=["lake"])
    assert [o.cls for o in lakes.objects] == ["lake"]
    by_overlap = run(tmp_path, before, after, "overlap", match_by_id=False)
    assert sorted(o.match_type for o in by_overlap.objects) == ["new", "same", "same", "same", "vanished"]
    with pytest.raises(InputError, match="occur in neither layer"):
        run(tmp_path, before, after, "x", class_field="class", classes=["debris"])
    with pytest.raises(InputError, match="no ID field 'gid'"):
        run(tmp_path, before, after, "y", id_field="gid")


def test_dates_from_fields_and_rgi_formats(tmp_path):
    assert decimal_year("20030799") == pytest.approx(2003 + 195 / 365)  # RGI 5/6, unknown day: the 15th
    assert decimal_year("20039999") == 2003.5
    assert decimal_year("-9999999") is None and decimal_year("") is None
    assert decimal_year("2003-07-30T00:00:00") == pytest.approx(2003 + 210 / 365)
    assert decimal_year(1985) == 1985.0
    assert decimal_year("2003/07/30") == decimal_year("2003-07-30") == decimal_year(datetime.date(2003, 7, 30))
    with pytest.raises(InputError, match="not a year"):
        decimal_year("July")
    before = write_vector(tmp_path / "b.gpkg", [sq(0, 1000)], [{"src_date": "1990-01-01T00:00:00"}])
    after = write_vector(tmp_path / "a.gpkg", [sq(0, 800)], [{"src_date": "2010-01-01T00:00:00"}])
    result = run(tmp_path, before, after)
    assert result.date_fields == ("src_date", "src_date")
    row = read_features(result.objects_out).attributes[0]
    assert row["years"] == pytest.approx(20.0) and row["rate_km2_a"] == pytest.approx(-0.01)


def test_failure_leaves_no_output(tmp_path):
    before, after = write_pair(tmp_path, CASES)
    (tmp_path / "out_summary.csv").write_text("older result")
    with pytest.raises(InputError, match="not found"):
        run(tmp_path, before, str(tmp_path / "missing.gpkg"))
    assert (tmp_path / "out_summary.csv").read_text() == "older result"
    assert not (tmp_path / "out_objects.gpkg").exists()


def test_rgi5_against_rgi7_hintereisferner(shared_data, tmp_path):
    """A real two-inventory comparison: the Ötztal RGI 5 outlines against the RGI 7 glaciers of the
    Hintereisferner complex (both from 2003 imagery). Figures go to docs/compare-outlines.md."""
    rgi5 = str(shared_data / "oetztal" / "rgi_oetztal.shp")
    rgi7 = str(shared_data / "hintereisferner" / "rgi7g_hef_complex.shp")
    result = run(tmp_path, rgi5, rgi7)
    assert result.crs_epsg == 32632
    assert result.id_fields == ("RGIId", "rgi_id") and result.date_fields == ("BgnDate", "src_date")
    s = result.summary["all"]
    print("\nRGI5 -> RGI7:", {k: (round(v, 4) if isinstance(v, float) else v) for k, v in s.items()})
    for o in result.objects:
        print(o.object_id, o.match_type, [x.ident for x in o.before], [x.ident for x in o.after],
              round(o.area_1_m2 / 1e6, 3), round(o.area_2_m2 / 1e6, 3))
    assert s["count_1"] == 20 and s["count_2"] == 23
    # RGI 7 reports its own areas: ours agree to 1 % on every glacier matched one to one
    rgi7_area = {a["rgi_id"]: a["area_km2"] for a in read_features(rgi7).attributes}
    same = [o for o in result.objects if o.match_type == "same"]
    assert len(same) >= 10
    for o in same:
        assert o.area_2_m2 / 1e6 == pytest.approx(rgi7_area[o.after[0].ident], rel=0.01)
    # dates of the same summer: no rates
    rows = read_features(result.objects_out).attributes
    assert all(r["rate_km2_a"] is None and abs(r["years"]) < 1 for r in rows if r["years"] is not None)
    assert s["same"] + s["split"] + s["merged"] + s["split_merged"] + s["new"] + s["vanished"] == s["objects"]
