"""glacierseg:vectorize in real QGIS: exact pixel geometry, smoothing with shared boundaries,
area thresholds at their edges, geographic areas, precedence, seams, Processing, cancel."""
import os

import numpy as np
import pytest
import shapely
from scipy import ndimage

from glacierseg.core import vectorize as vz
from glacierseg.core.contract import ClassInfo, InputSpec, ModelContract
from glacierseg.core.errors import CancelledError, InputError

from .helpers import CancelAfter, write_raster

PX = 20.0  # pixel size (m); 0.01 km² = 25 pixels
PX_KM2 = PX * PX / 1e6


def shapes_mask():
    """Squares, an L, a ring with a hole, and two classes touching along a staircase."""
    a = np.zeros((64, 72), np.uint8)
    a[2:12, 2:12] = 1  # square, 100 px
    a[16:36, 2:7] = 1
    a[31:36, 7:17] = 1  # L, 150 px
    a[2:22, 24:44] = 2
    a[7:17, 29:39] = 0  # ring, 300 px, hole 100 px (0.04 km², larger than the hole threshold)
    a[30:54, 30:66] = 3
    for i in range(24):
        a[30 + i, 30 : 36 + i] = 1  # class 1 | class 3 with a staircase boundary
    return a


def expected_regions(mask):
    """(value, pixel count, boundary edge count) of every 4-connected region, computed with scipy."""
    out = []
    for v in np.unique(mask[mask != 0]):
        lab, n = ndimage.label(mask == v)
        for i in range(1, n + 1):
            reg = np.pad(lab == i, 1)
            edges = (reg[1:] != reg[:-1]).sum() + (reg[:, 1:] != reg[:, :-1]).sum()
            out.append((int(v), int(reg.sum()), int(edges)))
    return sorted(out)


def read_layer(path):
    from qgis.core import QgsVectorLayer

    layer = QgsVectorLayer(path, "outlines", "ogr")
    assert layer.isValid(), path
    return layer, [(f.attributes(), f.geometry()) for f in layer.getFeatures()]


def field(layer, feats, name):
    i = layer.fields().indexOf(name)
    return [attrs[i] for attrs, _ in feats]


def as_shapely(geoms):
    return np.array([shapely.from_wkb(bytes(g.asWkb())) for g in geoms])


def gap_area(geoms, mask):
    """Area left uncovered between regions: faces of the outlines' arrangement that no outline
    covers and that hold no background pixel centre (what smoothing takes from a region's
    background side stays in a face with background pixel centres)."""
    rows, cols = mask.shape
    frame = shapely.box(ORIGIN[0], ORIGIN[1] - rows * PX, ORIGIN[0] + cols * PX, ORIGIN[1])
    faces = shapely.get_parts(shapely.polygonize(shapely.get_parts(
        shapely.union_all(np.append(shapely.boundary(geoms), frame.exterior)))))
    covered = np.zeros(len(faces), bool)
    covered[shapely.STRtree(geoms).query(shapely.point_on_surface(faces), predicate="within")[0]] = True
    r, c = np.nonzero(mask == 0)
    x, y = ORIGIN[0] + (c + 0.5) * PX, ORIGIN[1] - (r + 0.5) * PX
    gaps = [f for f in faces[~covered] if not shapely.contains_xy(f, x, y).any()]
    return float(sum(g.area for g in gaps))


