"""A regional glacier inventory from many scenes: map each scene, mosaic, outline, split, attribute.

Steps (each skipped on a rerun when its inputs are unchanged, see ``manifest``):

1. every scene is mapped to a class raster (an ONNX model by ``core.segment`` or the band
   ratio by ``core.band_ratio``), one task per scene, retried ``retries`` times;
2. the class rasters are merged into one ice mosaic by the ``MosaicRule`` (``mosaic``);
3. glacier complexes are outlined over the whole mosaic (``core.vectorize``), so a glacier
   crossing scene edges is one polygon;
4. each complex is split with the DEM (Kienholz et al. 2013) and each of its glaciers gets the
   RGI 7 attributes, in tasks of ``batch_size`` complexes;
5. one GeoPackage is written atomically: ``glaciers``, ``divides``, ``footprints`` (one per
   scene, with its status) and ``run_log``.

Tasks run on a ``runners.SequentialRunner`` or ``runners.DaskRunner``. See docs/regional.md."""
from __future__ import annotations

import dataclasses
import datetime
import glob
import os
import pickle
import time
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple, cast

from .. import parameters
from ..errors import InputError
from ..io import atomic_output, atomic_outputs
from ..progress import Progress, SubProgress, check_cancel, ensure_progress
from . import steps
from .manifest import Manifest, digest
from .mosaic import MosaicRule, build_mosaic, majority_sources, scene_date, scene_summary
from .runners import SequentialRunner, first_numba_use

FOOTPRINT_FIELDS = (("scene", "str"), ("status", "str"), ("attempts", "int"), ("error", "str"), ("date", "str"),
                    ("nodata_pct", "real"), ("mosaic_pixels", "int"))
MAPPED, REUSED, FAILED = "mapped", "reused", "failed"
MAX_BATCH = 16  # complexes per task at most: small enough to balance, large enough to amortise a task's overhead


@dataclass
class InventoryOptions:
    """What one regional run maps and how. ``method``: ``model_method(...)`` or
    ``band_ratio_method(...)``; ``ice_classes``: names of the classes counted as glacier ice
    (default: every class the method maps other than background); ``split``: overrides of
    ``SplitParameters``; ``batch_size``: complexes per task (default: about four tasks per
    worker, at most ``MAX_BATCH``)."""

    scenes: Sequence[str]
    dem: str
    output: str
    method: Dict[str, Any]
    scene_dates: Dict[str, str] = field(default_factory=dict)
    rule: MosaicRule = MosaicRule()
    ice_classes: Optional[Sequence[str]] = None
    min_area_km2: float = parameters.OUTLINE_MIN_AREA_KM2
    retries: int = 2
    batch_size: Optional[int] = None
    split: Dict[str, float] = field(default_factory=dict)
    dem_source: Optional[str] = None
    src_date: Optional[str] = None  # one date for every glacier; None: per glacier, from its main source scene


def model_method(model: str, device: str = "cpu", batch_size: int = 4, threads: Optional[int] = None) -> Dict[str, Any]:
    """Map scenes with an ONNX model (``core.segment.segment_raster``)."""
    return {"kind": "model", "model": model, "device": device, "batch_size": batch_size, "threads": threads}


def band_ratio_method(sensor: str = "sentinel2_msi", method: str = "ratio", **options: Any) -> Dict[str, Any]:
    """Map scenes with the band-ratio mapper (``core.band_ratio.map_glaciers``; ``options`` are its
    keyword arguments, e.g. ``threshold``, ``median``, ``dem``; None means its default). The same
    settings give the same dict, so a rerun recognises scenes mapped before."""
    return dict({k: v for k, v in options.items() if v is not None}, kind="band_ratio", sensor=sensor, method=method)


def _read_scene_list(path: str, scenes: List[str], dates: Dict[str, str]) -> None:
    """Scenes (and dates) of a text list: ``path [YYYY-MM-DD]`` per line, relative paths from
    the list's folder, ``#`` starts a comment."""
    base = os.path.dirname(os.path.abspath(path))
    with open(path, encoding="utf-8") as f:
        for line in f:
            words = line.split("#")[0].split()
            if not words:
                continue
            name = words[0] if words[0].startswith("/vsi") or os.path.isabs(words[0]) else os.path.join(base, words[0])
            scenes.append(name)
            if len(words) > 1:
                dates[name] = words[1]


