"""Output files that appear whole or not at all, the GeoTIFF profile they are written with, and
the GDAL block cache that reading and writing them run under."""
from __future__ import annotations

import contextlib
import glob
import os
import uuid
from typing import Iterator

GDAL_CACHE_BYTES = 128 * 2**20  # GDAL's block cache defaults to 5 % of RAM; 128 MB holds a strip of a 16k-wide raster


def geotiff_profile(crs, transform, width: int, height: int, count: int, dtype: str, nodata) -> dict:
    """rasterio creation profile of GlacierSeg's GeoTIFF outputs: tiled, deflate, BigTIFF when needed."""
    return dict(driver="GTiff", width=int(width), height=int(height), count=count, dtype=dtype, crs=crs,
                transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256,
                compress="deflate", BIGTIFF="IF_SAFER")


def remove_dataset(path: str) -> None:
    """Delete a file and the sidecars GDAL/SQLite may have written beside it."""
    for p in (path, path + ".aux.xml", path + ".ovr", path + "-journal", path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)


def _written(tmp: str) -> list:
    """Every file written under the temporary name: the file and its sidecars (a shapefile's
    .shx/.dbf/.prj/.cpg, GDAL's .aux.xml, …)."""
    stem = os.path.splitext(tmp)[0]
    return [p for p in glob.glob(glob.escape(stem) + "*") if os.path.isfile(p)]


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success move it, with its sidecars, onto ``path``.

    On any exception (a cancel included) everything written under the temporary name is
    removed and ``path`` is left untouched, so a failed run never leaves a half-written output.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    root, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(directory, f".{root}.partial-{uuid.uuid4().hex[:8]}{ext}")
    tmp_stem = os.path.splitext(tmp)[0]
    try:
        yield tmp
    except BaseException:
        for p in _written(tmp):
            os.remove(p)
        raise
    remove_dataset(path)
    for p in _written(tmp):
        os.replace(p, os.path.join(directory, root) + p[len(tmp_stem):])


def raster_exists(name: str) -> bool:
    """Whether GDAL opens ``name`` as a raster: a file, or a GDAL dataset name such as a VRT,
    'GPKG:file.gpkg:table', '/vsizip/archive.zip/image.tif' or '/vsicurl/https://…/cog.tif'."""
    if os.path.isfile(name):
        return True
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        return gdal.OpenEx(name, gdal.OF_RASTER) is not None
    finally:
        gdal.PopErrorHandler()
