"""Glacier (band ratio, NDSI) and glacial-lake (NDWI) mapping on the generated scene, checked
against its truth and against indices recomputed here with numpy."""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
from scipy import ndimage

from glacierseg.core.band_ratio import map_glaciers, map_lakes, resolve_bands
from glacierseg.core.errors import InputError

from .helpers import Messages, write_vector

S2 = {"B02": 0, "B03": 1, "B04": 2, "B08": 3, "B11": 4}  # index into the scene's bands


def read(path, band=1):
    with rasterio.open(path) as ds:
        return ds.read(band)


def iou(a, b, valid):
    a, b = a & valid, b & valid
    return np.count_nonzero(a & b) / np.count_nonzero(a | b)


@pytest.fixture(scope="module")
def scene(sample_scene):
    with rasterio.open(sample_scene.image) as ds:
        image = ds.read().astype(np.float64)
    valid = (image != 0).all(axis=0)
    return sample_scene, image, valid


@pytest.fixture(scope="module")
def glaciers(scene, tmp_path_factory):
    s, _, _ = scene
    out = tmp_path_factory.mktemp("glaciers")
    return map_glaciers(s.image, str(out / "index.tif"), str(out / "classes.tif"), str(out / "outlines.gpkg"),
                        dem=s.dem)


def test_bands_found_by_name_or_number():
    assert resolve_bands(["S2:B02", "S2:B04", "S2:B11"], ["red", "swir"], "sentinel2_msi") == {"red": 2, "swir": 3}
    assert resolve_bands(["SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6"], ["red", "swir"], "landsat8_oli") == {
        "red": 3, "swir": 5}
    assert resolve_bands(["B1", "B2", "B3", "B4", "B5"], ["red", "swir"], "landsat5_tm") == {"red": 3, "swir": 5}
    # B8A is not B8; band numbers given by hand win
    assert resolve_bands(["B8A", "B08"], ["nir"], "sentinel2_msi") == {"nir": 2}
    assert resolve_bands(["B04", "B11"], ["red", "swir"], "sentinel2_msi", {"swir": 1}) == {"red": 1, "swir": 1}
    with pytest.raises(InputError, match="swir .B11.*band number"):
        resolve_bands([None, None, None], ["red", "swir"], "sentinel2_msi", {"red": 1})
    with pytest.raises(InputError, match="outside the raster's bands 1–2"):
        resolve_bands(["a", "b"], ["red"], "", {"red": 5})


def test_band_ratio_recovers_clean_ice(scene, glaciers):
    s, image, valid = scene
    truth = read(s.glacier_truth)
    classes = read(glaciers.classes)
    # nodata in any band -> nodata in the outputs; elsewhere a class
    assert np.array_equal(classes == 255, ~valid)
    index = read(glaciers.index)
    assert np.isnan(index[~valid]).all()
    ratio = image[S2["B04"]] / np.maximum(image[S2["B11"]], 1.0)  # DN scale cancels; floor = 1 DN
    assert np.allclose(index[valid], ratio[valid], rtol=1e-5)
    score = iou(classes == 1, truth == 1, valid)
    assert score >= 0.9, score
    assert glaciers.pixel_counts["clean_ice"] == np.count_nonzero(classes == 1)


def test_water_is_removed_with_ndwi(scene, glaciers, tmp_path):
    """Open water has a red/SWIR ratio above 2 too: without the NDWI mask lakes become ice."""
    s, _, valid = scene
    lakes = read(s.lake_truth) == 1
    with_mask = read(glaciers.classes) == 1
    raw = map_glaciers(s.image, str(tmp_path / "i.tif"), str(tmp_path / "c.tif"), water_ndwi=None, median=False)
    no_mask = read(raw.classes) == 1
    assert np.count_nonzero(no_mask & lakes) > 0.8 * np.count_nonzero(lakes & valid)
    assert np.count_nonzero(with_mask & lakes) < 0.05 * np.count_nonzero(lakes)


