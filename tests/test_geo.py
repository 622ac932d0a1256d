"""core.geo, the one home of geometry and grid helpers: the vector source value, pixel size in
metres (projected, foot-based, geographic), reading and writing polygon layers, rasterizing."""
from __future__ import annotations

import math

import numpy as np
import pytest
import rasterio
import shapely
from rasterio.transform import from_origin

from glacierseg.core.errors import InputError
from glacierseg.core.geo import (
    VectorSource,
    cells_inside,
    field_names,
    layer_crs_wkt,
    open_layer,
    pixel_size_m,
    raster_cell_size_m,
    raster_pixel_size_m,
    rasterize,
    read_features,
    write_features,
)

from .helpers import write_raster, write_vector

# WGS 84: semi-major axis and first eccentricity squared
A, E2 = 6378137.0, 6.69437999014e-3


def test_vector_source_from_every_convention(tmp_path):
    assert VectorSource.of("a.gpkg|layername=glaciers|subset=x") == VectorSource("a.gpkg", "glaciers")
    assert VectorSource.of("a.gpkg|LayerName=g") == VectorSource("a.gpkg", "g")
    assert VectorSource.of("a.shp") == VectorSource("a.shp", None)
    assert VectorSource.of(("a.gpkg", "g")) == VectorSource("a.gpkg", "g")
    assert VectorSource.of(tmp_path / "a.gpkg") == VectorSource(str(tmp_path / "a.gpkg"))
    given = VectorSource("a.gpkg", "g")
    assert VectorSource.of(given) is given and VectorSource.of(given, "h") == VectorSource("a.gpkg", "h")
    assert VectorSource.of("a.gpkg", "h") == VectorSource("a.gpkg", "h")
    assert str(given) == "a.gpkg|layername=g" and str(VectorSource("a.shp")) == "a.shp"


def test_pixel_size_in_a_projected_crs():
    t = from_origin(630000, 5190000, 20, 30)
    assert pixel_size_m("EPSG:32632", t) == (30.0, 20.0)
    # NAD83 / Pennsylvania South (ftUS): one US survey foot is 1200/3937 m
    assert pixel_size_m("EPSG:2272", from_origin(0, 0, 100, 100)) == pytest.approx((100 * 1200 / 3937,) * 2, rel=1e-12)


def test_pixel_size_of_a_rotated_grid_is_the_length_of_its_steps():
    """A grid rotated by 30° with 20 m x 30 m pixels: 20 m and 30 m, not the cosine of them."""
    from affine import Affine

    t = Affine.translation(630000, 5190000) * Affine.rotation(30) * Affine.scale(20, -30)
    assert pixel_size_m("EPSG:32632", t) == pytest.approx((30.0, 20.0), rel=1e-12)


def test_pixel_size_in_a_geographic_crs_is_geodesic():
    step = 1e-4
    t = from_origin(10.0, 0.0, step, step)  # origin on the equator
    dy, dx = pixel_size_m("EPSG:4326", t)
    # along the equator: a·Δλ; along the meridian at the equator: M = a(1 − e²)·Δφ
    assert dx == pytest.approx(A * math.radians(step), rel=1e-9)
    assert dy == pytest.approx(A * (1 - E2) * math.radians(step), rel=1e-6)
    north, _ = pixel_size_m("EPSG:4326", from_origin(10.0, 46.8, step, step), row_north=True)
    south, dx46 = pixel_size_m("EPSG:4326", from_origin(10.0, 46.8, step, step))
    assert north == pytest.approx(south, rel=1e-7) and north != south  # the two directions, documented
    assert dx46 == pytest.approx(dx * math.cos(math.radians(46.8)), rel=5e-3)  # parallels shrink with latitude
    with pytest.raises(InputError, match=r"geographic CRS .*reproject it"):
        pixel_size_m("EPSG:4326", t, geographic="refuse")
    with pytest.raises(InputError, match="has no coordinate reference system"):
        pixel_size_m(None, t)


def test_pixel_size_of_an_open_raster_is_measured_at_its_centre(tmp_path):
    path = write_raster(tmp_path / "geo.tif", np.ones((4, 6), np.uint8), crs="EPSG:4326", pixel_size=0.001,
                        origin=(10.0, 47.0))
    with rasterio.open(path) as ds:
        cx, cy = ds.xy(2, 3)
        assert raster_pixel_size_m(ds) == pixel_size_m(ds.crs, ds.transform, at=(cx, cy), row_north=True)
        assert raster_pixel_size_m(ds) != pixel_size_m(ds.crs, ds.transform)  # not at the corner
    with rasterio.open(path) as ds:
        dy, dx = raster_pixel_size_m(ds)
    assert raster_cell_size_m(path, cx, cy) == pytest.approx(math.sqrt(dx * dy), rel=1e-12)
    assert raster_cell_size_m(write_raster(tmp_path / "utm.tif", np.ones((3, 3), np.uint8)), 11, 46) == 20.0


@pytest.fixture
def two_layers(tmp_path):
    path = str(tmp_path / "two.gpkg")
    write_vector(path, [shapely.box(0, 0, 10, 10)], [{"name": "a"}], layer="first")
    write_vector(path, [shapely.box(0, 0, 20, 20), shapely.box(30, 0, 40, 5)], [{"kind": 1}, {"kind": 2}],
                 layer="second")
    return path


