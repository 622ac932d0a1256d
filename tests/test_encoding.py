"""Text of a Latin-1 shapefile (RGI 5 Ötztal, .cpg ISO-8859-1, an accented glacier name) survives
split_glaciers and inventory_attributes inside QGIS, where OGR does not recode shapefile text
(QGIS sets SHAPE_ENCODING to "")."""
from __future__ import annotations

import pytest

NAME = "Kesselwandferner"


def _names(path, field):
    from osgeo import ogr

    ds = ogr.Open(str(path))
    return [f.GetField(field) for f in ds.GetLayer(0)]


@pytest.fixture(scope="module")
def oetztal(shared_data):
    shp = shared_data / "oetztal" / "rgi_oetztal.shp"
    if not shp.exists():
        pytest.skip(f"Ötztal data not found at {shp}")
    from glacierseg.core.geo import read_features

    names = [a["Name"] for a in read_features(str(shp)).attributes]  # outside QGIS's set-up: OGR recodes
    assert any(NAME in n and "À" in n for n in names)
    return {"shp": str(shp), "dem": str(shared_data / "hintereisferner" / "srtm_oetztal.tif"), "names": names}


@pytest.mark.slow
def test_accented_names_through_processing_run(oetztal, glacierseg_provider, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    QgsVectorLayer(oetztal["shp"], "rgi", "ogr")  # QGIS's OGR provider: from here on OGR no longer recodes
    attrs = processing.run("glacierseg:inventory_attributes", {
        "INPUT": oetztal["shp"], "DEM": oetztal["dem"], "OUTPUT": str(tmp_path / "attrs.gpkg")})["OUTPUT"]
    assert _names(attrs, "Name") == oetztal["names"]
    assert len(_names(attrs, "RGIId")) == 20
    split = processing.run("glacierseg:split_glaciers", {
        "INPUT": oetztal["shp"], "ID_FIELD": "Name", "DEM": oetztal["dem"], "OUTPUT": str(tmp_path / "g.shp"),
        "DIVIDES": str(tmp_path / "d.gpkg")})["OUTPUT"]
    assert set(_names(split, "complex_id")) == set(oetztal["names"])  # a UTF-8 shapefile (.cpg UTF-8)
    assert any(NAME in n and "À" in n for n in _names(split, "complex_id"))


@pytest.mark.slow
def test_accented_names_through_qgis_process(oetztal, qgis_process, tmp_path):
    out = str(tmp_path / "attrs.shp")
    rc, _, output = qgis_process.run("glacierseg:inventory_attributes", INPUT=oetztal["shp"], DEM=oetztal["dem"],
                                     OUTPUT=out)
    assert rc == 0, output
    assert _names(out, "Name") == oetztal["names"]  # a UTF-8 shapefile (.cpg UTF-8) read back by OGR
    split = str(tmp_path / "glaciers.gpkg")
    rc, result, output = qgis_process.run("glacierseg:split_glaciers", INPUT=oetztal["shp"], ID_FIELD="Name",
                                          DEM=oetztal["dem"], OUTPUT=split, DIVIDES=str(tmp_path / "d.gpkg"))
    assert rc == 0, output
    assert set(_names(split, "complex_id")) == set(oetztal["names"])
