"""Regional inventories (core/regional, glacierseg inventory): generated overlapping scenes (2×2,
overlaps, glaciers across scene edges, a nodata gap) through the whole pipeline in this process,
on a Dask LocalCluster, on a scheduler and workers started by Dask's own commands, with a worker
killed mid-run, with a corrupt scene; reruns; the installed command."""
from __future__ import annotations

import json
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
import tomllib

from .helpers import PKG_DIR, ROOT, Messages

AREA_TOL_KM2 = 1e-6
NUMERIC = ("area_km2", "cenlon", "cenlat", "zmin_m", "zmax_m", "zmed_m", "zmean_m", "slope_deg", "aspect_deg",
           "termlon", "termlat", "filled_pct")


def read_layer(path, layer):
    """Rows of a GeoPackage layer (attributes plus 'wkt') in feature order."""
    from osgeo import ogr

    ds = ogr.Open(str(path))
    lyr = ds.GetLayerByName(layer)
    rows = []
    for feat in lyr:
        row = feat.items()
        g = feat.GetGeometryRef()
        row["wkt"] = g.ExportToWkt() if g is not None else None
        rows.append(row)
    return rows


def assert_same_glaciers(a, b, b_divides=None):
    """Same glaciers: count, areas within 1e-6 km², every attribute (numbers to 1e-9 relative);
    same ice divides (``b_divides``: the file holding b's, default b)."""
    ga, gb = read_layer(a, "glaciers"), read_layer(b, "glaciers")
    assert len(ga) == len(gb) > 0
    for x, y in zip(sorted(ga, key=lambda r: r["glac_id"]), sorted(gb, key=lambda r: r["glac_id"])):
        assert abs(x["area_km2"] - y["area_km2"]) <= AREA_TOL_KM2, (x, y)
        for k in NUMERIC:
            assert x[k] == pytest.approx(y[k], rel=1e-9, abs=1e-9), (k, x, y)
        for k in ("complex_id", "split_status", "utm_zone", "aspect_sec", "dem_source"):
            assert x[k] == y[k], (k, x, y)
    da, db = read_layer(a, "divides"), read_layer(b_divides or b, "divides")
    assert len(da) == len(db)
    assert [(r["glac_id_1"], r["glac_id_2"]) for r in da] == [(r["glac_id_1"], r["glac_id_2"]) for r in db]


@pytest.fixture(scope="module")
def region(tmp_path_factory):
    from glacierseg.core.regional.sample import make_region_scenes

    return make_region_scenes(str(tmp_path_factory.mktemp("region")))


def options(region, output, **kw):
    from glacierseg.core.regional.pipeline import InventoryOptions, band_ratio_method

    # median=False: the band ratio is then a per-pixel rule, so each scene's classes equal the
    # region's classes on its pixels and the mosaic equals the single run's class raster.
    return InventoryOptions(list(kw.pop("scenes", region.scenes)), region.region.dem, str(output),
                            band_ratio_method(median=False), **kw)


@pytest.fixture(scope="module")
def sequential(region, tmp_path_factory):
    from glacierseg.core.regional.pipeline import run_inventory

    out = tmp_path_factory.mktemp("sequential") / "inventory.gpkg"
    summary = run_inventory(options(region, out))
    return out, summary


@pytest.fixture(scope="module")
def single_run(region, tmp_path_factory):
    """The same region as one raster through the single-raster functions."""
    from glacierseg.core.band_ratio import map_glaciers
    from glacierseg.core.dem_split import split_glaciers
    from glacierseg.core.inventory import inventory_attributes

    d = tmp_path_factory.mktemp("single")
    map_glaciers(region.region.image, str(d / "index.tif"), str(d / "classes.tif"), str(d / "outlines.gpkg"),
                 median=False)
    split_glaciers(str(d / "outlines.gpkg"), region.region.dem, str(d / "split.gpkg"), str(d / "divides.gpkg"))
    inventory_attributes(str(d / "split.gpkg"), region.region.dem, str(d / "glaciers.gpkg"))
    return d


