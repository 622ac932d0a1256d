"""glacierseg:evaluate and its core: scores on the generated scene checked against confusion
counts computed here with numpy, polygon and raster references, area of interest, resolution,
per-object matching, and all three algorithms run through qgis_process."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from glacierseg.core.band_ratio import map_glaciers, map_lakes
from glacierseg.core.errors import InputError
from glacierseg.core.evaluate import evaluate

from .helpers import write_vector


def read(path):
    with rasterio.open(path) as ds:
        return ds.read(1)


def counts(pred, ref, valid):
    p, r = pred[valid], ref[valid]
    tp = int(np.count_nonzero(p & r))
    return tp, int(np.count_nonzero(p & ~r)), int(np.count_nonzero(~p & r)), int(np.count_nonzero(~p & ~r))


def write_polygons(path, raster, crs, transform, field="kind"):
    """Polygons of the non-zero regions of ``raster`` (pixel-exact) with their value in ``field``."""
    import shapely
    from rasterio.features import shapes

    found = [(shapely.geometry.shape(geom), {field: int(value)})
             for geom, value in shapes(raster, mask=(raster > 0) & (raster < 255), transform=transform)]
    write_vector(path, [g for g, _ in found], [row for _, row in found], crs=crs.to_wkt(), layer="reference")
    return str(path), len(found)


@pytest.fixture(scope="module")
def mapped(sample_scene, tmp_path_factory):
    out = tmp_path_factory.mktemp("mapped")
    s = sample_scene
    g = map_glaciers(s.image, str(out / "gi.tif"), str(out / "gc.tif"), dem=s.dem)
    lk = map_lakes(s.image, str(out / "li.tif"), str(out / "lc.tif"), dem=s.dem)
    return g, lk, out


def test_scores_on_the_scene_match_numpy(sample_scene, mapped, tmp_path):
    g, lk, _ = mapped
    pred, truth = read(g.classes), read(sample_scene.glacier_truth)
    valid = (pred != 255) & (truth != 255)
    result = evaluate(g.classes, sample_scene.glacier_truth, str(tmp_path / "scores.csv"))
    clean = result.row("class 1")
    assert (clean.scores.tp, clean.scores.fp, clean.scores.fn, clean.scores.tn) == counts(pred == 1, truth == 1, valid)
    tp, fp, fn, _ = counts(pred == 1, truth == 1, valid)
    assert clean.scores.iou == pytest.approx(tp / (tp + fp + fn)) and clean.scores.iou >= 0.9
    everything = result.row("all")
    assert (everything.scores.tp, everything.scores.fp) == counts(pred > 0, truth > 0, valid)[:2]
    assert np.isclose(result.accuracy, np.count_nonzero((pred == truth) & valid) / np.count_nonzero(valid))
    with open(tmp_path / "scores.csv", newline="") as fh:
        rows = {r["class"]: r for r in csv.DictReader(fh)}
    assert float(rows["class 1"]["iou"]) == pytest.approx(clean.scores.iou, rel=1e-7)
    assert float(rows["class 2"]["asd_m"]) == pytest.approx(20.0 * float(rows["class 2"]["asd_px"]), rel=1e-6)

    lakes, lake_truth = read(lk.classes), read(sample_scene.lake_truth)
    valid = (lakes != 255) & (lake_truth != 255)
    lake = evaluate(lk.classes, sample_scene.lake_truth).row("class 1").scores
    tp, fp, fn, tn = counts(lakes == 1, lake_truth == 1, valid)
    assert (lake.tp, lake.fp, lake.fn, lake.tn) == (tp, fp, fn, tn)
    assert lake.iou == pytest.approx(tp / (tp + fp + fn)) and lake.iou >= 0.85


def test_polygon_reference_and_objects(sample_scene, mapped, tmp_path):
    _, lk, _ = mapped
    truth = read(sample_scene.lake_truth)
    with rasterio.open(sample_scene.lake_truth) as ds:
        ref_path, n_polygons = write_polygons(tmp_path / "lakes.gpkg", truth, ds.crs, ds.transform)
    by_raster = evaluate(lk.classes, sample_scene.lake_truth).row("class 1").scores
    # pixel-exact polygons burnt back by pixel centre give the same pixels as the raster
    result = evaluate(lk.classes, ref_path, reference_field="kind", per_object=True)
    by_polygons = result.row("class 1").scores
    assert (by_polygons.tp, by_polygons.fp, by_polygons.fn) == (by_raster.tp, by_raster.fp, by_raster.fn)
    assert len(result.objects) == n_polygons == 3
    pred = read(lk.classes) == 1
    comps, _ = ndimage.label(pred, np.ones((3, 3)))
    refs, _ = ndimage.label(truth == 1, np.ones((3, 3)))
    expected = []
    for k in range(1, 4):
        obj = refs == k
        ious = [np.count_nonzero(obj & (comps == c)) / np.count_nonzero(obj | (comps == c))
                for c in np.unique(comps[obj]) if c]
        expected.append(max(ious, default=0.0))
    assert sorted(o.iou for o in result.objects) == pytest.approx(sorted(expected))
    o = result.objects[0]
    assert o.as_dict()["area_difference_pct"] == pytest.approx(100 * (o.predicted_km2 - o.reference_km2) / o.reference_km2)


def test_reference_in_another_crs_is_warped_onto_the_prediction_grid(sample_scene, mapped, tmp_path):
    from rasterio.warp import Resampling, calculate_default_transform, reproject

    g, _, _ = mapped
    same_grid = evaluate(g.classes, sample_scene.glacier_truth).row("class 1").scores.iou
    with rasterio.open(sample_scene.glacier_truth) as src:
        transform, width, height = calculate_default_transform(src.crs, "EPSG:3857", src.width, src.height, *src.bounds)
        profile = dict(src.profile, crs="EPSG:3857", transform=transform, width=width, height=height)
        with rasterio.open(tmp_path / "truth_3857.tif", "w", **profile) as dst:
            reproject(rasterio.band(src, 1), rasterio.band(dst, 1), resampling=Resampling.nearest)
    warped = evaluate(g.classes, str(tmp_path / "truth_3857.tif"))
    assert warped.grid.width == 512 and warped.row("class 1").scores.iou == pytest.approx(same_grid, abs=0.01)


def test_area_of_interest_and_resolution(sample_scene, mapped, tmp_path):
    g, _, _ = mapped
    pred, truth = read(g.classes), read(sample_scene.glacier_truth)
    with rasterio.open(g.classes) as ds:
        half = np.zeros(pred.shape, np.uint8)
        half[:, : pred.shape[1] // 2] = 1
        aoi, _ = write_polygons(tmp_path / "aoi.gpkg", half, ds.crs, ds.transform)
        outlines, n = write_polygons(tmp_path / "pred.gpkg", np.where(pred == 255, 0, pred), ds.crs, ds.transform,
                                     field="class_value")
    valid = (pred != 255) & (truth != 255) & (half == 1)
    s = evaluate(g.classes, sample_scene.glacier_truth, aoi=aoi).row("class 1").scores
    assert (s.tp, s.fp, s.fn, s.tn) == counts(pred == 1, truth == 1, valid)
    # the same polygons on both sides, at twice the resolution over their extent: perfect scores
    same = evaluate(outlines, outlines, resolution=10.0)
    rows, cols = np.nonzero((pred == 1) | (pred == 2))
    assert (same.grid.width, same.grid.height) == (2 * (np.ptp(cols) + 1), 2 * (np.ptp(rows) + 1))
    assert same.row("all").scores.iou == 1.0 and same.row("class 2").asd_px == 0.0
    with pytest.raises(InputError, match="set the resolution"):
        evaluate(outlines, outlines)
    with pytest.raises(InputError, match="no field 'nope'"):
        evaluate(g.classes, outlines, reference_field="nope")


@pytest.mark.slow
def test_all_three_algorithms_through_qgis_process(qgis_process, sample_scene, tmp_path):
    """Outlines included: shapely must share QGIS's GEOS for them to work inside qgis_process."""
    s = sample_scene
    rc, result, output = qgis_process.run(
        "glacierseg:map_glaciers_band_ratio", INPUT=s.image, DEM=s.dem, OUTPUT_INDEX=tmp_path / "gi.tif",
        OUTPUT_CLASSES=tmp_path / "gc.tif", OUTPUT_OUTLINES=tmp_path / "go.gpkg")
    assert rc == 0, output
    assert result["results"]["OUTPUT_OUTLINES"] == str(tmp_path / "go.gpkg") and (tmp_path / "go.gpkg").exists()
    assert result["results"]["AREA_CLEAN_ICE"] > 0
    rc, result, output = qgis_process.run(
        "glacierseg:map_lakes", INPUT=s.image, DEM=s.dem, OUTPUT_INDEX=tmp_path / "li.tif",
        OUTPUT_CLASSES=tmp_path / "lc.tif", OUTPUT_OUTLINES=tmp_path / "lo.gpkg")
    assert rc == 0, output
    assert (tmp_path / "lo.gpkg").exists()
    for classes, truth, minimum in ((tmp_path / "gc.tif", s.glacier_truth, 0.9), (tmp_path / "lc.tif", s.lake_truth, 0.85)):
        table = tmp_path / f"{classes.stem}.csv"
        rc, result, output = qgis_process.run("glacierseg:evaluate", PREDICTION=classes, REFERENCE=truth, OUTPUT_TABLE=table)
        assert rc == 0, output
        assert "class 1: IoU" in output  # the summary in the log
        pred, ref = read(classes), read(truth)
        valid = (pred != 255) & (ref != 255)
        tp, fp, fn, _ = counts(pred == 1, ref == 1, valid)
        with open(table, newline="") as fh:
            rows = {r["class"]: r for r in csv.DictReader(fh)}
        assert float(rows["class 1"]["iou"]) == pytest.approx(tp / (tp + fp + fn), rel=1e-7)
        assert float(rows["class 1"]["iou"]) >= minimum
        tp, fp, fn, _ = counts(pred > 0, ref > 0, valid)
        assert result["results"]["IOU"] == pytest.approx(tp / (tp + fp + fn))
    # polygons as the reference: the lake truth as pixel-exact polygons gives the raster's scores
    with rasterio.open(s.lake_truth) as ds:
        polygons, _ = write_polygons(tmp_path / "lakes.gpkg", ds.read(1), ds.crs, ds.transform)
    rc, result, output = qgis_process.run("glacierseg:evaluate", PREDICTION=tmp_path / "lc.tif", REFERENCE=polygons,
                                          REFERENCE_FIELD="kind", OUTPUT_TABLE=tmp_path / "poly.csv")
    assert rc == 0, output
    pred, ref = read(tmp_path / "lc.tif"), read(s.lake_truth)
    tp, fp, fn, _ = counts(pred == 1, ref == 1, pred != 255)
    assert result["results"]["IOU"] == pytest.approx(tp / (tp + fp + fn))
