"""Test helpers shared by the test modules: paths, recording progress objects, small GeoTIFF and
GeoPackage writers and the ``qgis_process`` runner. Fixtures live in ``conftest.py``."""
from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG_DIR = ROOT / ".build" / "pkg"  # holds a 'glacierseg' link to the repo root (the plugin folder)
SHARED_DATA = ROOT.parent / "shared" / "data"

CONV_BANDS = ("S2:B03", "S2:B08", "S2:B11")


QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's qgis_process wrapper passes a flag 3.22 rejects


class QgisProcess:
    """Runs ``qgis_process.bin`` in a throw-away profile with the GlacierSeg plugin enabled."""

    def __init__(self, profile_dir: Path):
        self.env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=str(PKG_DIR),
                        QGIS_CUSTOM_CONFIG_PATH=str(profile_dir))
        self.env.pop("PYTHONPATH", None)
        venv_site = next((ROOT / ".venv" / "lib").glob("python3*/site-packages"), None)
        if venv_site is not None:  # the venv's packages (onnxruntime, ...) for QGIS's Python
            self.env["PYTHONPATH"] = str(venv_site)
        self.call("plugins", "enable", "glacierseg", check=True)

    def call(self, *args: str, check: bool = False, timeout: int = 600):
        import subprocess

        proc = subprocess.run([QGIS_PROCESS, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"qgis_process {' '.join(args)} failed:\n{proc.stdout}\n{proc.stderr}")
        return proc

    def run(self, algorithm: str, **params):
        """``qgis_process run`` with ``--json``; returns (returncode, parsed JSON or None, output)."""
        import json

        args = ["--json", "run", algorithm, "--"]
        for key, value in params.items():
            for v in value if isinstance(value, (list, tuple)) else [value]:
                args.append(f"{key}={v}")
        proc = self.call(*args)
        text = proc.stdout
        result = None
        if "{" in text:
            try:
                result = json.loads(text[text.index("{"):])
            except json.JSONDecodeError:
                result = None
        return proc.returncode, result, proc.stdout + proc.stderr


class Messages:
    """A core ``progress`` that records the messages pushed (``messages``, and ``text`` joined)."""

    def __init__(self):
        self.messages = []

    def set_progress(self, percent):
        pass

    def is_canceled(self):
        return False

    def push_info(self, message):
        self.messages.append(message)

    @property
    def text(self):
        return "\n".join(self.messages)


class CancelAfter:
    """A core ``progress`` that asks to cancel after ``calls`` polls (test helper)."""

    def __init__(self, calls):
        self.calls = calls

    def set_progress(self, percent):
        pass

    def push_info(self, message):
        pass

    def is_canceled(self):
        self.calls -= 1
        return self.calls < 0


def write_raster(path, array, *, crs="EPSG:32632", pixel_size=20.0, origin=(630000.0, 5190000.0),
                 nodata=None, descriptions=None):
    """Write a (bands, rows, cols) array as a GeoTIFF (test helper)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    array = np.asarray(array)
    if array.ndim == 2:
        array = array[None]
    with rasterio.open(path, "w", driver="GTiff", width=array.shape[2], height=array.shape[1], count=array.shape[0],
                       dtype=array.dtype, crs=crs, transform=from_origin(*origin, pixel_size, pixel_size),
                       nodata=nodata) as dst:
        dst.write(array)
        for i, d in enumerate(descriptions or [], start=1):
            dst.set_band_description(i, d)
    return str(path)


def write_vector(path, geoms, rows=None, *, crs="EPSG:32632", layer="features"):
    """Write shapely polygons (or multipolygons, or points) with attribute ``rows`` (dicts; field types from
    the first row's values) as a GeoPackage layer, adding the layer when the file exists (test helper)."""
    import shapely
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.SetFromUserInput(crs)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    path = str(path)
    ds = ogr.Open(path, 1) if os.path.exists(path) else ogr.GetDriverByName("GPKG").CreateDataSource(path)
    multi = any(g.geom_type == "MultiPolygon" for g in geoms)
    points = bool(geoms) and all(g.geom_type == "Point" for g in geoms)  # a point layer (bad-input tests)
    lyr = ds.CreateLayer(layer, srs, ogr.wkbPoint if points else ogr.wkbMultiPolygon if multi else ogr.wkbPolygon)
    rows = list(rows) if rows is not None else [{} for _ in geoms]
    kinds = {int: ogr.OFTInteger, float: ogr.OFTReal}
    for name, value in (rows[0] if rows else {}).items():
        lyr.CreateField(ogr.FieldDefn(name, kinds.get(type(value), ogr.OFTString)))
    for geom, row in zip(geoms, rows):
        f = ogr.Feature(lyr.GetLayerDefn())
        for name, value in row.items():
            f.SetField(name, value)
        f.SetGeometry(ogr.CreateGeometryFromWkb(shapely.to_wkb(geom)))
        lyr.CreateFeature(f)
    ds = None  # noqa: F841 (closes the file)
    return path


def reproject(geom, src, dst):
    """A shapely geometry from CRS ``src`` to ``dst`` (x/y order; test helper)."""
    import numpy as np
    import shapely
    from pyproj import Transformer

    tr = Transformer.from_crs(src, dst, always_xy=True)
    return shapely.transform(geom, lambda xy: np.column_stack(tr.transform(xy[:, 0], xy[:, 1])))
