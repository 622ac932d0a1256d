"""Parameters as scripts and qgis_process see them (the dialog widgets are tested in tests/desktop)."""
import os

import pytest
from qgis.core import QgsApplication, QgsProcessingException, QgsRasterLayer
from qgis.PyQt.QtCore import QUrl


def _alg(name):
    return QgsApplication.processingRegistry().algorithmById(f"glacierseg:{name}")


def test_groups_tags_help_and_names_fit(glacierseg_provider):
    algs = glacierseg_provider.algorithms()
    assert {a.group() for a in algs} == {"Mapping", "Glacier inventory", "Models and training", "Evaluation"}
    for alg in algs:
        assert len(alg.displayName()) <= 31, alg.displayName()  # fits the toolbox at its default width
        assert alg.shortDescription() and alg.tags() and alg.helpUrl().startswith("file://")
        page = QUrl(alg.helpUrl().split("#")[0]).toLocalFile()  # a page shipped in the plugin's docs/
        assert os.path.dirname(page).endswith("docs") and os.path.isfile(page), alg.helpUrl()
    searchable = " ".join(" ".join(a.tags()) for a in algs).lower()
    for word in ("onnx", "ndsi", "deep learning", "landslide"):
        assert word in searchable
    assert "Vectorize segmentation" not in _alg("segment").shortHelpString()


def test_widgets_are_attached_only_as_metadata(glacierseg_provider):
    assert _alg("segment").parameterDefinition("BAND_MAPPING").metadata()["widget_wrapper"]["class"].endswith(
        "ui.widgets.BandMappingWidgetWrapper")
    for alg, field in (("evaluate", "PREDICTION_FIELD"), ("evaluate", "REFERENCE_FIELD"),
                       ("split_glaciers", "ID_FIELD"), ("train", "CLASS_FIELD")):
        assert _alg(alg).parameterDefinition(field).metadata()["widget_wrapper"]["class"].endswith(
            "VectorFieldWidgetWrapper")
    train = _alg("train")
    assert "attention_deeplabv3plus" in train.parameterDefinition("NETWORK").options()
    assert train.parameterDefinition("LOSS").usesStaticStrings()
    assert _alg("inventory_attributes").parameterDefinition("SRC_DATE").type() == "datetime"


def test_band_names_in_band_mapping(glacierseg_provider, sample_scene, sample_model, tmp_path):
    import processing
    import rasterio

    by_name = processing.run("glacierseg:segment", {
        "INPUT": sample_scene.image, "MODEL": sample_model, "BAND_MAPPING": "B03,B08,B11",
        "OUTPUT_PROBABILITIES": str(tmp_path / "p1.tif"), "OUTPUT_CLASSES": str(tmp_path / "c1.tif")})
    by_number = processing.run("glacierseg:segment", {
        "INPUT": sample_scene.image, "MODEL": sample_model, "BAND_MAPPING": "2,4,5",
        "OUTPUT_PROBABILITIES": str(tmp_path / "p2.tif"), "OUTPUT_CLASSES": str(tmp_path / "c2.tif")})
    with rasterio.open(by_name["OUTPUT_CLASSES"]) as a, rasterio.open(by_number["OUTPUT_CLASSES"]) as b:
        assert (a.read() == b.read()).all()
    with pytest.raises(QgsProcessingException, match="B99"):
        processing.run("glacierseg:segment", {
            "INPUT": sample_scene.image, "MODEL": sample_model, "BAND_MAPPING": "B03,B08,B99",
            "OUTPUT_PROBABILITIES": str(tmp_path / "p3.tif"), "OUTPUT_CLASSES": str(tmp_path / "c3.tif")})