def resolve_scenes(items: Sequence[str]) -> Tuple[List[str], Dict[str, str]]:
    """Scene names from paths, glob patterns and text files listing one scene per line
    (``_read_scene_list``); returns (scenes, dates given in lists)."""
    scenes: List[str] = []
    dates: Dict[str, str] = {}
    for item in items:
        if item.lower().endswith(".txt") and os.path.isfile(item):
            _read_scene_list(item, scenes, dates)
        elif any(c in item for c in "*?[") and not item.startswith("/vsi"):
            found = sorted(glob.glob(item))
            if not found:
                raise InputError(f"No scene matches {item!r}; check the pattern.")
            scenes += found
        else:
            scenes.append(item)
    if not scenes:
        raise InputError("No scenes given. Give scene files, a glob pattern such as 'scenes/*.tif', or a .txt list.")
    doubles = sorted({s for s in scenes if scenes.count(s) > 1})
    if doubles:
        raise InputError(f"Scene(s) listed twice: {', '.join(doubles)}. List each scene once.")
    return scenes, dates


def _absolute(name: str) -> str:
    """A local path made absolute (workers may run elsewhere); GDAL names such as /vsicurl/… kept."""
    return name if name.startswith("/vsi") or ":" in name.split("/")[0] else os.path.abspath(name)


def _map_scene_task(scene: str, method: Dict[str, Any], classes_out: str, work_dir: str) -> Dict[str, Any]:
    """One scene's class raster and its summary, with the seconds it took (runs on a worker)."""
    start = time.perf_counter()
    classes = steps.map_scene(scene, method, classes_out, work_dir)
    return dict(scene_summary(classes_out), classes=classes_out, class_table=[(c.name, c.value) for c in classes],
                seconds=time.perf_counter() - start)


def _complex_batch_task(batch: Sequence[Tuple[bytes, str]], crs_wkt: str, dem: str, params, dem_source: str,
                        src_date: Optional[str]) -> List[Dict[str, Any]]:
    """Glaciers, divides and attributes of a batch of complexes (runs on a worker); the first
    split in a process runs under ``first_numba_use``."""
    out = []
    for wkb, cid in batch:
        def one(wkb=wkb, cid=cid):
            return steps.glaciers_of_complex(wkb, crs_wkt, dem, cid, params, dem_source, src_date)
        start = time.perf_counter()
        out.append(dict(first_numba_use(one), seconds=time.perf_counter() - start))
    return out