def assert_clean_coverage(geoms, mask):
    """Valid geometries, zero pairwise overlap area, matching shared edges and zero gap area
    (GEOS < 3.12 here, so no shapely.coverage_is_valid)."""
    assert all(g.isGeosValid() for g in geoms)
    for i in range(len(geoms)):
        for j in range(i + 1, len(geoms)):
            if geoms[i].boundingBoxIntersects(geoms[j]):
                inter = geoms[i].intersection(geoms[j])
                assert inter.area() < 1e-6, (i, j, inter.area())
    shp = as_shapely(geoms)
    # shared edges match vertex for vertex: each segment is used by at most two outlines, and the
    # noded union of all boundaries is no longer than the distinct segments (no partial overlaps)
    rings = shapely.get_rings(shp)
    xy, idx = shapely.get_coordinates(rings, return_index=True)
    same = idx[1:] == idx[:-1]
    seg = np.round(np.column_stack([xy[:-1][same], xy[1:][same]]), 6)
    seg = np.where((seg[:, :2] <= seg[:, 2:]).all(axis=1, keepdims=True) |
                   (seg[:, 0] < seg[:, 2])[:, None], seg, seg[:, [2, 3, 0, 1]])
    unique, counts = np.unique(seg, axis=0, return_counts=True)
    assert counts.max() <= 2
    length = np.hypot(unique[:, 2] - unique[:, 0], unique[:, 3] - unique[:, 1]).sum()
    assert shapely.union_all(shapely.boundary(shp)).length == pytest.approx(length, rel=1e-9)
    assert gap_area(shp, mask) == 0.0


