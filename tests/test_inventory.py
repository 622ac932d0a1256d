"""glacierseg:inventory_attributes: RGI 7-style attributes checked against closed-form values
on planar DEMs, and against RGI 7's own attributes at Hintereisferner (real data)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import shapely
from pyproj import Proj, Transformer
from rasterio.transform import from_origin

from .helpers import Messages, reproject, write_vector

UTM = "EPSG:32632"
X0, Y1, PX, N = 640000.0, 5190000.0, 10.0, 800  # DEM: 8 km square, 10 m cells
# Two planes z = z0 + gx (x - xc) + gy (y - yc) (gy per metre northwards), one per half of the DEM.
PLANES = {
    "G1": dict(xc=642000.0, yc=5186000.0, w=2000.0, h=1000.0, z0=3000.0, gx=-0.05, gy=-0.2, aspect=14.036, sec=1),
    "G2": dict(xc=646000.0, yc=5184000.0, w=1500.0, h=800.0, z0=2800.0, gx=0.3, gy=0.3, aspect=225.0, sec=6),
}


def _rect(p):
    return shapely.box(p["xc"] - p["w"] / 2, p["yc"] - p["h"] / 2, p["xc"] + p["w"] / 2, p["yc"] + p["h"] / 2)


def _write(path, geoms, ids):
    # a stale zmed_m field of the same name: replaced by the algorithm
    return write_vector(path, geoms, [{"rgi_id": i, "zmed_m": "stale"} for i in ids], crs="EPSG:4326", layer="glaciers")


def _read(path):
    from osgeo import ogr

    ds = ogr.Open(str(path))
    lyr = ds.GetLayer(0)
    return {f.GetField("rgi_id"): {k: f.GetField(k) for k in f.keys()} for f in lyr}


@pytest.fixture(scope="module")
def planes(tmp_path_factory):
    d = tmp_path_factory.mktemp("planes")
    y, x = np.mgrid[0:N, 0:N]
    x = X0 + (x + 0.5) * PX
    y = Y1 - (y + 0.5) * PX
    dem = np.zeros((N, N))
    for p in PLANES.values():
        half = (x < 644000.0) if p["xc"] < 644000.0 else (x >= 644000.0)
        dem[half] = (p["z0"] + p["gx"] * (x - p["xc"]) + p["gy"] * (y - p["yc"]))[half]
    path = str(d / "dem.tif")
    with rasterio.open(path, "w", driver="GTiff", width=N, height=N, count=1, dtype="float32", crs=UTM,
                       transform=from_origin(X0, Y1, PX, PX), nodata=-9999) as dst:
        dst.write(dem.astype("float32"), 1)
    geoms = [reproject(_rect(p), UTM, "EPSG:4326") for p in PLANES.values()]
    outside = reproject(shapely.box(660000, 5185000, 661000, 5186000), UTM, "EPSG:4326")  # east of the DEM
    return {"dem": path, "outlines": _write(d / "glaciers.gpkg", geoms, list(PLANES)),
            "outside": _write(d / "outside.gpkg", [outside], ["G_OUT"])}


def _check_plane(attrs, p):
    grad = math.hypot(p["gx"], p["gy"])
    dx = round(14 * math.sqrt(p["w"] * p["h"] / 1e6) + 10)  # RGI 7 / OGGM grid spacing
    lon, lat = Transformer.from_crs(UTM, "EPSG:4326", always_xy=True).transform(p["xc"], p["yc"])
    areal_scale = Proj(UTM).get_factors(lon, lat).areal_scale  # UTM area / true area
    assert attrs["area_km2"] == pytest.approx(p["w"] * p["h"] / areal_scale / 1e6, rel=2e-4)
    assert attrs["utm_zone"] == 32
    poly_ll = reproject(_rect(p), UTM, "EPSG:4326")
    assert poly_ll.contains(shapely.Point(attrs["cenlon"], attrs["cenlat"]))
    corners = [p["z0"] + sx * p["gx"] * p["w"] / 2 + sy * p["gy"] * p["h"] / 2 for sx in (-1, 1) for sy in (-1, 1)]
    tol = grad * dx * 1.5
    assert attrs["zmin_m"] == pytest.approx(min(corners), abs=tol)
    assert attrs["zmax_m"] == pytest.approx(max(corners), abs=tol)
    assert attrs["zmed_m"] == pytest.approx(p["z0"], abs=grad * dx)
    assert attrs["zmean_m"] == pytest.approx(p["z0"], abs=grad * dx)
    assert attrs["slope_deg"] == pytest.approx(math.degrees(math.atan(grad)), abs=0.05)
    assert attrs["aspect_deg"] == pytest.approx(p["aspect"], abs=0.2)
    assert attrs["aspect_sec"] == p["sec"]
    # terminus: the lowest corner (downslope in x and y)
    low = (p["xc"] - math.copysign(p["w"] / 2, p["gx"]), p["yc"] - math.copysign(p["h"] / 2, p["gy"]))
    tx, ty = Transformer.from_crs("EPSG:4326", UTM, always_xy=True).transform(attrs["termlon"], attrs["termlat"])
    assert math.hypot(tx - low[0], ty - low[1]) < 1.5 * dx


def test_plane_attributes_core(planes):
    from glacierseg.core.geo import read_features
    from glacierseg.core.inventory import glacier_attributes

    feats = read_features(planes["outlines"])
    for geom, attrs in zip(feats.geoms, feats.attributes):
        _check_plane(glacier_attributes(geom, feats.crs_wkt, planes["dem"], attrs["rgi_id"]), PLANES[attrs["rgi_id"]])


def test_processing_run_adds_rgi7_fields(planes, glacierseg_provider, tmp_path):
    import processing

    out = str(tmp_path / "attrs.gpkg")
    result = processing.run("glacierseg:inventory_attributes", {
        "INPUT": planes["outlines"], "DEM": planes["dem"], "DEM_SOURCE": "PLANE", "SRC_DATE": "2021-08-30",
        "OUTPUT": out})
    rows = _read(result["OUTPUT"])
    assert set(rows) == set(PLANES)
    for gid, attrs in rows.items():
        _check_plane(attrs, PLANES[gid])
        assert attrs["dem_source"] == "PLANE" and attrs["src_date"] == "2021-08-30"
        assert isinstance(attrs["zmed_m"], float)  # the stale text field was replaced


def test_dem_not_covering_glacier_names_it(planes, tmp_path):
    from glacierseg.core.errors import InputError
    from glacierseg.core.inventory import inventory_attributes

    out = tmp_path / "attrs.gpkg"
    with pytest.raises(InputError, match=r"No glacier got topography: 'G_OUT': .*does not cover glacier 'G_OUT'"):
        inventory_attributes(planes["outside"], planes["dem"], str(out))
    assert not out.exists()


def test_one_glacier_off_the_dem_keeps_the_layer(planes, tmp_path):
    """G1 and G2 on the DEM, G_OUT off it: G_OUT is written with empty topography and a warning."""
    from glacierseg.core.geo import read_features
    from glacierseg.core.inventory import inventory_attributes

    geoms = read_features(planes["outlines"]).geoms + read_features(planes["outside"]).geoms
    outlines = _write(tmp_path / "three.gpkg", geoms, ["G1", "G2", "G_OUT"])
    progress = Messages()
    result = inventory_attributes(outlines, planes["dem"], str(tmp_path / "attrs.gpkg"), progress=progress)
    assert result["n_without_topography"] == 1
    rows = _read(tmp_path / "attrs.gpkg")
    for gid in ("G1", "G2"):
        _check_plane(rows[gid], PLANES[gid])
        assert rows[gid]["filled_pct"] == 0.0
    assert rows["G_OUT"]["zmin_m"] is None and rows["G_OUT"]["area_km2"] == pytest.approx(1.0, rel=0.01)
    assert any(m.startswith("Warning: glacier 'G_OUT' gets no topography") for m in progress.messages)


def test_srtm_void_value_without_nodata_tag(planes, tmp_path):
    """-32768 (SRTM's void value) in a DEM without a nodata tag: the cells are voids, filled from
    their surroundings, with a warning; zmin and slope stay those of the plane (issue 12, D7)."""
    from glacierseg.core.inventory import inventory_attributes

    with rasterio.open(planes["dem"]) as ds:
        z, profile = ds.read(1), ds.profile
    p = PLANES["G1"]
    col, row = int((p["xc"] - X0) / PX), int((Y1 - p["yc"]) / PX)
    z[row - 20:row + 20, col - 60:col - 20] = -32768  # 400 m x 400 m inside G1
    z[row + 30:row + 34, col + 80:col + 84] = -32768
    profile.update(nodata=None, dtype="int16")
    dem = str(tmp_path / "srtm_like.tif")
    with rasterio.open(dem, "w", **profile) as out:
        out.write(np.rint(z).astype("int16"), 1)
    progress = Messages()
    inventory_attributes(planes["outlines"], dem, str(tmp_path / "attrs.gpkg"), progress=progress)
    rows = _read(tmp_path / "attrs.gpkg")
    _check_plane(rows["G1"], p)  # zmin, slope, aspect as on the plane
    assert 5.0 < rows["G1"]["filled_pct"] < 12.0  # 0.17 km2 of 2 km2
    assert rows["G2"]["filled_pct"] == 0.0
    assert sum("outside the plausible range -500…9000 m (e.g. -32768" in m for m in progress.messages) == 1
    # the parameter: a range that admits -32768 uses it as an elevation (the old behaviour)
    inventory_attributes(planes["outlines"], dem, str(tmp_path / "raw.gpkg"), plausible_elevation=(-40000, 9000))
    raw = _read(tmp_path / "raw.gpkg")["G1"]
    assert raw["zmin_m"] == -32768 and raw["slope_deg"] > math.degrees(math.atan(math.hypot(p["gx"], p["gy"]))) + 3


def test_aspect_sectors_follow_rgi_table():
    from glacierseg.core.inventory import aspect_sector, topo_cell_size_m

    # RGI 7 user guide: 1 = N [-22.5, 22.5), ... 8 = NW [292.5, 337.5), 9 = not assigned
    assert [aspect_sector(a) for a in (0, 22.4, 22.5, 90, 180, 225, 270, 337.4, 337.5, 359.9)] == \
        [1, 1, 2, 3, 5, 6, 7, 8, 1, 1]
    assert aspect_sector(float("nan")) == 9
    assert [topo_cell_size_m(a) for a in (0.01, 2.0, 8.0, 100.0)] == [11.0, 30.0, 50.0, 100.0]


def test_hintereisferner_attributes_against_rgi7(shared_data, tmp_path):
    """Real data: our attributes of the 23 RGI 7 outlines on SRTM (~90 m) vs RGI 7's (COPDEM30)."""
    from glacierseg.core.geo import read_features
    from glacierseg.core.inventory import inventory_attributes

    hef = shared_data / "hintereisferner"
    if not (hef / "rgi7g_hef_complex.shp").exists():
        pytest.skip(f"Hintereisferner data not found in {hef}")
    out = str(tmp_path / "attrs.gpkg")
    inventory_attributes(str(hef / "rgi7g_hef_complex.shp"), str(hef / "srtm_oetztal.tif"), out, dem_source="SRTM")
    ours = {a["rgi_id"]: a for a in read_features(out).attributes}
    ref = read_features(str(hef / "rgi7g_hef_complex.shp")).attributes
    assert len(ours) == len(ref) == 23

    def median_abs(key, angular=False):
        d = np.array([ours[r["rgi_id"]][key] - r[key] for r in ref])
        return np.median(np.abs((d + 180) % 360 - 180) if angular else np.abs(d))

    assert median_abs("area_km2") < 0.01  # same outlines, geodesic area
    assert median_abs("zmed_m") <= 30
    assert median_abs("zmin_m") <= 60
    assert median_abs("slope_deg") <= 3
    assert median_abs("aspect_deg", angular=True) <= 20
    assert all(ours[r["rgi_id"]]["src_date"] == r["src_date"] for r in ref)  # kept from the outlines