class _Log:
    """The run log: each message to ``progress`` and into the ``run_log`` layer."""

    def __init__(self, progress: Progress):
        self.progress = progress
        self.rows: List[Dict[str, Any]] = []

    def __call__(self, message: str, level: str = "info") -> None:
        self.rows.append({"time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                          "level": level, "message": message})
        self.progress.push_info(("Warning: " if level == "warning" else "") + message)


@dataclass
class _Run:
    """What every step of one run reads and updates."""

    options: InventoryOptions
    runner: Any
    manifest: Manifest
    work: str
    log: _Log
    summary: Dict[str, Any]


def _checked(options: InventoryOptions) -> InventoryOptions:
    """``options`` with local paths made absolute, or ``InputError``."""
    if not options.output.lower().endswith(".gpkg"):
        raise InputError(f"The output {options.output!r} must be a GeoPackage: give a path ending in .gpkg.")
    if not os.path.isfile(options.dem) and not options.dem.startswith("/vsi"):
        raise InputError(f"DEM {options.dem!r} does not exist; give a DEM file or VRT mosaic.")
    method = dict(options.method)
    if method["kind"] == "model":
        method["model"] = _absolute(method["model"])
    return dataclasses.replace(options, scenes=[_absolute(s) for s in options.scenes], dem=_absolute(options.dem),
                               output=os.path.abspath(options.output), method=method,
                               scene_dates={_absolute(k): v for k, v in options.scene_dates.items()})


def run_inventory(options: InventoryOptions, runner=None, progress: Optional[Progress] = None) -> Dict[str, Any]:
    """Run the regional pipeline (module docstring) with ``runner`` (default: in this process).
    Returns the summary: counts of scenes mapped / reused / failed, complexes computed / reused,
    glaciers, which steps did work, and the seconds each scene and complex took."""
    progress = ensure_progress(progress)
    runner = runner or SequentialRunner()
    options = _checked(options)
    stem = os.path.splitext(options.output)[0]
    for sub in ("scenes", "complexes"):
        os.makedirs(os.path.join(stem + ".work", sub), exist_ok=True)
    run = _Run(options, runner, Manifest(stem + ".manifest.json"), stem + ".work", _Log(progress),
               {"scenes_mapped": 0, "scenes_reused": 0, "scenes_failed": 0, "complexes_computed": 0,
                "complexes_reused": 0, "mosaic_built": False, "outlines_built": False, "output_written": False,
                "failed_scenes": {}})
    started = time.monotonic()
    run.log(f"Regional inventory of {len(options.scenes)} scene(s) on {runner.description}"
            + (f"; dashboard {runner.dashboard}" if getattr(runner, "dashboard", None) else ""))
    scenes = _map_scenes(run, SubProgress(progress, 0, 40))
    check_cancel(progress)
    mosaic_path = _mosaic_step(run, scenes)
    progress.set_progress(45)
    complexes_path = _outline_step(run, mosaic_path, sum(s["status"] != FAILED for s in scenes))
    progress.set_progress(50)
    check_cancel(progress)
    glaciers, crs_wkt = _split_complexes(run, complexes_path, SubProgress(progress, 50, 95))
    _output_step(run, scenes, glaciers, crs_wkt, time.monotonic() - started)
    summary = run.summary
    summary.update(glaciers=sum(len(g["result"]["glaciers"]) for g in glaciers), complexes=len(glaciers),
                   scene_seconds=[s["seconds"] for s in scenes if s["status"] == MAPPED],
                   complex_seconds=[g["result"]["seconds"] for g in glaciers if "seconds" in g["result"]],
                   output=options.output, manifest=run.manifest.path)
    progress.set_progress(100)
    return summary


def _mosaic_step(run: _Run, scenes: List[Dict[str, Any]]) -> str:
    """Step 2: the ice mosaic of the mapped scenes (unless made before from the same inputs)."""
    good = _mapped(scenes)
    if not good:
        raise InputError("No scene could be mapped: " + "; ".join(f"{s['path']}: {s['error']}" for s in scenes[:5]))
    ice_values = _ice_values(good, run.options.ice_classes)
    path, source = os.path.join(run.work, "ice_mosaic.tif"), os.path.join(run.work, "mosaic_source.tif")
    inputs = digest(run.options.rule.priority, ice_values,
                    [(s["path"], s["key"], s["date"], s["nodata_fraction"]) for s in good])
    if run.manifest.done("mosaic", inputs, path) and os.path.isfile(source):
        used = run.manifest.step("mosaic")["pixels"]
    else:
        run.log(f"Mosaic of {len(good)} scene(s): {run.options.rule.describe()}.")
        with atomic_outputs(path, source) as (tmp, tmp_source):
            used = build_mosaic(good, ice_values, run.options.rule, cast(str, tmp), tmp_source)
        run.manifest.set_step("mosaic", inputs, pixels=used, product_sha256=run.manifest.file_hash(path))
        run.summary["mosaic_built"] = True
    for s in scenes:
        s["mosaic_pixels"] = used.get(s["path"], 0)
    return path


def _mapped(scenes: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The scenes that were mapped, in scene order: those the mosaic is made of."""
    return [s for s in scenes if s["status"] != FAILED]


def _outline_step(run: _Run, mosaic_path: str, n_scenes: int) -> str:
    """Step 3: glacier complexes over the whole mosaic (unless made before from the same mosaic)."""
    path = os.path.join(run.work, "complexes.gpkg")
    inputs = digest(run.manifest.step("mosaic")["product_sha256"], run.options.min_area_km2)
    if not run.manifest.done("outlines", inputs, path):
        n = steps.outline_complexes(mosaic_path, path, run.options.min_area_km2,
                                    f"regional mosaic of {n_scenes} scene(s)")
        run.log(f"{n} glacier complex(es) outlined over the whole mosaic.")
        run.manifest.set_step("outlines", inputs, count=n, product_sha256=run.manifest.file_hash(path))
        run.summary["outlines_built"] = True
    return path


def _output_step(run: _Run, scenes, glaciers, crs_wkt: str, seconds: float) -> None:
    """Step 5: the GeoPackage, unless the last one was made from the same scenes and complexes."""
    inputs = digest([(s["path"], s["status"] == FAILED, s.get("key"), s.get("error"), s["mosaic_pixels"], s.get("date"))
                     for s in scenes], [g["key"] for g in glaciers], run.options.rule.priority)
    output = run.options.output
    if run.manifest.done("output", inputs, output):
        run.log("Nothing changed since the last run: the output is up to date.")
        return
    summary = run.summary
    run.log(f"{sum(len(g['result']['glaciers']) for g in glaciers)} glacier(s) from {len(glaciers)} complex(es); "
            f"scenes: {summary['scenes_mapped']} mapped, {summary['scenes_reused']} reused, "
            f"{summary['scenes_failed']} failed; {seconds:.1f} s.")
    _write_output(output, glaciers, crs_wkt, scenes, run.log, run.work, run.options.rule)
    run.manifest.set_step("output", inputs, product_sha256=run.manifest.file_hash(output))
    summary["output_written"] = True


def _scene_method(run: _Run) -> Tuple[Dict[str, Any], str]:
    """The method as tasks get it (a model's threads set for the cluster) and its hash (a model's
    file hash included, its path and threads not)."""
    method = dict(run.options.method)
    if method["kind"] == "model":
        if method.get("threads") is None and hasattr(run.runner, "threads_per_worker"):
            method["threads"] = run.runner.threads_per_worker()
        key = dict(method, model=run.manifest.file_hash(method["model"]))
    else:
        key = method
    return method, digest({k: v for k, v in key.items() if k != "threads"})


def _scene_record(run: _Run, order: int, path: str, method_key: str) -> Dict[str, Any]:
    """A scene's record: status REUSED when mapped before from the same file and method (its class
    raster intact), FAILED when the file cannot be read, else no status yet."""
    record: Dict[str, Any] = {"path": path, "order": order, "attempts": 0, "error": None,
                              "date": scene_date(path, run.options.scene_dates.get(path))}
    try:
        record["key"] = digest(run.manifest.file_hash(path), method_key)[:20]
    except OSError as exc:
        return dict(record, status=FAILED, error=f"cannot read the file: {exc}")
    record["classes"] = os.path.join(run.work, "scenes", f"{record['key']}.classes.tif")
    known = run.manifest.scene(path)
    classes = record["classes"]
    intact = os.path.isfile(classes) and known.get("classes_sha256") == run.manifest.file_hash(classes)
    if known.get("key") == record["key"] and known.get("status") in (MAPPED, REUSED) and intact:
        record.update({k: known[k] for k in ("bounds", "crs", "res", "nodata_fraction", "class_table")}, status=REUSED)
        run.summary["scenes_reused"] += 1
    return record


def _map_scenes(run: _Run, progress: Progress) -> List[Dict[str, Any]]:
    """Step 1: map the scenes not mapped before with these inputs; returns one record per scene."""
    method, method_key = _scene_method(run)
    records = [_scene_record(run, order, path, method_key) for order, path in enumerate(run.options.scenes)]
    todo = [r for r in records if "status" not in r]
    finished = [0]

    def done(i: int, outcome) -> None:
        ok, value, attempts = outcome
        record = todo[i]
        record["attempts"] = attempts
        if ok:
            record.update(value, status=MAPPED)
            run.summary["scenes_mapped"] += 1
            classes_sha256 = run.manifest.file_hash(record["classes"])
            run.manifest.set_scene(record["path"], dict(record, classes_sha256=classes_sha256))
            run.log(f"Scene {os.path.basename(record['path'])}: mapped "
                    f"({100 * record['nodata_fraction']:.1f} % nodata).")
        else:
            record.update(status=FAILED, error=value)
            run.manifest.set_scene(record["path"], dict(record))
            run.log(f"Scene {record['path']} failed after {attempts} attempt(s): {value}", "warning")
        finished[0] += 1
        progress.set_progress(100.0 * finished[0] / len(todo))

    args = [(r["path"], method, r["classes"], os.path.join(run.work, "scenes")) for r in todo]
    run.runner.map(_map_scene_task, args, run.options.retries, "scene", progress, done)
    for r in records:
        if r["status"] == FAILED:
            run.summary["scenes_failed"] += 1
            run.summary["failed_scenes"][r["path"]] = r["error"]
    return records


def _ice_values(scenes: Sequence[Dict[str, Any]], ice_classes: Optional[Sequence[str]]) -> List[int]:
    """Class values counted as glacier ice: those named in ``ice_classes``, else all mapped classes."""
    table = {name: value for s in scenes for name, value in s["class_table"]}
    if not ice_classes:
        return sorted(set(table.values()))
    unknown = [n for n in ice_classes if n not in table]
    if unknown:
        raise InputError(f"Ice class(es) {unknown} are not among the mapped classes {sorted(table)}.")
    return sorted(table[n] for n in ice_classes)


def _split_complexes(run: _Run, complexes_path: str, progress: Progress):
    """Step 4: split and attribute every complex not done before with these inputs (cached
    per complex in the work folder)."""
    import shapely

    options, manifest, log, summary = run.options, run.manifest, run.log, run.summary
    geoms, crs_wkt, ids = steps.read_complexes(complexes_path)
    params = steps.split_parameters(**options.split)
    dem_source = options.dem_source or os.path.splitext(os.path.basename(options.dem))[0]
    common = digest(manifest.file_hash(options.dem), dataclasses.asdict(params), dem_source, options.src_date, crs_wkt)
    items = []
    for geom, cid in zip(geoms, ids):
        wkb = shapely.to_wkb(geom)
        key = digest(wkb.hex(), cid, common)[:24]
        item = {"key": key, "id": cid, "wkb": wkb, "cache": os.path.join(run.work, "complexes", key + ".pkl")}
        if os.path.isfile(item["cache"]):
            with open(item["cache"], "rb") as f:
                item["result"] = pickle.load(f)
            summary["complexes_reused"] += 1
        items.append(item)
    todo = [it for it in items if "result" not in it]
    size = options.batch_size or max(1, min(MAX_BATCH, -(-len(todo) // (4 * getattr(run.runner, "slots", 1)))))
    batches = [todo[i:i + size] for i in range(0, len(todo), size)]
    if todo:
        log(f"Splitting {len(todo)} complex(es) in {len(batches)} task(s) ({len(items) - len(todo)} done before).")

    def done(i: int, outcome) -> None:
        ok, value, _ = outcome
        for k, item in enumerate(batches[i]):
            if ok:
                item["result"] = value[k]
                for warning in value[k].get("warnings", ()):
                    log(warning[0].upper() + warning[1:], "warning")
                tmp = f"{item['cache']}.partial-{os.getpid()}"
                with open(tmp, "wb") as f:
                    pickle.dump(value[k], f)
                os.replace(tmp, item["cache"])
                summary["complexes_computed"] += 1
            else:  # the task failed on every try: the complex is kept whole, not cached, redone next run
                item["result"] = {"glaciers": [(item["wkb"], {"complex_id": item["id"],
                                                              "split_status": f"{steps.UNSPLIT_ERROR}: {value}"})],
                                  "divides": []}
                log(f"Complex {item['id']} kept unsplit: its task failed ({value}).", "warning")
        progress.set_progress(100.0 * (i + 1) / len(batches))

    args = [([(it["wkb"], it["id"]) for it in b], crs_wkt, options.dem, params, dem_source, options.src_date)
            for b in batches]
    run.runner.map(_complex_batch_task, args, options.retries, "complexes", progress, done)
    return items, crs_wkt


def _source_dates(geoms, rows, scenes, work: str, rule: MosaicRule) -> None:
    """``src_date`` of each glacier without one (no ``--src-date``): the date of the scene that
    supplied most of its pixels to the mosaic (``mosaic.majority_sources``)."""
    todo = [k for k, row in enumerate(rows) if not row.get("src_date")]
    if not todo:
        return
    good = _mapped(scenes)
    sources = majority_sources(os.path.join(work, "mosaic_source.tif"), [geoms[k] for k in todo], rule.rank(good))
    for k, index in zip(todo, sources):
        rows[k]["src_date"] = good[index]["date"] if index >= 0 else None


def _write_output(output: str, items, crs_wkt: str, scenes, log: _Log, work: str, rule: MosaicRule) -> None:
    """Step 5: the GeoPackage (glaciers, divides, footprints, run_log), whole or not at all."""
    import shapely
    from osgeo import gdal, ogr

    geoms: List[Any] = []
    lines: List[Any] = []
    rows: List[Dict[str, Any]] = []
    line_rows: List[Dict[str, Any]] = []
    for item in items:
        first = len(geoms) + 1
        for wkb, attrs in item["result"]["glaciers"]:
            geoms.append(shapely.from_wkb(wkb))
            rows.append(dict(attrs, glac_id=len(geoms)))
        for wkb, (i, j, length) in item["result"]["divides"]:
            lines.append(shapely.from_wkb(wkb))
            line_rows.append({"complex_id": item["id"], "glac_id_1": first + i, "glac_id_2": first + j,
                              "length_m": length})
    _source_dates(geoms, rows, scenes, work, rule)
    feet, feet_rows = _footprints(scenes, crs_wkt)
    layer_files = []
    with atomic_output(output) as tmp:
        steps.write_layer(tmp, geoms, crs_wkt, rows, steps.glacier_fields(), "glaciers")
        for name, g, r, fields, kind in (("divides", lines, line_rows, steps.divide_fields(), "line"),
                                         ("footprints", feet, feet_rows, list(FOOTPRINT_FIELDS), "polygon")):
            path = os.path.join(work, f".{name}-{os.getpid()}.gpkg")
            steps.write_layer(path, g, crs_wkt, r, fields, name, kind)
            layer_files.append(path)
            gdal.VectorTranslate(tmp, path, options=gdal.VectorTranslateOptions(accessMode="update", layerName=name))
        ds = ogr.Open(tmp, 1)
        table = ds.CreateLayer("run_log", geom_type=ogr.wkbNone)
        for name in ("time", "level", "message"):
            table.CreateField(ogr.FieldDefn(name, ogr.OFTString))
        table.StartTransaction()
        for row in log.rows:
            feat = ogr.Feature(table.GetLayerDefn())
            for k, v in row.items():
                feat.SetField(k, v)
            table.CreateFeature(feat)
        table.CommitTransaction()
        ds = None  # noqa: F841 (closes the file)
    for path in layer_files:
        os.remove(path)


def _footprints(scenes, crs_wkt: str):
    """One polygon per scene (its bounds in the region's CRS; empty when unreadable) and its row."""
    import shapely
    from shapely.geometry import box

    from ..geo import transform_geom

    geoms, rows = [], []
    for s in scenes:
        geom = shapely.Polygon()
        if s.get("bounds"):
            geom = transform_geom(box(*s["bounds"]), s["crs"], crs_wkt)
        geoms.append(geom)
        rows.append({"scene": s["path"], "status": s["status"], "attempts": s["attempts"], "error": s.get("error"),
                     "date": s.get("date"), "nodata_pct": None if s.get("nodata_fraction") is None
                     else 100.0 * s["nodata_fraction"], "mosaic_pixels": s.get("mosaic_pixels", 0)})
    return geoms, rows