def test_blue_band_condition_only_removes_dark_pixels(scene, glaciers, tmp_path):
    s, image, _ = scene
    r = map_glaciers(s.image, str(tmp_path / "i.tif"), str(tmp_path / "c.tif"), blue_min=0.3, median=False)
    plain = map_glaciers(s.image, str(tmp_path / "i0.tif"), str(tmp_path / "c0.tif"), median=False)
    with_blue, without = read(r.classes) == 1, read(plain.classes) == 1
    removed = without & ~with_blue
    assert not (with_blue & ~without).any() and removed.any()
    assert (image[S2["B02"]][removed] * 1e-4 <= 0.3).all()
    assert (image[S2["B02"]][with_blue] * 1e-4 > 0.3).all()


def test_cancel_leaves_no_output(scene, tmp_path):
    from glacierseg.core.errors import CancelledError

    class CancelSoon:
        calls = 0

        def set_progress(self, percent):
            pass

        def push_info(self, message):
            pass

        def is_canceled(self):
            self.calls += 1
            return self.calls > 1

    s, _, _ = scene
    with pytest.raises(CancelledError):
        map_glaciers(s.image, str(tmp_path / "i.tif"), str(tmp_path / "c.tif"), progress=CancelSoon())
    assert list(tmp_path.iterdir()) == []


def test_debris_candidates_touch_clean_ice(scene, glaciers):
    s, _, valid = scene
    classes = read(glaciers.classes)
    labels, _ = ndimage.label((classes == 1) | (classes == 2), np.ones((3, 3)))
    with_ice = np.unique(labels[classes == 1])
    assert np.isin(labels[classes == 2], with_ice).all()
    truth = read(s.glacier_truth) == 2
    recall = np.count_nonzero((classes == 2) & truth) / np.count_nonzero(truth & valid)
    assert recall > 0.8, recall


def test_outlines_match_the_class_raster(glaciers):
    from osgeo import ogr

    ds = ogr.Open(glaciers.outlines.path)
    layer = ds.GetLayer(0)
    area = {1: 0.0, 2: 0.0}
    for f in layer:
        area[f.GetField("class_value")] += f.GetGeometryRef().GetArea() / 1e6
    assert glaciers.outlines.feature_count == layer.GetFeatureCount() > 0
    for c in glaciers.class_info:  # smoothing and dropping specks change areas by a few per cent
        assert area[c.value] == pytest.approx(glaciers.area_km2[c.name], rel=0.05)


def test_ndsi_alternative(scene, tmp_path):
    s, image, valid = scene
    r = map_glaciers(s.image, str(tmp_path / "i.tif"), str(tmp_path / "c.tif"), method="ndsi")
    green, swir = image[S2["B03"]][valid], image[S2["B11"]][valid]
    assert np.allclose(read(r.index)[valid], (green - swir) / (green + swir), atol=1e-6)
    assert iou(read(r.classes) == 1, read(s.glacier_truth) == 1, valid) >= 0.9
    with pytest.raises(InputError, match="NDSI threshold 1.5"):
        map_glaciers(s.image, str(tmp_path / "j.tif"), str(tmp_path / "d.tif"), method="ndsi", threshold=1.5)
    assert not (tmp_path / "j.tif").exists()


def test_ndwi_maps_the_lakes(scene, tmp_path):
    s, image, valid = scene
    r = map_lakes(s.image, str(tmp_path / "i.tif"), str(tmp_path / "c.tif"), str(tmp_path / "o.gpkg"), dem=s.dem)
    green, nir = image[S2["B03"]][valid], image[S2["B08"]][valid]
    assert np.allclose(read(r.index)[valid], (green - nir) / (green + nir), atol=1e-6)
    classes = read(r.classes)
    score = iou(classes == 1, read(s.lake_truth) == 1, valid)
    assert score >= 0.85, score
    # every kept lake reaches the minimum area (0.0054 km² = 13.5 pixels of 20 m)
    labels, n = ndimage.label(classes == 1, np.ones((3, 3)))
    assert n == 3 and np.bincount(labels.ravel())[1:].min() * 400 / 1e6 >= 0.0054
    assert r.outlines.feature_count == 3