def pixel_of(raster_origin, geom):
    p = geom.pointOnSurface().asPoint()
    return int((raster_origin[1] - p.y()) // PX), int((p.x() - raster_origin[0]) // PX)


ORIGIN = (630000.0, 5190000.0)


@pytest.fixture
def shapes_tif(tmp_path):
    return write_raster(tmp_path / "shapes.tif", shapes_mask(), pixel_size=PX, origin=ORIGIN)


def test_exact_pixel_areas_and_perimeters_without_smoothing(qgis_app, shapes_tif, tmp_path):
    out = str(tmp_path / "exact.gpkg")
    result = vz.vectorize(shapes_tif, out, min_area_km2=0, hole_area_km2=0, smooth_iterations=0)
    layer, feats = read_layer(out)
    got = sorted(zip(field(layer, feats, "class_value"), field(layer, feats, "area_km2"),
                     field(layer, feats, "perimeter_m")))
    want = expected_regions(shapes_mask())
    assert result.feature_count == len(feats) == len(want) == 5
    for (v, area, perim), (wv, count, edges) in zip(got, want):
        assert v == wv
        assert area == pytest.approx(count * PX_KM2, rel=1e-12)
        assert perim == pytest.approx(edges * PX, rel=1e-12)
    assert set(field(layer, feats, "class_name")) == {"class_1", "class_2", "class_3"}
    assert set(field(layer, feats, "source")) == {"shapes.tif"}
    assert all(g.isGeosValid() for _, g in feats)
    assert_clean_coverage([g for _, g in feats], shapes_mask())  # shared edges have matching vertices
    ring = [g for a, g in feats if a[layer.fields().indexOf("class_value")] == 2][0]
    assert len(ring.asPolygon()) == 2  # the hole is kept
    assert layer.crs().authid() == "EPSG:32632"


@pytest.mark.parametrize("iterations,offset,simplify", [(3, 0.25, 0.0), (5, 0.4, 0.0), (3, 0.25, 10.0)])
def test_smoothing_keeps_areas_and_shared_boundaries(qgis_app, shapes_tif, tmp_path, iterations, offset, simplify):
    out = str(tmp_path / "smooth.gpkg")
    vz.vectorize(shapes_tif, out, min_area_km2=0, hole_area_km2=0, smooth_iterations=iterations,
                 smooth_offset=offset, simplify_tolerance_m=simplify)
    layer, feats = read_layer(out)
    mask = shapes_mask()
    labels = {v: ndimage.label(mask == v)[0] for v in (1, 2, 3)}
    assert len(feats) == 5
    for (attrs, geom), value in zip(feats, field(layer, feats, "class_value")):
        r, c = pixel_of(ORIGIN, geom)
        count = int((labels[value] == labels[value][r, c]).sum())
        assert labels[value][r, c] > 0
        # Douglas-Peucker may move the line by 0.5 px
        assert geom.area() / 1e6 == pytest.approx(count * PX_KM2, rel=0.01 if simplify == 0 else 0.08)
        assert geom.area() / 1e6 == pytest.approx(attrs[layer.fields().indexOf("area_km2")], rel=1e-9)
        if simplify == 0:
            assert len(geom.asPolygon()[0]) >= 4 * 2**iterations + 1  # every corner cut 2^iterations times
    geoms = [g for _, g in feats]
    assert_clean_coverage(geoms, mask)
    # the touching pair shares one boundary: their union is one polygon without slivers or holes
    pair = [g for g, v in zip(geoms, field(layer, feats, "class_value")) if v == 3]
    pair += [g for g, v in zip(geoms, field(layer, feats, "class_value")) if v == 1 and g.intersects(pair[0])]
    assert len(pair) == 2
    union = pair[0].combine(pair[1])
    assert not union.isMultipart() and len(union.asPolygon()) == 1
    assert union.area() == pytest.approx(pair[0].area() + pair[1].area(), rel=1e-12)


def test_min_area_and_hole_thresholds_at_their_edges(qgis_app, tmp_path):
    a = np.zeros((40, 70), np.uint8)
    a[1:5, 1:7] = 1  # 24 px: under 0.01 km²
    a[1:6, 10:15] = 1  # 25 px: exactly 0.01 km²
    a[1:3, 20:33] = 1  # 26 px
    a[8:38, 1:41] = 2  # 1200 px host with three holes and one occupied hole
    a[10:14, 3:9] = 0  # hole 24 px -> filled
    a[10:15, 12:17] = 0  # hole 25 px -> stays
    a[10:12, 20:33] = 0  # hole 26 px -> stays
    a[20:25, 3:7] = 0  # hole 20 px holding a small lake ...
    a[21:23, 4:6] = 3  # ... of 4 px (kept with min area 0): the hole is not filled
    path = write_raster(tmp_path / "edges.tif", a, pixel_size=PX, origin=ORIGIN)
    out = str(tmp_path / "edges.gpkg")
    res = vz.vectorize(path, out, min_area_km2=0.01, hole_area_km2=0.01, smooth_iterations=0)
    layer, feats = read_layer(out)
    areas = sorted(round(x / PX_KM2, 6) for x in field(layer, feats, "area_km2"))
    # 24 px square and 4 px lake dropped, so the 20 px hole holds only background: it and the
    # 24 px hole are filled; holes of 25 px (= the threshold) and 26 px stay
    assert areas == [25, 26, 1200 - 25 - 26]
    assert (res.removed_small, res.filled_holes) == (2, 2)
    res = vz.vectorize(path, out, min_area_km2=0, hole_area_km2=0.01, smooth_iterations=0)
    areas = sorted(round(x / PX_KM2, 6) for x in field(*read_layer(out), "area_km2"))
    assert areas == [4, 24, 25, 26, 1200 - 25 - 26 - 20]  # the hole holding the lake stays
    res = vz.vectorize(path, out, min_area_km2=0, hole_area_km2=0, smooth_iterations=0)
    areas = sorted(round(x / PX_KM2, 6) for x in field(*read_layer(out), "area_km2"))
    assert areas == [4, 24, 25, 26, 1200 - 24 - 25 - 26 - 20] and res.filled_holes == 0


def test_geographic_raster_areas_match_projected(qgis_app, tmp_path):
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsProject

    path = write_raster(tmp_path / "geo.tif", shapes_mask(), crs="EPSG:4326", pixel_size=0.0003, origin=(9.5, 46.5))
    out = str(tmp_path / "geo.gpkg")
    vz.vectorize(path, out, min_area_km2=0, hole_area_km2=0)
    layer, feats = read_layer(out)
    to_utm = QgsCoordinateTransform(layer.crs(), QgsCoordinateReferenceSystem("EPSG:32632"), QgsProject.instance())
    assert len(feats) == 5
    for (attrs, geom), area in zip(feats, field(layer, feats, "area_km2")):
        g = type(geom)(geom)
        g.transform(to_utm)
        assert area == pytest.approx(g.area() / 1e6, rel=0.005)
        assert attrs[layer.fields().indexOf("perimeter_m")] == pytest.approx(g.length(), rel=0.005)


def test_multiband_overlap_resolved_by_precedence(qgis_app, tmp_path):
    probs = np.zeros((2, 30, 30), np.float32)
    probs[0, 2:20, 2:20] = 0.9  # glacier
    probs[1, 10:28, 10:28] = 0.7  # lake, overlapping the glacier on 10:20 x 10:20
    path = write_raster(tmp_path / "probs.tif", probs, pixel_size=PX, origin=ORIGIN)
    classes = [ClassInfo("glacier", 1, "#66ccff"), ClassInfo("glacial_lake", 2, "#0033cc")]
    out = str(tmp_path / "prec.gpkg")
    vz.vectorize(path, out, classes, precedence=["glacial_lake"], min_area_km2=0, smooth_iterations=0)
    layer, feats = read_layer(out)
    got = dict(zip(field(layer, feats, "class_name"), field(layer, feats, "area_km2")))
    assert got == pytest.approx({"glacier": (324 - 100) * PX_KM2, "glacial_lake": 324 * PX_KM2})
    with pytest.raises(InputError, match="one class per band"):
        vz.vectorize(path, out, classes[:1])


def test_multiband_probabilities_decided_with_the_models_thresholds(qgis_app, tmp_path):
    glacier, lake = ClassInfo("glacier", 1, "#66ccff"), ClassInfo("glacial_lake", 2, "#0033cc")
    probs = np.zeros((2, 30, 30), np.float32)
    probs[0, 2:12, 2:12] = 0.9
    probs[0, 15:25, 2:12] = 0.6  # below the glacier threshold of 0.7
    probs[1, 2:12, 15:25] = 0.4  # above the lake threshold of 0.3
    path = write_raster(tmp_path / "independent.tif", probs, pixel_size=PX, origin=ORIGIN)
    out = str(tmp_path / "independent.gpkg")
    vz.vectorize(path, out, [glacier, lake], thresholds={"glacier": 0.7, "glacial_lake": 0.3},
                 min_area_km2=0, smooth_iterations=0)
    layer, feats = read_layer(out)
    assert len(feats) == 2
    assert dict(zip(field(layer, feats, "class_name"), field(layer, feats, "area_km2"))) == pytest.approx(
        {"glacial_lake": 100 * PX_KM2, "glacier": 100 * PX_KM2})
    with pytest.raises(InputError, match="unknown class"):
        vz.vectorize(path, out, [glacier, lake], thresholds={"debris": 0.5})

    # exclusive classes (background band first): the most probable class, even under 0.5
    soft = np.zeros((3, 20, 20), np.float32)
    soft[0] = 1.0
    soft[:, 3:13, 3:13] = np.array([0.25, 0.4, 0.35])[:, None, None]  # glacier most probable
    soft[:, 3:13, 13:18] = np.array([0.3, 0.3, 0.4])[:, None, None]  # lake most probable
    path = write_raster(tmp_path / "exclusive.tif", soft, pixel_size=PX, origin=ORIGIN)
    out = str(tmp_path / "exclusive.gpkg")
    vz.vectorize(path, out, [ClassInfo("background", 0, "#000000"), glacier, lake], min_area_km2=0, smooth_iterations=0)
    layer, feats = read_layer(out)
    assert len(feats) == 2
    assert dict(zip(field(layer, feats, "class_name"), field(layer, feats, "area_km2"))) == pytest.approx(
        {"glacial_lake": 50 * PX_KM2, "glacier": 100 * PX_KM2})


def test_block_seams_and_batches_are_seamless(qgis_app, tmp_path, monkeypatch):
    rng = np.random.default_rng(3)
    field_ = ndimage.gaussian_filter(rng.standard_normal((90, 110)), 3)
    mask = np.digitize(field_, np.quantile(field_, [0.3, 0.55, 0.8])).astype(np.uint8)  # 0..3, many regions
    path = write_raster(tmp_path / "blobs.tif", mask, pixel_size=PX, origin=ORIGIN)
    want = expected_regions(mask)
    for block, batch in ((2048, 10**6), (16, 60)):  # small blocks and batches: seams and batch edges
        monkeypatch.setattr(vz, "BLOCK_PX", block)
        monkeypatch.setattr(vz, "BATCH_EDGES", batch)
        for it in (0, 3):
            out = str(tmp_path / f"blobs_{block}_{it}.gpkg")
            vz.vectorize(path, out, min_area_km2=0, hole_area_km2=0, smooth_iterations=it, simplify_tolerance_m=0)
            layer, feats = read_layer(out)
            assert len(feats) == len(want)
            if it == 0:
                got = sorted(zip(field(layer, feats, "class_value"), field(layer, feats, "area_km2")))
                assert [(v, round(a / PX_KM2, 6)) for v, a in got] == [(v, c) for v, c, _ in want]
            else:
                assert_clean_coverage([g for _, g in feats], mask)


def test_regions_joined_across_block_seams_equal_unblocked_polygons(tmp_path, monkeypatch):
    """Seam joining (edge cancellation and ring linking) against GDAL polygonize of the whole
    raster: same regions, identical point sets, valid, on masks full of holes, rings and
    regions touching themselves at corners."""
    import rasterio

    from glacierseg.core.progress import ensure_progress

    rng = np.random.default_rng(11)
    masks = [((rng.random((37, 45)) < 0.55) * rng.integers(1, 4, (37, 45))).astype(np.uint8),
             (rng.random((41, 33)) < 0.6).astype(np.uint8)]
    blobs = ndimage.gaussian_filter(rng.standard_normal((50, 61)), 2)
    masks.append(np.digitize(blobs, np.quantile(blobs, [0.3, 0.6, 0.8])).astype(np.uint8))

    def polygons(path, block):
        monkeypatch.setattr(vz, "BLOCK_PX", block)
        with rasterio.open(path) as src:
            values, geoms, nodes = vz._polygonize(src, lambda w: vz._class_codes(src, w, [], (), {}, 0), 0,
                                                   ensure_progress(None))
        b = shapely.bounds(geoms)
        by = np.lexsort((shapely.area(geoms), b[:, 1], b[:, 0], values))
        return values[by], geoms[by], nodes

    for i, mask in enumerate(masks):
        path = write_raster(tmp_path / f"m{i}.tif", mask, pixel_size=PX, origin=ORIGIN)
        want_values, want, want_nodes = polygons(path, 4096)
        assert len(want) == len(expected_regions(mask))
        for block, join_points in ((3, 10**6), (7, 40), (16, 10**6)):  # 40: regions rebuilt in many batches
            monkeypatch.setattr(vz, "JOIN_POINTS", join_points)
            values, got, nodes = polygons(path, block)
            assert shapely.is_valid(got).all()
            np.testing.assert_array_equal(values, want_values)
            np.testing.assert_array_equal(nodes, want_nodes)
            assert shapely.area(shapely.symmetric_difference(got, want)).max() == 0
            assert (shapely.get_num_interior_rings(got) == shapely.get_num_interior_rings(want)).all()


def test_regions_touching_a_seam_without_joining_across_it(tmp_path, monkeypatch):
    """Regions that end on a block seam where another class (or nothing of theirs) begins: no
    piece joins across the seam, and every region comes out whole (an IndexError once)."""
    import rasterio

    from glacierseg.core.progress import ensure_progress

    mask = np.ones((6, 8), np.uint8)
    mask[:, 4:] = 2  # class 1 | class 2, the boundary on the column seam of 4-px blocks
    mask[4:, :] = 0  # background below the row seam
    path = write_raster(tmp_path / "seam.tif", mask, pixel_size=PX, origin=ORIGIN)
    monkeypatch.setattr(vz, "BLOCK_PX", 4)
    with rasterio.open(path) as src:
        values, geoms, _ = vz._polygonize(src, lambda w: vz._class_codes(src, w, [], (), {}, 0), 0,
                                          ensure_progress(None))
    assert sorted(values.tolist()) == [1, 2]
    assert sorted(np.round(shapely.area(geoms), 6).tolist()) == [16.0, 16.0]  # 4 x 4 pixels each
    assert shapely.is_valid(geoms).all()


@pytest.mark.parametrize("iterations,simplify,block", [(0, 0.0, 2048), (3, 0.0, 2048), (2, 15.0, 2048), (3, 0.0, 9)])
def test_salt_and_pepper_mask_with_diagonal_contacts(qgis_app, tmp_path, monkeypatch, iterations, simplify, block):
    """Single pixels and pixels touching only at corners: the hardest case for topology, also
    with block seams every 9 pixels."""
    monkeypatch.setattr(vz, "BLOCK_PX", block)
    rng = np.random.default_rng(7)
    mask = ((rng.random((40, 50)) < 0.5) * rng.integers(1, 4, (40, 50))).astype(np.uint8)
    path = write_raster(tmp_path / "noise.tif", mask, pixel_size=PX, origin=ORIGIN)
    out = str(tmp_path / "noise.gpkg")
    vz.vectorize(path, out, min_area_km2=0, hole_area_km2=0, smooth_iterations=iterations,
                 simplify_tolerance_m=simplify)
    layer, feats = read_layer(out)
    assert len(feats) == len(expected_regions(mask))
    assert_clean_coverage([g for _, g in feats], mask)


def test_through_processing_with_class_table_and_style(qgis_app, glacierseg_provider, shapes_tif, tmp_path):
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject

    contract = ModelContract(
        task="glacier", name="alps-unet",
        classes=(ClassInfo("clean_ice", 1, "#a6e1ff"), ClassInfo("glacial_lake", 2, "#1f4fff"),
                 ClassInfo("debris_ice", 3, "#8c6d46")),
        bands=(InputSpec("S2:B03", scale=1e-4),), resolution_m=20.0, tile_size=256, activation="softmax",
        thresholds={}, receptive_field_px=32)
    table = str(tmp_path / "model.json")
    contract.to_json_file(table)
    out = str(tmp_path / "proc.gpkg")
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    context.addLayerToLoadOnCompletion(
        out, QgsProcessingContext.LayerDetails("outlines", QgsProject.instance(), "OUTPUT"))
    res = processing.run("glacierseg:vectorize", {"INPUT": shapes_tif, "CLASS_TABLE": table, "MIN_AREA": 0.045,
                                                  "OUTPUT": out}, context=context, feedback=QgsProcessingFeedback())
    assert res["OUTPUT"] == out and res["FEATURE_COUNT"] == 4  # the 100 px (0.04 km²) square dropped
    layer, feats = read_layer(out)
    assert sorted(set(field(layer, feats, "class_name"))) == ["clean_ice", "debris_ice", "glacial_lake"]
    assert set(field(layer, feats, "source")) == {"shapes.tif; model alps-unet"}
    # the style Processing applies when it loads the output: one category per class, class colours
    post = context.layerToLoadOnCompletionDetails(out).postProcessor()
    post.postProcessLayer(layer, context, QgsProcessingFeedback())
    cats = {c.value(): c.symbol().color().name() for c in layer.renderer().categories()}
    assert cats == {1: "#a6e1ff", 2: "#1f4fff", 3: "#8c6d46", "": "#e7298a"}  # "": catch-all for new polygons


@pytest.mark.slow
def test_qgis_process_run(qgis_process, shapes_tif, tmp_path):
    out = str(tmp_path / "cli.gpkg")
    rc, result, output = qgis_process.run("glacierseg:vectorize", INPUT=shapes_tif, MIN_AREA=0, OUTPUT=out)
    assert rc == 0, output
    assert result["results"]["FEATURE_COUNT"] == 5
    assert os.path.exists(out)


@pytest.mark.parametrize("calls", [0, 2, 4])  # 4: the last check, after the file is written
def test_cancel_leaves_no_output(qgis_app, shapes_tif, tmp_path, calls):
    out = tmp_path / "cancel" / "c.gpkg"
    with pytest.raises(CancelledError):
        vz.vectorize(shapes_tif, str(out), min_area_km2=0, progress=CancelAfter(calls))
    assert not out.exists()
    assert not out.parent.exists() or os.listdir(out.parent) == []


def test_cancel_through_processing_feedback(qgis_app, glacierseg_provider, shapes_tif, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class Feedback(QgsProcessingFeedback):
        calls = 3

        def isCanceled(self):  # noqa: N802
            Feedback.calls -= 1
            return Feedback.calls < 0

    out = tmp_path / "pc.gpkg"
    with pytest.raises(QgsProcessingException, match="cancelled"):
        processing.run("glacierseg:vectorize", {"INPUT": shapes_tif, "OUTPUT": str(out)}, feedback=Feedback())
    assert not out.exists() and not [f for f in os.listdir(tmp_path) if "pc" in f]


def test_input_errors_say_how_to_fix(qgis_app, tmp_path):
    path = write_raster(tmp_path / "float.tif", np.full((8, 8), 0.4, np.float32), pixel_size=PX, origin=ORIGIN)
    with pytest.raises(InputError, match="not a class raster"):
        vz.vectorize(path, str(tmp_path / "o.gpkg"))
    with pytest.raises(InputError, match="ending in .gpkg"):
        vz.vectorize(path, str(tmp_path / "o.shp"))
    with pytest.raises(InputError, match="between 0 and 0.5"):
        vz.vectorize(path, str(tmp_path / "o.gpkg"), smooth_offset=0.7)
    assert not (tmp_path / "o.gpkg").exists()


def test_onnx_model_as_class_table(qgis_app, sample_model, shapes_tif, tmp_path):
    from glacierseg.core.contract import read_contract

    contract = vz.load_class_table(sample_model)
    assert contract == read_contract(sample_model)
    messages = []

    class Progress(CancelAfter):
        def push_info(self, message):
            messages.append(message)

    out = str(tmp_path / "model.gpkg")
    res = vz.vectorize(shapes_tif, out, contract.classes, min_area_km2=0, progress=Progress(10**6))
    layer, feats = read_layer(out)
    names = {c.value: c.name for c in contract.classes}
    for value, name in zip(field(layer, feats, "class_value"), field(layer, feats, "class_name")):
        assert name == names.get(value, f"class_{value}")
    unnamed = sorted({1, 2, 3} - set(names))
    assert bool(unnamed) == any("not in the class table" in m for m in messages)
    assert [c.value for c in res.classes] == [1, 2, 3]


def test_options_value_equals_keywords_and_validates_itself(qgis_app, shapes_tif, tmp_path):
    """``VectorizeOptions`` is the keywords as one value: same output; keywords override it;
    each setting is checked by the options themselves, before any file is touched."""
    options = vz.VectorizeOptions(min_area_km2=0, hole_area_km2=0, smooth_iterations=2, layer_name="o")
    a, b = str(tmp_path / "a.gpkg"), str(tmp_path / "b.gpkg")
    ra = vz.vectorize(shapes_tif, a, None, options)
    rb = vz.vectorize(shapes_tif, b, min_area_km2=0, hole_area_km2=0, smooth_iterations=2, layer_name="o")
    (_, fa), (_, fb) = read_layer(a), read_layer(b)
    assert ra.feature_count == rb.feature_count == len(fa) == len(fb) > 0
    assert [(attrs, g.asWkt()) for attrs, g in fa] == [(attrs, g.asWkt()) for attrs, g in fb]
    assert vz.vectorize(shapes_tif, str(tmp_path / "c.gpkg"), None, options, layer_name="c").layer_name == "c"
    for bad, message in (({"smooth_iterations": 11}, "from 0 to 10"), ({"smooth_iterations": 1.5}, "integer"),
                         ({"smooth_offset": -0.1}, "between 0 and 0.5"),
                         ({"hole_area_km2": float("nan")}, "hole_area_km2"),
                         ({"simplify_tolerance_m": -1}, "simplify_tolerance_m"), ({"layer_name": ""}, "layer_name")):
        with pytest.raises(InputError, match=message):
            vz.VectorizeOptions(**bad).validate()
        with pytest.raises(InputError, match=message):
            vz.vectorize(shapes_tif, str(tmp_path / "bad.gpkg"), None, options, **bad)
    assert not (tmp_path / "bad.gpkg").exists()
    with pytest.raises(TypeError):
        vz.vectorize(shapes_tif, str(tmp_path / "bad.gpkg"), min_area=0)  # misspelt setting: no silent default
