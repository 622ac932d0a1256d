"""core.io: output groups that appear whole or not at all, stale temporary files of killed runs,
output path checks, the GeoTIFF profile, and the log that sees messages without a progress."""
from __future__ import annotations

import logging
import os

import numpy as np
import pytest
import rasterio
import shapely

from glacierseg.core.errors import InputError
from glacierseg.core.geo import read_features, write_features
from glacierseg.core.io import (
    atomic_output,
    atomic_outputs,
    check_output_paths,
    geotiff_profile,
    opens_as_raster,
    raster_exists,
    remove_dataset,
    remove_stale_partials,
)
from glacierseg.core.progress import LogProgress, ensure_progress

from .helpers import Messages, write_raster


def _shapefile(path, area):
    """One rectangle of ``area`` m² written with core.geo.write_features (driver by extension)."""
    from osgeo import ogr, osr

    srs = osr.SpatialReference()
    srs.ImportFromEPSG(32632)
    write_features(path, [shapely.box(0, 0, area, 1)], srs.ExportToWkt(), [{}], [ogr.FieldDefn("v", ogr.OFTInteger)])


def test_a_group_is_moved_with_its_sidecars_on_success(tmp_path):
    table, shp = tmp_path / "sub" / "scores.csv", tmp_path / "sub" / "outlines.shp"
    with atomic_outputs(str(table), None, str(shp)) as (table_tmp, none, shp_tmp):
        assert none is None
        assert os.path.dirname(table_tmp) == str(tmp_path / "sub")  # the folder was made
        assert os.path.basename(table_tmp).startswith(".scores.partial-")
        with open(table_tmp, "w") as f:
            f.write("a,b\n")
        _shapefile(shp_tmp, 5)
        assert not table.exists() and not shp.exists()  # nothing shows before the group succeeds
    assert table.read_text() == "a,b\n"
    assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == [
        "outlines.cpg", "outlines.dbf", "outlines.prj", "outlines.shp", "outlines.shx", "scores.csv"]
    assert read_features(str(shp)).geoms[0].area == 5.0


def test_a_failed_group_leaves_older_outputs_and_no_partial_file(tmp_path):
    table, shp = tmp_path / "scores.csv", tmp_path / "outlines.shp"
    table.write_text("old\n")
    _shapefile(str(shp), 3)
    before = sorted(os.listdir(tmp_path))
    with pytest.raises(RuntimeError, match="boom"):
        with atomic_outputs(str(table), str(shp)) as (table_tmp, shp_tmp):
            with open(table_tmp, "w") as f:
                f.write("new\n")
            _shapefile(shp_tmp, 9)
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == before
    assert table.read_text() == "old\n" and read_features(str(shp)).geoms[0].area == 3.0


def test_same_path_twice_and_unwritable_folders_are_refused(tmp_path):
    with pytest.raises(InputError, match="Two outputs have the same path"):
        with atomic_outputs(str(tmp_path / "a.tif"), str(tmp_path / "." / "a.tif")):
            pass
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InputError, match=r"Cannot write the output .*is a file, not a folder"):
        with atomic_output(str(blocker / "out.tif")):
            pass
    (tmp_path / "dir.tif").mkdir()
    with pytest.raises(InputError, match="is a folder; give a file name"):
        with atomic_output(str(tmp_path / "dir.tif")):
            pass


def test_stale_partials_of_dead_runs_are_removed_and_said(tmp_path, caplog):
    out = tmp_path / "classes.tif"
    dead = tmp_path / ".classes.partial-999999999-deadbeef.tif"  # no process has that id
    old_style = tmp_path / ".classes.partial-0123abcd.tif"  # the older form, without a process id
    alive = tmp_path / f".classes.partial-{os.getpid()}-cafe0000.tif"  # this process: still running
    for p in (dead, old_style, alive):
        p.write_text("")
    assert sorted(remove_stale_partials(str(out))) == sorted([str(dead), str(old_style)])
    assert alive.exists()
    dead.write_text("")
    messages = Messages()
    with atomic_output(str(out), progress=messages) as tmp:
        write_raster(tmp, np.zeros((2, 2), np.uint8))
    assert "Removed 1 temporary file(s) of classes.tif left by an interrupted earlier run." in messages.text
    dead.write_text("")
    with caplog.at_level(logging.INFO, logger="glacierseg"):
        with atomic_output(str(out)) as tmp:  # no progress: the message goes to the log
            write_raster(tmp, np.zeros((2, 2), np.uint8))
    assert [(r.name, r.levelno) for r in caplog.records if "Removed 1 temporary" in r.getMessage()] == [
        ("glacierseg.io", logging.INFO)]