def test_any_gdal_raster_is_read_and_web_layers_are_refused(glacierseg_provider, sample_scene, sample_model,
                                                            tmp_path):
    import zipfile

    import processing
    from osgeo import gdal

    from glacierseg.processing_provider.base import raster_path

    vrt = str(tmp_path / "scene.vrt")
    gdal.BuildVRT(vrt, [sample_scene.image])
    zipped = tmp_path / "scene.zip"
    with zipfile.ZipFile(zipped, "w") as z:
        z.write(sample_scene.image, "scene.tif")
    sources = {"tif": sample_scene.image, "vrt": vrt, "vsizip": f"/vsizip/{zipped}/scene.tif"}
    classes = {}
    for name, source in sources.items():
        layer = QgsRasterLayer(source, name)
        assert layer.isValid(), source
        out = processing.run("glacierseg:segment", {
            "INPUT": layer, "MODEL": sample_model, "BAND_MAPPING": "2,4,5",
            "OUTPUT_PROBABILITIES": str(tmp_path / f"p_{name}.tif"), "OUTPUT_CLASSES": str(tmp_path / f"c_{name}.tif")})
        classes[name] = gdal.Open(out["OUTPUT_CLASSES"]).ReadAsArray()
    for name in ("vrt", "vsizip"):
        assert (classes[name] == classes["tif"]).all(), name
    # a GeoPackage raster (GPKG holds one band of elevations): its GDAL name reaches the core's reader
    import rasterio

    gpkg = str(tmp_path / "dem.gpkg")
    gdal.Translate(gpkg, sample_scene.dem, format="GPKG", outputType=gdal.GDT_Float32,
                   creationOptions=["RASTER_TABLE=dem"])
    layer = QgsRasterLayer(f"GPKG:{gpkg}:dem", "dem")
    assert layer.isValid() and raster_path(layer).startswith("GPKG:")
    with rasterio.open(raster_path(layer)) as a, rasterio.open(sample_scene.dem) as b:
        assert abs(a.read(1) - b.read(1)).max() < 1e-3
    wms = QgsRasterLayer("type=xyz&url=http://127.0.0.1:9/{z}/{x}/{y}.png&zmax=19&zmin=0", "tiles", "wms")
    with pytest.raises(QgsProcessingException, match="Export"):
        raster_path(wms)


def _range_server(directory):
    """A local HTTP server that answers byte-range requests (what GDAL's /vsicurl/ needs)."""
    import functools
    import http.server
    import os
    import re
    import threading

    class Handler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):  # noqa: N802
            match = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
            path = self.translate_path(self.path)
            if not match or not os.path.isfile(path):
                return super().do_GET()
            size = os.path.getsize(path)
            start, end = int(match.group(1)), min(int(match.group(2) or size - 1), size - 1)
            with open(path, "rb") as f:
                f.seek(start)
                body = f.read(end - start + 1)
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            self.wfile.write(body)

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Handler, directory=str(directory)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_cloud_optimized_geotiff_over_vsicurl(glacierseg_provider, sample_scene, sample_model, tmp_path):
    import processing
    from osgeo import gdal

    www = tmp_path / "www"
    www.mkdir()
    gdal.Translate(str(www / "scene_cog.tif"), sample_scene.image, format="COG")
    server = _range_server(www)
    try:
        layer = QgsRasterLayer(f"/vsicurl/http://127.0.0.1:{server.server_address[1]}/scene_cog.tif", "cog")
        assert layer.isValid()
        remote = processing.run("glacierseg:segment", {
            "INPUT": layer, "MODEL": sample_model, "OUTPUT_PROBABILITIES": str(tmp_path / "p.tif"),
            "OUTPUT_CLASSES": str(tmp_path / "c.tif")})
    finally:
        server.shutdown()
    local = processing.run("glacierseg:segment", {
        "INPUT": sample_scene.image, "MODEL": sample_model, "OUTPUT_PROBABILITIES": str(tmp_path / "p2.tif"),
        "OUTPUT_CLASSES": str(tmp_path / "c2.tif")})
    assert (gdal.Open(remote["OUTPUT_CLASSES"]).ReadAsArray() == gdal.Open(local["OUTPUT_CLASSES"]).ReadAsArray()).all()