def test_lakes_far_from_glaciers_are_dropped(scene, tmp_path):
    import shapely

    s, _, _ = scene
    base = map_lakes(s.image, str(tmp_path / "i0.tif"), str(tmp_path / "c0.tif"))
    lakes = read(base.classes) == 1
    labels, n = ndimage.label(lakes, np.ones((3, 3)))
    # a "glacier" 1 km east of the first lake's eastern end, in the image CRS
    with rasterio.open(s.image) as ds:
        rows, cols = np.nonzero(labels == 1)
        x_east, y_mid = ds.xy(int(rows.mean()), int(cols.max()))
        crs_wkt = ds.crs.to_wkt()
    glacier = shapely.box(x_east + 1000, y_mid - 100, x_east + 1200, y_mid + 100)
    path = write_vector(tmp_path / "glacier.gpkg", [glacier], crs=crs_wkt, layer="glaciers")
    near = map_lakes(s.image, str(tmp_path / "i1.tif"), str(tmp_path / "c1.tif"), glaciers=path, max_distance_m=1500)
    assert np.array_equal(read(near.classes) == 1, labels == 1)
    none = map_lakes(s.image, str(tmp_path / "i2.tif"), str(tmp_path / "c2.tif"), glaciers=path, max_distance_m=500)
    assert not (read(none.classes) == 1).any()