def test_output_paths_may_not_overwrite_inputs_or_each_other(tmp_path):
    image = write_raster(tmp_path / "image.tif", np.zeros((2, 2), np.uint8))
    with pytest.raises(InputError, match=r"The output 'Classes' .* is the same file as the input 'Input raster'"):
        check_output_paths({"Classes": image}, {"Input raster": image})
    with pytest.raises(InputError, match="The outputs 'A' and 'B' are the same file"):
        check_output_paths({"A": str(tmp_path / "o.gpkg"), "B": str(tmp_path / "o.gpkg|layername=x")}, {})
    check_output_paths({"A": str(tmp_path / "new" / "a.tif"), "B": "", "C": None}, {"Input raster": image})
    assert (tmp_path / "new").is_dir() and os.listdir(tmp_path / "new") == []  # proved writable, left clean


def test_remove_dataset_takes_its_sidecars(tmp_path):
    path = tmp_path / "x.gpkg"
    for suffix in ("", ".aux.xml", "-journal", "-wal", "-shm"):
        (tmp_path / f"x.gpkg{suffix}").write_text("")
    (tmp_path / "y.gpkg").write_text("")
    remove_dataset(str(path))
    remove_dataset(str(path))  # nothing left: no error
    assert os.listdir(tmp_path) == ["y.gpkg"]


def test_geotiff_profile_writes_tiled_compressed_files(tmp_path):
    from rasterio.transform import from_origin

    t = from_origin(0, 512, 1, 1)
    profile = geotiff_profile("EPSG:32632", t, 512, 512, 1, "float32", float("nan"))
    assert profile["predictor"] == 3 and "predictor" not in geotiff_profile("EPSG:32632", t, 8, 8, 1, "uint8", 255)
    data = np.linspace(0, 1, 512 * 512, dtype=np.float32).reshape(1, 512, 512)
    with rasterio.open(tmp_path / "p.tif", "w", **profile) as ds:
        ds.write(data)
    with rasterio.open(tmp_path / "p.tif") as ds:
        assert ds.is_tiled and ds.block_shapes == [(256, 256)] and ds.compression.value == "DEFLATE"
        assert np.array_equal(ds.read(), data)


def test_raster_exists_for_files_and_gdal_names(tmp_path):
    path = write_raster(tmp_path / "r.tif", np.zeros((2, 2), np.uint8))
    assert raster_exists(path) and not raster_exists("/vsimem/none.tif")
    assert not raster_exists(str(tmp_path / "missing.tif"))
    vrt = tmp_path / "r.vrt"
    from osgeo import gdal

    gdal.BuildVRT(str(vrt), [path]).FlushCache()
    assert raster_exists(f"/vsisubfile/0_{os.path.getsize(path)},{path}") and raster_exists(str(vrt))
    vector = str(tmp_path / "v.gpkg")
    _shapefile(vector, 2)  # (a GeoPackage: write_features follows the extension)
    assert raster_exists(vector) and not opens_as_raster(vector)  # a file, but no raster
    assert opens_as_raster(path) and not opens_as_raster(str(tmp_path / "missing.tif"))


def test_without_a_progress_messages_go_to_the_log(caplog):
    progress = ensure_progress(None, "glacierseg.test")
    assert isinstance(progress, LogProgress) and not progress.is_canceled()
    messages = Messages()
    assert ensure_progress(messages, "glacierseg.test") is messages
    with caplog.at_level(logging.INFO, logger="glacierseg"):
        progress.push_info("Glacier mapping: NDSI > 0.6")
        progress.push_info("Warning: glacier 'G1' gets no topography")
        ensure_progress(None).push_info("to the package's logger")
    assert [(r.name, r.levelno, r.getMessage()) for r in caplog.records] == [
        ("glacierseg.test", logging.INFO, "Glacier mapping: NDSI > 0.6"),
        ("glacierseg.test", logging.WARNING, "Warning: glacier 'G1' gets no topography"),
        ("glacierseg", logging.INFO, "to the package's logger")]