def test_scenes_overlap_with_a_gap_and_glaciers_cross_their_edges(region, sequential):
    import shapely
    from shapely import wkt

    out, summary = sequential
    feet = read_layer(out, "footprints")
    assert [f["status"] for f in feet] == ["mapped"] * 4 and summary["scenes_mapped"] == 4
    boxes = [wkt.loads(f["wkt"]) for f in feet]
    assert all(boxes[i].intersection(boxes[j]).area > 0 for i in range(4) for j in range(4) if i != j)
    gap = next(f for f in feet if f["scene"] == region.gap_scene)
    assert gap["nodata_pct"] > 5 and all(f["nodata_pct"] == 0 for f in feet if f is not gap)
    glaciers = [wkt.loads(g["wkt"]) for g in read_layer(out, "glaciers")]
    crossing = [g for g in glaciers if not any(b.contains(g) for b in boxes)]
    assert crossing, "no glacier crosses a scene edge"
    assert all(shapely.get_num_geometries(g) == 1 for g in crossing)  # one polygon, not pieces per scene
    log = [r["message"] for r in read_layer(out, "run_log")]
    assert any("valid data first, then later date" in m for m in log)


def test_sequential_run_equals_one_run_on_the_mosaicked_raster(sequential, single_run):
    assert_same_glaciers(sequential[0], single_run / "glaciers.gpkg", single_run / "divides.gpkg")


def test_mosaic_built_block_by_block_equals_the_whole_region_at_once(sequential, tmp_path):
    """Blocks of 37 px (not dividing the region or the scenes) give the same mosaic, source
    scenes and pixel counts as one block over the whole region."""
    import numpy as np
    import rasterio

    from glacierseg.core.regional.mosaic import MosaicRule, build_mosaic

    summary = sequential[1]
    scenes = sorted(json.load(open(summary["manifest"]))["scenes"].values(), key=lambda s: s["order"])
    results = {}
    for block in (37, 10**6):
        out, source = tmp_path / f"mosaic{block}.tif", tmp_path / f"source{block}.tif"
        used = build_mosaic(scenes, [1, 2], MosaicRule(), str(out), str(source), block_px=block)
        with rasterio.open(out) as a, rasterio.open(source) as b:
            results[block] = (a.read(1), b.read(1), used, a.transform)
    (m1, s1, u1, t1), (m2, s2, u2, t2) = results[37], results[10**6]
    assert np.array_equal(m1, m2) and np.array_equal(s1, s2) and u1 == u2 and t1 == t2
    assert m1.shape[0] > 2 * 37 and set(np.unique(s1)) == {-1, 0, 1, 2, 3} - ({-1} if (s1 >= 0).all() else set())
    assert sum(u1.values()) == int((s1 >= 0).sum())
    with rasterio.open(os.path.join(os.path.dirname(summary["manifest"]), "inventory.work", "ice_mosaic.tif")) as run:
        assert np.array_equal(run.read(1), m1)


def test_each_glacier_has_the_date_of_the_scene_that_supplied_most_of_it(region, sequential):
    """src_date per glacier, checked against geometry: under the default rule (later date first)
    scene i supplies its footprint minus the footprints of later scenes (the one nodata gap lies
    where a later scene covers it); a glacier's date is that of the scene whose part holds most of
    its area (glaciers split nearly evenly, within 5 % of their area, are not judged)."""
    import shapely
    from shapely import wkt

    from glacierseg.core.regional.mosaic import scene_date

    feet = read_layer(sequential[0], "footprints")
    dates = [scene_date(f["scene"]) for f in feet]
    assert [f["date"] for f in feet] == dates and len(set(dates)) == 4
    parts = []
    for i, f in enumerate(feet):
        later = [wkt.loads(g["wkt"]) for g, d in zip(feet, dates) if d > dates[i]]
        parts.append(wkt.loads(f["wkt"]).difference(shapely.union_all(later)) if later else wkt.loads(f["wkt"]))
    judged, crossing = 0, 0
    for g in read_layer(sequential[0], "glaciers"):
        geom = wkt.loads(g["wkt"])
        shares = sorted(((geom.intersection(p).area / geom.area, d) for p, d in zip(parts, dates)), reverse=True)
        crossing += shares[1][0] > 0.05
        if shares[0][0] - shares[1][0] > 0.05:
            assert g["src_date"] == shares[0][1], (g["glac_id"], shares)
            judged += 1
    assert judged >= 0.8 * len(read_layer(sequential[0], "glaciers")) and crossing >= 1


def test_rerun_after_success_does_no_work(region, sequential):
    from glacierseg.core.regional.pipeline import run_inventory
    from glacierseg.core.regional.runners import SequentialRunner

    class Counting(SequentialRunner):
        tasks = 0

        def map(self, fn, args, *rest):
            Counting.tasks += len(args)
            return super().map(fn, args, *rest)

    out, _ = sequential
    before = os.stat(out).st_mtime_ns
    progress = Messages()
    summary = run_inventory(options(region, out), Counting(), progress)
    assert Counting.tasks == 0
    assert (summary["scenes_mapped"], summary["complexes_computed"]) == (0, 0)
    assert not (summary["mosaic_built"] or summary["outlines_built"] or summary["output_written"])
    assert os.stat(out).st_mtime_ns == before
    assert "up to date" in progress.text
    manifest = json.load(open(summary["manifest"]))
    assert all(len(s["key"]) == 20 for s in manifest["scenes"].values())
    assert {"mosaic", "outlines", "output"} <= set(manifest["steps"])