def test_processing_outputs_are_styled(qgis_app, glacierseg_provider, scene, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer, QgsVectorLayer

    from glacierseg.ui.styles import pending_styles

    s, _, _ = scene
    out = {k: str(tmp_path / f) for k, f in
           (("OUTPUT_INDEX", "i.tif"), ("OUTPUT_CLASSES", "c.tif"), ("OUTPUT_OUTLINES", "o.gpkg"))}
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    for key, path in out.items():
        context.addLayerToLoadOnCompletion(path, QgsProcessingContext.LayerDetails(key, QgsProject.instance(), key))
    res = processing.run("glacierseg:map_lakes", {"INPUT": s.image, "DEM": s.dem, "THRESHOLD": 0.3, **out},
                         context=context, feedback=QgsProcessingFeedback())
    assert res["OUTPUT_OUTLINES"] == out["OUTPUT_OUTLINES"] and res["AREA_GLACIAL_LAKE"] > 0
    assert set(out.values()) <= set(pending_styles())  # held until Processing has styled them
    raster = QgsRasterLayer(out["OUTPUT_CLASSES"], "classes")
    vector = QgsVectorLayer(out["OUTPUT_OUTLINES"], "outlines", "ogr")
    assert vector.featureCount() == 3
    index = QgsRasterLayer(out["OUTPUT_INDEX"], "index")
    for key, layer in (("OUTPUT_CLASSES", raster), ("OUTPUT_OUTLINES", vector), ("OUTPUT_INDEX", index)):
        post = context.layerToLoadOnCompletionDetails(out[key]).postProcessor()
        post.postProcessLayer(layer, context, QgsProcessingFeedback())
    assert not set(out.values()) & set(pending_styles())  # and let go once applied: nothing grows run after run
    assert [(c.value, c.label) for c in raster.renderer().classes()] == [(1, "glacial_lake")]
    # the class, and the catch-all category that shows hand-drawn polygons before their class is set
    assert [(c.value(), c.symbol().color().name()) for c in vector.renderer().categories()] == [
        (1, "#1f5fd1"), ("", "#e7298a")]


def test_srtm_void_value_is_no_debris_candidate(scene, glaciers, tmp_path):
    """A block of -32768 (SRTM's void value, no nodata tag) on the debris-covered tongue: with the
    DEM-void rule those cells are voids — never candidates, no cliff of slopes around them — and
    the rest of the candidates are those of the intact DEM (issue 12, D7)."""
    s, _, _ = scene
    truth = read(s.glacier_truth)
    with rasterio.open(s.dem) as ds:
        z, profile = ds.read(1), ds.profile
    rows, cols = np.nonzero(truth == 2)
    r, c = int(np.median(rows)), int(np.median(cols))
    block = np.zeros(z.shape, bool)
    block[r - 4:r + 4, c - 4:c + 4] = True
    z[block] = -32768
    profile.update(nodata=None)
    dem = str(tmp_path / "srtm_like.tif")
    with rasterio.open(dem, "w", **profile) as out:
        out.write(z, 1)

    messages = Messages()
    res = map_glaciers(s.image, str(tmp_path / "i.tif"), str(tmp_path / "c.tif"), dem=dem, progress=messages)
    classes, intact = read(res.classes), read(glaciers.classes)
    assert not (classes[block] == 2).any()
    away = ~ndimage.binary_dilation(block, iterations=2)
    assert np.array_equal(classes[away], intact[away])
    assert np.count_nonzero(intact[block] == 2) > 0  # there were candidates where the void now is
    assert sum("outside the plausible range" in m for m in messages.messages) == 1


def test_options_value_and_keywords_are_one_setting_and_messages_reach_the_log(scene, tmp_path, caplog):
    import logging

    from glacierseg.core.band_ratio import GlacierOptions, LakeOptions

    s, _, _ = scene
    with caplog.at_level(logging.INFO, logger="glacierseg"):  # no progress object: library use
        by_keywords = map_glaciers(s.image, str(tmp_path / "i0.tif"), str(tmp_path / "c0.tif"), method="ndsi",
                                   median=False)
    assert ("glacierseg.band_ratio", "Glacier mapping: NDSI > 0.6; bands green←2, swir←5, nir←4") in [
        (r.name, r.getMessage()) for r in caplog.records]
    by_value = map_glaciers(s.image, str(tmp_path / "i1.tif"), str(tmp_path / "c1.tif"),
                            options=GlacierOptions(method="ndsi", median=False))
    mixed = map_glaciers(s.image, str(tmp_path / "i2.tif"), str(tmp_path / "c2.tif"),
                         options=GlacierOptions(method="ndsi"), median=False)
    for r in (by_value, mixed):
        assert np.array_equal(read(r.classes), read(by_keywords.classes)) and r.pixel_counts == by_keywords.pixel_counts
    with pytest.raises(TypeError):
        map_glaciers(s.image, str(tmp_path / "i3.tif"), str(tmp_path / "c3.tif"), slope_max=5.0)  # a lake setting
    lakes = map_lakes(s.image, str(tmp_path / "l.tif"), str(tmp_path / "lc.tif"), options=LakeOptions(threshold=0.3))
    assert lakes.pixel_counts["glacial_lake"] > 0 and LakeOptions().min_area_km2 == 0.0054


def test_regions_joined_across_strips_are_the_whole_image_regions(monkeypatch):
    """The class decision labels strip by strip and joins regions across the seams: the same
    8-connected regions and per-region sums as labelling the whole image, on a random mask cut
    into 3-row strips (every seam crossed by many regions, diagonal contacts included)."""
    from scipy import ndimage

    from glacierseg.core import band_ratio

    monkeypatch.setattr(band_ratio, "STRIP_ROWS", 3)
    rng = np.random.default_rng(5)
    mask = rng.random((40, 37)) < 0.45
    weight = (rng.random((40, 37)) < 0.3).astype(float)
    regions = band_ratio._Regions(lambda rows: mask[rows], 40, [lambda rows: weight[rows]])
    labels, n = ndimage.label(mask, np.ones((3, 3)))
    ours = np.concatenate([regions.of_rows(slice(s0, s1)) for _, _, s0, s1 in band_ratio._strips(40, 0)])
    pairs = set(zip(ours[mask].tolist(), labels[mask].tolist()))
    assert regions.count == n == len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})
    assert not (set(ours[~mask].tolist()) & {a for a, _ in pairs})  # outside the mask: no region's id
    by_label = {b: regions.sums[0][a] for a, b in pairs}
    assert [by_label[i] for i in range(1, n + 1)] == list(ndimage.sum_labels(weight, labels, range(1, n + 1)))