def test_every_source_convention_reads_the_same_layer(two_layers):
    by_string = read_features(two_layers + "|layername=second")
    by_value = read_features(VectorSource(two_layers, "second"))
    by_argument = read_features(two_layers, "second")
    for feats in (by_string, by_value, by_argument):
        assert [g.area for g in feats.geoms] == [400.0, 50.0]
        assert [a["kind"] for a in feats.attributes] == [1, 2]
    assert [g.area for g in read_features(two_layers).geoms] == [100.0]  # the first layer by default
    assert field_names(VectorSource(two_layers, "second")) == ["kind"]
    assert "32632" in layer_crs_wkt(two_layers + "|layername=first")


def test_open_layer_says_what_is_wrong(two_layers, tmp_path):
    with pytest.raises(InputError, match="has no layer 'third'"):
        with open_layer(two_layers, "third"):
            pass
    with pytest.raises(InputError, match="Cannot open vector file .*missing.gpkg"):
        read_features(str(tmp_path / "missing.gpkg"))
    with open_layer(VectorSource(two_layers, "second")) as layer:
        assert layer.GetFeatureCount() == 2


@pytest.mark.parametrize("name", ["out.gpkg", "out.shp", "out.geojson"])
def test_written_features_read_back(tmp_path, name):
    from osgeo import ogr

    feats = read_features(write_vector(tmp_path / "in.gpkg", [shapely.box(0, 0, 10, 10)], [{"name": "Glétscher"}]))
    fields = [ogr.FieldDefn("name", ogr.OFTString), ogr.FieldDefn("value", ogr.OFTReal)]
    geoms = [feats.geoms[0], shapely.MultiPolygon([shapely.box(20, 0, 30, 10), shapely.box(40, 0, 45, 5)])]
    write_features(str(tmp_path / name), geoms, feats.crs_wkt, [{"name": "Glétscher", "value": 1.5}, {"value": None}],
                   fields)
    back = read_features(str(tmp_path / name))
    assert [len(shapely.get_parts(g)) for g in back.geoms] == [1, 2]  # (a shapefile reads one part as a Polygon)
    assert [g.area for g in back.geoms] == [100.0, 125.0]
    assert back.attributes[0]["name"] == "Glétscher" and back.attributes[0]["value"] == 1.5
    assert back.attributes[1]["name"] is None
    with pytest.raises(InputError, match="use a .gpkg, .shp or .geojson"):
        write_features(str(tmp_path / "out.txt"), geoms, feats.crs_wkt, [{}, {}], [])


def test_rasterize_burns_by_pixel_centre_later_on_top():
    t = from_origin(0, 100, 10, 10)  # 10 × 10 cells of 10 m
    square = shapely.box(0, 100 - 30, 30, 100)  # exactly the top-left 3 × 3 cells
    small = shapely.box(12, 82, 18, 88)  # inside cell (row 1, col 1), around its centre (15, 85)
    out = rasterize([(square, 1), (small, 7)], t, (10, 10))
    expected = np.zeros((10, 10), np.uint8)
    expected[:3, :3] = 1
    expected[1, 1] = 7
    assert np.array_equal(out, expected) and out.dtype == np.uint8
    sliver = shapely.box(31, 52, 33, 100)  # touches column 3 but holds no centre
    assert not rasterize([(sliver, 1)], t, (10, 10)).any()
    assert rasterize([(sliver, 1)], t, (10, 10), all_touched=True)[:, 3].sum() == 5
    assert np.array_equal(rasterize([], t, (2, 3), dtype="int32", fill=4), np.full((2, 3), 4, np.int32))
    assert rasterize([(shapely.geometry.mapping(square), 300)], t, (10, 10), dtype="int32").max() == 300


def test_cells_inside_falls_back_to_touched_cells_for_tiny_outlines():
    t = from_origin(0, 100, 10, 10)
    assert cells_inside(shapely.box(0, 70, 30, 100), t, (10, 10)).sum() == 9
    tiny = shapely.box(1, 91, 3, 93)  # smaller than a cell, away from its centre
    mask = cells_inside(tiny, t, (10, 10))
    assert mask.sum() == 1 and mask[0, 0]


def test_rasterize_matches_gdal_rasterize_layer(tmp_path):
    """The evaluation used to burn through an OGR layer (gdal.RasterizeLayer); the one rasterizer
    (rasterio, GDAL's GDALRasterizeGeometries) gives the same pixels on an irregular outline."""
    from osgeo import gdal, ogr, osr

    rng = np.random.default_rng(3)
    angles = np.sort(rng.uniform(0, 2 * np.pi, 40))
    radii = rng.uniform(80, 300, 40)
    blob = shapely.Polygon(np.column_stack([500 + radii * np.cos(angles), 500 + radii * np.sin(angles)]))
    ring = shapely.box(350, 350, 650, 650).difference(shapely.box(420, 420, 580, 580))
    shapes = [(blob, 3), (ring, 5)]
    t = from_origin(0, 1000, 7.3, 7.3)
    ours = rasterize(shapes, t, (137, 137), dtype="int32")

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    raster = gdal.GetDriverByName("MEM").Create("", 137, 137, 1, gdal.GDT_Int32)
    raster.SetGeoTransform((t.c, t.a, t.b, t.f, t.d, t.e))
    vectors = ogr.GetDriverByName("Memory").CreateDataSource("")
    layer = vectors.CreateLayer("burn", srs, ogr.wkbUnknown)
    layer.CreateField(ogr.FieldDefn("v", ogr.OFTInteger))
    for geom, value in shapes:
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("v", value)
        f.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(geom)))
        layer.CreateFeature(f)
    gdal.RasterizeLayer(raster, [1], layer, options=["ATTRIBUTE=v"])
    assert np.array_equal(ours, raster.ReadAsArray()) and (ours == 3).any() and (ours == 5).any()