def test_corrupt_scene_is_reported_and_redone_when_replaced(region, sequential, tmp_path):
    from glacierseg.core.regional.pipeline import run_inventory

    bad = tmp_path / "S2_99_20230809.tif"
    bad.write_bytes(b"II*\x00" + os.urandom(4000))  # a TIFF header, then garbage
    scenes = region.scenes + [str(bad)]
    out = tmp_path / "out" / "inventory.gpkg"
    summary = run_inventory(options(region, out, scenes=scenes, retries=1))
    assert summary["scenes_failed"] == 1 and summary["scenes_mapped"] == 4
    assert str(bad) in summary["failed_scenes"]
    feet = {f["scene"]: f for f in read_layer(out, "footprints")}
    assert feet[str(bad)]["status"] == "failed" and feet[str(bad)]["attempts"] == 2
    assert feet[str(bad)]["error"] and feet[str(bad)]["wkt"] in (None, "MULTIPOLYGON EMPTY")
    assert_same_glaciers(out, sequential[0])  # the others complete: the region is whole

    shutil.copy(region.scenes[3], bad)  # the scene replaced by a good one: only it is redone
    again = run_inventory(options(region, out, scenes=scenes, retries=1))
    assert (again["scenes_mapped"], again["scenes_reused"], again["scenes_failed"]) == (1, 4, 0)
    assert again["complexes_computed"] == 0 and again["output_written"]
    assert_same_glaciers(out, sequential[0])


def _hold_lock(cache: str, log: str) -> None:
    os.environ["NUMBA_CACHE_DIR"] = cache
    sys.path.insert(0, str(PKG_DIR))
    from glacierseg.core.regional.runners import first_numba_use

    def first():
        start = time.time()
        time.sleep(0.5)
        with open(log, "a") as f:
            f.write(f"{start} {time.time()}\n")
    first_numba_use(first)


def test_first_numba_use_is_one_process_at_a_time(tmp_path):
    """The first pysheds call of each process runs under one lock per numba cache folder, so no
    two processes compile and write the cache at once."""
    ctx = multiprocessing.get_context("spawn")
    log = tmp_path / "log.txt"
    procs = [ctx.Process(target=_hold_lock, args=(str(tmp_path / "cache"), str(log))) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    spans = sorted(tuple(map(float, line.split())) for line in log.read_text().splitlines())
    assert len(spans) == 3
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))  # no overlap


def test_scene_lists_globs_and_bad_input(region, tmp_path):
    from glacierseg.core.errors import InputError
    from glacierseg.core.regional.mosaic import MosaicRule, scene_date
    from glacierseg.core.regional.pipeline import resolve_scenes, run_inventory

    listing = tmp_path / "scenes.txt"
    listing.write_text("# scenes\n" + "\n".join(f"{s} 2024-0{i + 1}-15" for i, s in enumerate(region.scenes)))
    scenes, dates = resolve_scenes([str(listing)])
    assert scenes == region.scenes and dates[region.scenes[1]] == "2024-02-15"
    folder = os.path.dirname(region.scenes[0])
    assert resolve_scenes([os.path.join(folder, "S2_*.tif")])[0] == region.scenes
    assert scene_date(region.scenes[2]) == "2023-08-03"
    with pytest.raises(InputError, match="No scene matches"):
        resolve_scenes([os.path.join(folder, "nothing*.tif")])
    with pytest.raises(InputError, match="listed twice"):
        resolve_scenes([region.scenes[0], region.scenes[0]])
    with pytest.raises(InputError, match="Unknown mosaic rule"):
        MosaicRule.parse("date,cloud")
    with pytest.raises(InputError, match="must be a GeoPackage"):
        run_inventory(options(region, tmp_path / "out.shp"))
    assert MosaicRule.parse("nodata").rank([
        {"order": 0, "nodata_fraction": 0.3, "date": "2023-01-01"},
        {"order": 1, "nodata_fraction": 0.1, "date": "2022-01-01"}]) == [1, 0]
    assert MosaicRule().rank([
        {"order": 0, "nodata_fraction": 0.3, "date": "2023-01-01"},
        {"order": 1, "nodata_fraction": 0.1, "date": "2022-01-01"}]) == [0, 1]


