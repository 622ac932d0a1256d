"""glacierseg:split_glaciers on a generated two-glacier valley and on Hintereisferner (real data).

The generated DEM (core.sample_data.terrain) has two valley glaciers flowing west and east
from one col at the centre column: one complex whose ice divide is the col.
"""
from __future__ import annotations

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Geod
from rasterio.features import shapes
from rasterio.transform import from_origin

from .helpers import Messages, reproject, write_raster, write_vector

SIZE, PIXEL = 256, 40.0  # a 10.24 km square
GEOD = Geod(ellps="WGS84")


def _read(path):
    from osgeo import ogr

    ds = ogr.Open(str(path))
    lyr = ds.GetLayer(0)
    epsg = lyr.GetSpatialRef().GetAuthorityCode(None)
    rows = [({k: f.GetField(k) for k in f.keys()}, shapely.from_wkb(bytes(f.GetGeometryRef().ExportToWkb())))
            for f in lyr]
    return rows, epsg


@pytest.fixture(scope="module")
def valley(tmp_path_factory):
    """DEM (UTM 32N GeoTIFF), the complex in UTM, and files of it in EPSG:4326."""
    from glacierseg.core.sample_data import CRS, ORIGIN, terrain

    d = tmp_path_factory.mktemp("valley")
    t = terrain(SIZE, PIXEL)
    transform = from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL)
    dem = str(d / "dem.tif")
    with rasterio.open(dem, "w", driver="GTiff", width=SIZE, height=SIZE, count=1, dtype="float32",
                       crs=CRS, transform=transform, nodata=-9999) as dst:
        dst.write(t["dem"], 1)
    east_dem = str(d / "dem_east.tif")  # covers only the eastern half
    with rasterio.open(east_dem, "w", driver="GTiff", width=SIZE // 2, height=SIZE, count=1, dtype="float32",
                       crs=CRS, transform=transform * rasterio.Affine.translation(SIZE // 2, 0), nodata=-9999) as dst:
        dst.write(t["dem"][:, SIZE // 2:], 1)
    parts = [shapely.geometry.shape(g) for g, v in shapes(t["glacier"].astype("uint8"), transform=transform) if v == 1]
    complex_utm = max(parts, key=lambda p: p.area)
    col_x = ORIGIN[0] + SIZE * PIXEL / 2  # the col: the valley floor is highest at the centre column
    west_utm = complex_utm.intersection(shapely.box(0, 0, col_x - 800.0, 1e8))
    complex_ll = reproject(complex_utm, CRS, "EPSG:4326")
    return {
        "dem": dem, "east_dem": east_dem, "crs": CRS, "col_x": col_x, "complex_utm": complex_utm,
        "west_utm": west_utm, "complex_ll": complex_ll,
        "outlines": write_vector(d / "complex.gpkg", [shapely.multipolygons([complex_ll])], [{"name": "valley"}],
                                 crs="EPSG:4326", layer="outlines"),
    }


def _iou(a, b):
    return a.intersection(b).area / a.union(b).area


def _assert_partition(glaciers, whole):
    union = shapely.union_all(glaciers)
    assert abs(union.area - whole.area) / whole.area < 1e-3
    overlap = sum(g.area for g in glaciers) - union.area
    assert overlap / whole.area < 1e-6


def test_two_valley_glaciers_split_at_the_col(valley):
    from glacierseg.core.dem_split import split_complex

    res = split_complex(valley["complex_ll"], "EPSG:4326", valley["dem"], "valley")
    assert res.epsg == 32632
    glaciers = res.glaciers  # in UTM 32N, the DEM's CRS here
    assert len(glaciers) == 2
    whole = valley["complex_utm"]
    _assert_partition(glaciers, whole)
    west = whole.intersection(shapely.box(0, 0, valley["col_x"], 1e8))
    east = whole.intersection(shapely.box(valley["col_x"], 0, 1e7, 1e8))
    ious = sorted([max(_iou(g, west), _iou(g, east)) for g in glaciers])
    assert ious[0] > 0.9
    assert {_iou(g, west) > 0.9 for g in glaciers} == {True, False}  # one glacier each side
    assert len(res.divides) == 1
    divide = res.divides[0][2]
    xs = shapely.get_coordinates(divide)[:, 0]
    assert abs(xs.mean() - valley["col_x"]) < 4 * PIXEL
    width_at_col = whole.intersection(shapely.LineString([(valley["col_x"], 0), (valley["col_x"], 1e8)])).length
    assert 0.9 * width_at_col < divide.length < 2.0 * width_at_col  # crosses the glacier at the col


def test_single_drainage_complex_stays_one(valley):
    from glacierseg.core.dem_split import split_complex

    res = split_complex(valley["west_utm"], valley["crs"], valley["dem"], "west")
    assert len(res.glaciers) == 1
    assert res.divides == []
    assert abs(res.glaciers[0].area - valley["west_utm"].area) / valley["west_utm"].area < 1e-6


def test_flow_leaving_the_grid_on_a_steep_slope(tmp_path):
    """On a 56° plane with a shallow gutter the flow leaves the gutter and reaches the grid's
    edge (a pysheds catchment traced from an edge cell reads outside the array)."""
    from glacierseg.core.dem_split import SplitParameters, split_complex

    n = 120
    rows = np.arange(n, dtype=np.float32)[:, None].repeat(n, 1)
    dem = str(tmp_path / "steep.tif")
    with rasterio.open(dem, "w", driver="GTiff", width=n, height=n, count=1, dtype="float32", crs="EPSG:32632",
                       transform=from_origin(600000, 5200000, 40, 40)) as dst:
        dst.write(5000.0 - 1.5 * 40.0 * rows, 1)  # falls 1.5 m per metre southwards
    glacier = shapely.box(601000, 5197000, 602500, 5198000)
    res = split_complex(glacier, "EPSG:32632", dem, "steep", SplitParameters(gutter_depth_m=20.0))
    _assert_partition(res.glaciers, glacier)


def test_dem_not_covering_complex_names_it(valley):
    from glacierseg.core.dem_split import split_complex
    from glacierseg.core.errors import InputError

    with pytest.raises(InputError, match=r"does not cover glacier complex 'valley'.*Use a DEM that covers"):
        split_complex(valley["complex_ll"], "EPSG:4326", valley["east_dem"], "valley")


def test_processing_run_writes_glaciers_and_divides(valley, glacierseg_provider, tmp_path):
    import processing

    out, div = str(tmp_path / "glaciers.gpkg"), str(tmp_path / "divides.gpkg")
    result = processing.run("glacierseg:split_glaciers", {
        "INPUT": valley["outlines"], "ID_FIELD": "name", "DEM": valley["dem"], "OUTPUT": out, "DIVIDES": div})
    assert result["N_GLACIERS"] == 2
    rows, epsg = _read(result["OUTPUT"])
    assert epsg == "4326"
    assert [r[0]["complex_id"] for r in rows] == ["valley", "valley"]
    geod_areas = [abs(GEOD.geometry_area_perimeter(g)[0]) for _, g in rows]
    whole = abs(GEOD.geometry_area_perimeter(valley["complex_ll"])[0])
    assert abs(sum(geod_areas) - whole) / whole < 1e-3
    assert sorted(r[0]["area_km2"] for r in rows) == pytest.approx(sorted(a / 1e6 for a in geod_areas), rel=2e-3)
    lines, _ = _read(result["DIVIDES"])
    assert len(lines) == 1 and {lines[0][0]["glac_id_1"], lines[0][0]["glac_id_2"]} == {1, 2}


def test_processing_error_leaves_no_output(valley, glacierseg_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    out = tmp_path / "glaciers.gpkg"
    with pytest.raises(QgsProcessingException, match="does not cover glacier complex 'valley'"):
        processing.run("glacierseg:split_glaciers", {
            "INPUT": valley["outlines"], "ID_FIELD": "name", "DEM": valley["east_dem"], "OUTPUT": str(out),
            "DIVIDES": str(tmp_path / "divides.gpkg")})
    assert list(tmp_path.iterdir()) == []


def test_cancel_leaves_no_output(valley, tmp_path):
    from glacierseg.core.dem_split import split_glaciers
    from glacierseg.core.errors import CancelledError

    class CancelMidway:
        def __init__(self):
            self.calls = 0

        def set_progress(self, percent):
            self.calls += 1

        def is_canceled(self):
            return self.calls >= 1  # after the first progress report (flow routing done)

        def push_info(self, message):
            pass

    with pytest.raises(CancelledError):
        split_glaciers(valley["outlines"], valley["dem"], str(tmp_path / "g.gpkg"), str(tmp_path / "d.gpkg"),
                       progress=CancelMidway())
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_qgis_process_split(valley, qgis_process, tmp_path):
    """A separate QGIS (qgis_process) with the plugin enabled runs the algorithm."""
    out = str(tmp_path / "glaciers.gpkg")
    rc, result, output = qgis_process.run("glacierseg:split_glaciers", INPUT=valley["outlines"], ID_FIELD="name",
                                          DEM=valley["dem"], OUTPUT=out, DIVIDES=str(tmp_path / "divides.gpkg"))
    assert rc == 0, output
    assert result["results"]["N_GLACIERS"] == 2
    rows, _ = _read(out)
    assert [r[0]["complex_id"] for r in rows] == ["valley", "valley"]


@pytest.mark.slow
def test_hintereisferner_complex_against_rgi7(shared_data):
    """Real data: RGI 7 complex RGI2000-v7.0-C-11-02192 on SRTM vs its 23 RGI 7 glaciers."""
    from glacierseg.core.dem_split import split_complex
    from glacierseg.core.geo import read_features

    hef = shared_data / "hintereisferner"
    if not (hef / "rgi7c_hef.shp").exists():
        pytest.skip(f"Hintereisferner data not found in {hef}")
    cplx = read_features(str(hef / "rgi7c_hef.shp"))
    refs = read_features(str(hef / "rgi7g_hef_complex.shp"))
    res = split_complex(cplx.geoms[0], cplx.crs_wkt, str(hef / "srtm_oetztal.tif"), "hef")
    whole = reproject(cplx.geoms[0], "EPSG:4326", f"EPSG:{res.epsg}")
    _assert_partition(res.glaciers, whole)
    ref_utm = [reproject(g, "EPSG:4326", f"EPSG:{res.epsg}") for g in refs.geoms]
    ious = np.array([max(_iou(r, g) for g in res.glaciers) for r in ref_utm])
    areas = np.array([r.area for r in ref_utm])
    # Chance level: one glacier for the whole complex gives an area-weighted IoU of ~0.1.
    assert (ious * areas).sum() / areas.sum() > 0.75
    assert (ious >= 0.5).sum() >= 17
    assert 15 <= len(res.glaciers) <= 50


def _with_voids(src, dst, voids):
    """A copy of the DEM ``src`` with the cells ``voids`` (a boolean array) set to its nodata value."""
    with rasterio.open(src) as ds:
        z, profile = ds.read(1), ds.profile
    z[voids] = profile["nodata"]
    with rasterio.open(dst, "w", **profile) as out:
        out.write(z, 1)
    return str(dst)


def test_voids_inside_a_complex_are_filled_and_reported(valley, tmp_path):
    """Scattered voids (3 % of the complex, as in an ASTER DEM over snow) and one larger void
    on the eastern glacier: the complex still splits at the col and each glacier reports the
    share of its cells that were filled."""
    from glacierseg.core.dem_split import split_glaciers
    from glacierseg.core.geo import read_features
    from glacierseg.core.sample_data import terrain

    ice = terrain(SIZE, PIXEL)["glacier"].astype(bool)
    rng = np.random.default_rng(3)
    voids = ice & (rng.random(ice.shape) < 0.02)
    voids[100:110, 170:185] = True  # ~600 m x 400 m east of the col
    dem = _with_voids(valley["dem"], tmp_path / "voids.tif", voids)
    out, progress = str(tmp_path / "glaciers.gpkg"), Messages()
    result = split_glaciers(valley["outlines"], dem, out, id_field="name", progress=progress)
    assert result["n_glaciers"] == 2 and result["n_split"] == 1
    feats = read_features(out)
    assert [a["split_status"] for a in feats.attributes] == ["split", "split"]
    filled = sorted(a["filled_pct"] for a in feats.attributes)
    assert 0.5 < filled[0] < filled[1] < 15  # the east glacier holds the larger void
    assert any("had no elevation (DEM voids), filled" in m for m in progress.messages)
    west = [g for g in feats.geoms if reproject(g, "EPSG:4326", valley["crs"]).centroid.x < valley["col_x"]]
    assert len(west) == 1 and _iou(reproject(west[0], "EPSG:4326", valley["crs"]),
                                   valley["complex_utm"].intersection(shapely.box(0, 0, valley["col_x"], 1e8))) > 0.9


def test_complex_off_the_dem_is_written_unsplit(valley, glacierseg_provider, tmp_path):
    """One complex of the layer lies off the DEM: it is written unsplit with its status and a
    warning; the other complex splits."""
    import processing
    from qgis.core import QgsProcessingFeedback

    far = shapely.affinity.translate(valley["complex_utm"], xoff=30000.0)  # 20 km east of the DEM's edge
    geoms = [shapely.multipolygons([valley["complex_ll"]]),
             shapely.multipolygons([reproject(far, valley["crs"], "EPSG:4326")])]
    outlines = write_vector(tmp_path / "two.gpkg", geoms, [{"name": "valley"}, {"name": "off-dem"}], crs="EPSG:4326",
                            layer="outlines")

    class Feedback(QgsProcessingFeedback):
        messages = []

        def pushInfo(self, info):  # noqa: N802
            self.messages.append(info)

    feedback = Feedback()
    out = str(tmp_path / "glaciers.gpkg")
    result = processing.run("glacierseg:split_glaciers", {"INPUT": outlines, "ID_FIELD": "name", "DEM": valley["dem"],
                                                          "OUTPUT": out, "DIVIDES": str(tmp_path / "d.gpkg")},
                            feedback=feedback)
    assert result["N_GLACIERS"] == 3 and result["N_UNSPLIT"] == 1
    rows, _ = _read(out)
    status = sorted((r[0]["complex_id"], r[0]["split_status"]) for r in rows)
    assert status == [("off-dem", "unsplit_no_dem"), ("valley", "split"), ("valley", "split")]
    unsplit = [g for a, g in rows if a["complex_id"] == "off-dem"][0]
    assert _iou(reproject(unsplit, "EPSG:4326", valley["crs"]), far) > 0.999  # written as given
    assert any("Warning: complex 'off-dem' is written unsplit (unsplit_no_dem)" in m for m in feedback.messages)
    assert any("1 split, 1 left unsplit for lack of DEM data" in m for m in feedback.messages)


def test_edge_strip_along_the_outline_is_merged(tmp_path):
    """A valley glacier whose outline takes in a 120 m wide band of ice beyond a lateral ridge
    (2.4 km long, both ends on the outline): the band drains sideways into the gutter, to a low
    point of its own, and flow routing makes it a piece of its own — an edge strip (elongated,
    half of its perimeter on the outline, the other half along the glacier). With the merge
    radius switched off (a → 0) it reaches the merge step, where the edge-strip rule joins it
    to the glacier it runs along; without our rules it stays a glacier of its own."""
    from glacierseg.core.dem_split import EDGE_STRIP, SplitParameters, compactness, piece_kind, split_complex

    nx, ny, px = 60, 80, 40.0
    x, y = np.meshgrid((np.arange(nx) + 0.5) * px, (np.arange(ny) + 0.5) * px)  # metres east / south of the corner
    left, right, top, bottom = 10 * px, 50 * px, 10 * px, 70 * px
    ridge = right - 3 * px
    dem = 3000.0 - 0.15 * y + 60.0 * ((x - (left + ridge) / 2) / (ridge - left)) ** 2  # a trough falling south
    dem = np.where(x > ridge, 3015.0 - 0.15 * y - 0.4 * (x - ridge), dem)  # beyond the ridge: falling east
    # the band's own low point
    dem += 60.0 * np.exp(-((x - right - 2 * px) ** 2 + (y - bottom + px) ** 2) / (3 * px) ** 2)
    path = write_raster(tmp_path / "strip.tif", dem.astype("float32"), pixel_size=px, origin=(600000, 5200000))
    complex_ = shapely.box(600000 + left, 5200000 - bottom, 600000 + right, 5200000 - top)
    band = shapely.box(600000 + ridge, 5200000 - bottom, 600000 + right, 5200000 - top)

    def in_band(g):
        return g.intersection(band).area / g.area

    no_radius = SplitParameters(a=1e-3)
    without_rules = split_complex(complex_, "EPSG:32632", path, "strip", SplitParameters(a=1e-3, interior_area_km2=0.0))
    strips = [g for g in without_rules.glaciers if in_band(g) > 0.6]
    assert len(strips) == 1  # the band became a piece of its own ...
    strip = strips[0]
    assert 0.2e6 < strip.area < 1e6 and compactness(strip) < no_radius.sliver_compactness  # ... not a sliver
    rim = complex_.boundary.buffer(0.01 * px)
    assert piece_kind(strip, rim, no_radius) == EDGE_STRIP
    merged = split_complex(complex_, "EPSG:32632", path, "strip", no_radius)
    assert len(merged.glaciers) == len(without_rules.glaciers) - 1
    assert all(in_band(g) < 0.3 for g in merged.glaciers)
    _assert_partition(merged.glaciers, complex_)
    default = split_complex(complex_, "EPSG:32632", path, "strip")  # the merge radius alone joins the band here
    assert len(default.glaciers) == 1


ICE_CAPS = {  # grid cells (40 m), outlets, noise seed
    "large cap, 5 outlets": (200, 5, 0),  # sectors 5.8 km²
    "large cap, 3 outlets": (200, 3, 1),  # sectors 9.6 km²; the interior rule merges a 0.46 km² piece
    "small cap, 5 outlets": (80, 5, 0),  # sectors 0.92 km²: below the interior-piece area
}


@pytest.mark.parametrize("case", list(ICE_CAPS))
def test_ice_cap_splits_into_its_outlet_glaciers(case, tmp_path):
    """A generated dome-shaped ice cap (core.sample_data.ice_cap) with K radial outlet valleys
    gives exactly K glaciers, each matching its outlet's sector (IoU ≥ 0.85), none below the
    sliver area. Exactly K, because the outlets are the gutter's only low points (the valleys'
    150 m relief at the margin dwarfs the 4 m noise) and each outlet's merge radius
    min(a·F^b, c) (0.9 km for a 5.8 km² sector, 0.35 km for 0.92 km²) is shorter than the way
    along the margin from its outlet to the next divide (π·R/K: 1.8 km, 0.7 km). The small
    cap's sectors are interior pieces (< 1 km², 40 % of their perimeter on the outline); they
    stay apart because the interior rule only merges into a neighbour twice as large."""
    from glacierseg.core.dem_split import SplitParameters, split_complex
    from glacierseg.core.sample_data import CRS, ORIGIN, ice_cap

    size, outlets, seed = ICE_CAPS[case]
    cap = ice_cap(size, PIXEL, outlets, seed)
    transform = from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL)
    dem = write_raster(tmp_path / "cap.tif", cap["dem"], crs=CRS, pixel_size=PIXEL, origin=ORIGIN)
    outline = max((shapely.geometry.shape(g) for g, v in shapes(cap["ice"].astype("uint8"), transform=transform)
                   if v == 1), key=lambda p: p.area)
    sectors = [shapely.union_all([shapely.geometry.shape(g) for g, v in shapes(cap["sector"].astype("int32"),
                                                                              transform=transform) if v == k])
               for k in range(1, outlets + 1)]
    res = split_complex(outline, CRS, dem, case)
    assert len(res.glaciers) == outlets
    _assert_partition(res.glaciers, outline)
    assert min(g.area for g in res.glaciers) >= SplitParameters().sliver_area_km2 * 1e6
    best = [max(range(outlets), key=lambda k: _iou(g, sectors[k])) for g in res.glaciers]
    assert sorted(best) == list(range(outlets))  # one glacier per outlet
    assert min(_iou(g, sectors[k]) for g, k in zip(res.glaciers, best)) >= 0.85


def test_ice_cap_guard_through_processing_run(glacierseg_provider, tmp_path):
    """The small generated ice cap through Processing: by default its five outlet glaciers;
    with the advanced parameter *merge neighbour ratio* at 0 (no guard) the interior-piece
    rule merges the five 0.92 km² sectors into one glacier, as before the guard."""
    import processing

    from glacierseg.core.sample_data import CRS, ORIGIN, ice_cap

    cap = ice_cap(80, PIXEL, 5, 0)
    dem = write_raster(tmp_path / "cap.tif", cap["dem"], crs=CRS, pixel_size=PIXEL, origin=ORIGIN)
    transform = from_origin(ORIGIN[0], ORIGIN[1], PIXEL, PIXEL)
    outline = max((shapely.geometry.shape(g) for g, v in shapes(cap["ice"].astype("uint8"), transform=transform)
                   if v == 1), key=lambda p: p.area)
    outlines = write_vector(tmp_path / "cap.gpkg", [outline], [{"name": "cap"}], crs=CRS, layer="outlines")
    counts = {}
    for ratio in (None, 0.0):
        extra = {} if ratio is None else {"MERGE_NEIGHBOUR_RATIO": ratio}
        result = processing.run("glacierseg:split_glaciers", {
            "INPUT": outlines, "ID_FIELD": "name", "DEM": dem, "OUTPUT": str(tmp_path / f"glaciers_{ratio}.gpkg"),
            **extra})
        counts[ratio] = result["N_GLACIERS"]
    assert counts == {None: 5, 0.0: 1}