def test_pyproject_dependencies_match_runtime_minimums():
    from glacierseg.core.deps import RUNTIME

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == sorted(f"{r.distribution}>={r.minimum}" for r in RUNTIME)
    assert project["scripts"]["glacierseg"] == "glacierseg.core.cli:main"


@pytest.mark.slow
def test_pip_install_gives_the_package_and_the_command(region, sequential, tmp_path):
    """`pip install .` from a copy of the tracked files; the installed command reruns an
    inventory (nothing to do) and maps one from scratch in this process."""
    src, target = tmp_path / "src", tmp_path / "site"
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, capture_output=True,
                           text=True, check=True).stdout.split()
    for f in files:
        if (ROOT / f).is_file():
            (src / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / f, src / f)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(src)], check=True, timeout=600)
    assert (target / "glacierseg" / "core" / "regional" / "pipeline.py").is_file()
    assert not (target / "glacierseg" / "processing_provider").exists()
    env = dict(os.environ, PYTHONPATH=str(target))
    command = [str(target / "bin" / "glacierseg"), "inventory"]
    done = subprocess.run(command + region.scenes + ["--dem", region.region.dem, "-o", str(sequential[0]),
                                                     "--band-ratio", "--no-median", "--in-process"],
                          env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "up to date" in done.stderr and "glaciers from" in done.stdout


@pytest.fixture(scope="module")
def local_cluster():
    """A Dask LocalCluster of two worker processes (shared by the cluster tests: each worker loads
    pysheds' numba cache once)."""
    from glacierseg.core.regional.runners import DaskRunner

    runner = DaskRunner(workers=2)
    yield runner
    runner.close()


@pytest.mark.slow
def test_local_cluster_equals_sequential(region, sequential, local_cluster, tmp_path):
    from glacierseg.core.regional.pipeline import run_inventory

    assert local_cluster.cluster.processes and len(local_cluster.cluster.workers) == 2
    assert local_cluster.slots == 2
    assert local_cluster.dashboard.startswith("http://")  # bokeh is in requirements-regional.txt
    summary = run_inventory(options(region, tmp_path / "inventory.gpkg", batch_size=1), local_cluster)
    assert summary["complexes_computed"] == sequential[1]["complexes_computed"]
    assert_same_glaciers(tmp_path / "inventory.gpkg", sequential[0])


@pytest.mark.slow
def test_dask_scheduler_and_worker_commands(region, sequential, tmp_path):
    """`dask scheduler` and two `dask worker` processes on 127.0.0.1, reached by the command's
    --scheduler (scenes on both workers; the complexes in one task, so only one worker pays for
    loading pysheds' numba cache)."""
    dask = os.path.join(os.path.dirname(sys.executable), "dask")
    env = dict(os.environ, PYTHONPATH=str(PKG_DIR))
    info = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0", "--no-dashboard",
                               "--scheduler-file", str(info)], env=env, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(300):
            if info.exists() and info.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(info.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        for _ in range(2):
            procs.append(subprocess.Popen([dask, "worker", address, "--nthreads", "1", "--nworkers", "1",
                                           "--no-dashboard", "--host", "127.0.0.1"], env=env,
                                          stderr=subprocess.DEVNULL))
        from distributed import Client

        with Client(address, timeout=30) as client:
            client.wait_for_workers(2, timeout=120)
        out = tmp_path / "inventory.gpkg"
        done = subprocess.run([sys.executable, "-m", "glacierseg.core.cli", "inventory", *region.scenes,
                               "--dem", region.region.dem, "-o", str(out), "--band-ratio", "--no-median",
                               "--batch-size", "4", "--scheduler", address],
                              env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, done.stderr
        assert f"Dask scheduler {address}" in done.stderr
        assert_same_glaciers(out, sequential[0])
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)


@pytest.mark.slow
def test_worker_killed_mid_run_loses_nothing(region, sequential, local_cluster, tmp_path):
    from glacierseg.core.regional.pipeline import run_inventory

    runner = local_cluster
    result, killed = {}, []

    def run():
        result["summary"] = run_inventory(options(region, tmp_path / "inventory.gpkg", batch_size=1), runner)

    thread = threading.Thread(target=run)
    try:
        thread.start()
        deadline = time.monotonic() + 300
        while not killed and thread.is_alive() and time.monotonic() < deadline:
            busy = {w: keys for w, keys in runner.client.processing().items()
                    if any(str(k).startswith("complexes") for k in keys)}
            if busy:
                worker = next(iter(busy))
                pid = runner.client.run(os.getpid, workers=[worker])[worker]
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            time.sleep(0.05)
    finally:
        thread.join(600)
    assert killed, "no task was running to kill"
    summary = result["summary"]
    assert summary["scenes_failed"] == 0 and summary["complexes_computed"] == sequential[1]["complexes_computed"]
    glaciers = read_layer(tmp_path / "inventory.gpkg", "glaciers")
    assert not any(g["split_status"].startswith("unsplit_error") for g in glaciers)
    assert_same_glaciers(tmp_path / "inventory.gpkg", sequential[0])


def test_map_inventory_algorithm_in_the_qgis_process(region, sequential, glacierseg_provider, tmp_path):
    """processing.run of glacierseg:map_inventory on raster layers: the same glaciers, layers loaded."""
    import processing
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback, QgsProject, QgsRasterLayer

    layers = [QgsRasterLayer(s, os.path.basename(s)) for s in region.scenes]
    assert all(layer.isValid() for layer in layers)
    out = tmp_path / "inventory.gpkg"
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    feedback = QgsProcessingFeedback()
    result = processing.run("glacierseg:map_inventory", {
        "SCENES": layers, "DEM": region.region.dem, "METHOD": 0, "MEDIAN": False, "WORKERS": 0,
        "OUTPUT": str(out)}, context=context, feedback=feedback)
    assert result["N_GLACIERS"] == sequential[1]["glaciers"] and result["N_FAILED"] == 0
    assert_same_glaciers(out, sequential[0])
    loaded = {details.name.split(" — ")[0] for details in context.layersToLoadOnCompletion().values()}
    assert loaded == {"glaciers", "divides", "footprints"}
    assert all("|layername=" in uri for uri in context.layersToLoadOnCompletion())


def test_map_inventory_cancelled_leaves_no_output(region, glacierseg_provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    feedback.progressChanged.connect(lambda p: feedback.cancel() if p > 0 else None)
    out = tmp_path / "inventory.gpkg"
    with pytest.raises(QgsProcessingException, match="(?i)cancel"):
        processing.run("glacierseg:map_inventory", {
            "SCENES": region.scenes, "DEM": region.region.dem, "METHOD": 0, "MEDIAN": False, "WORKERS": 0,
            "OUTPUT": str(out)}, feedback=feedback)
    assert not out.exists()


@pytest.mark.slow
def test_model_method_maps_every_scene_and_counts_only_ice_classes(region, sample_model, tmp_path):
    """Scenes segmented by an ONNX model exported by our code; only the 'glacier' class is ice."""
    from shapely import wkt

    from glacierseg.core.errors import InputError
    from glacierseg.core.regional.pipeline import InventoryOptions, model_method, run_inventory

    def opts(out, ice):
        return InventoryOptions(region.scenes, region.region.dem, str(out), model_method(sample_model),
                                ice_classes=ice)
    summary = run_inventory(opts(tmp_path / "a" / "inventory.gpkg", ["glacier"]))
    assert summary["scenes_mapped"] == 4 and summary["glaciers"] > 0
    both = run_inventory(opts(tmp_path / "b" / "inventory.gpkg", None))  # lakes counted as ice too
    assert both["complexes"] > summary["complexes"]
    area = sum(wkt.loads(g["wkt"]).area for g in read_layer(tmp_path / "a" / "inventory.gpkg", "glaciers"))
    area_both = sum(wkt.loads(g["wkt"]).area for g in read_layer(tmp_path / "b" / "inventory.gpkg", "glaciers"))
    assert area_both > area
    with pytest.raises(InputError, match="not among the mapped classes"):
        run_inventory(opts(tmp_path / "c" / "inventory.gpkg", ["debris"]))


@pytest.mark.slow
def test_map_inventory_algorithm_on_local_workers(region, sequential, glacierseg_provider, tmp_path):
    """The algorithm's 'Local worker processes' = 2: a Dask LocalCluster started from processing.run."""
    import processing
    from qgis.core import QgsProcessingFeedback

    feedback = QgsProcessingFeedback()
    out = tmp_path / "inventory.gpkg"
    result = processing.run("glacierseg:map_inventory", {
        "SCENES": region.scenes, "DEM": region.region.dem, "METHOD": 0, "MEDIAN": False, "WORKERS": 2,
        "OUTPUT": str(out)}, feedback=feedback)
    assert result["N_GLACIERS"] == sequential[1]["glaciers"]
    assert_same_glaciers(out, sequential[0])
    assert any("Dask LocalCluster, 2 worker process(es)" in r["message"] for r in read_layer(out, "run_log"))
