"""Identical outputs: segment, vectorize, split and attributes on the sample data give the values
recorded before the issue-18 refactor (tests/data/identical_outputs.json).

The pipeline: the generated scene (``sample_scene``) is segmented with the sample ONNX model
(``sample_model``) on the CPU into a probability and a class raster; both are vectorized with
the model's classes; the glacier outlines (class ``glacier``, selected with GDAL's
VectorTranslate) are split with the scene's DEM into glaciers and divides; the glaciers get
their inventory attributes. What is compared:

- rasters: dtype, shape, transform, CRS, no-data and the SHA-256 of the decoded pixel array
  (``np.ascontiguousarray(arr).tobytes()``) — byte-identical. A second hash of the array
  rounded to 1e-5 is recorded only to say, when the exact one differs, whether the change is
  floating-point noise (another CPU / onnxruntime build) or a real one; either fails.
- vectors: per feature the SHA-256 of its WKB after rounding coordinates to 1e-6 and
  ``shapely.normalize``, and its attribute values (floats rounded to 1e-9), sorted by
  (geometry hash, attributes) so the write order does not matter; plus the counts the core
  functions return.

Each core call sits in one small function (``_segment``, ``_vectorize``, ``_split``,
``_attributes``): when a signature changes (option dataclasses), adapt only that function.

Re-record (only when a behaviour change is intended, e.g. a new split rule — say so in the
commit message)::

    NUMBA_CACHE_DIR=/tmp/numba-$(basename $PWD) .venv/bin/python -m tests.test_identical_outputs --record

The split compiles pysheds' numba functions on first use; with a warm cache the test takes
about 20-30 s on 2 cores.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from pathlib import Path

import pytest

RECORD = Path(__file__).resolve().parent / "data" / "identical_outputs.json"
COORD_DECIMALS = 6  # vertices rounded to 1e-6 (CRS units)
ATTR_DECIMALS = 9  # float attributes rounded to 1e-9
NOISE_DECIMALS = 5  # diagnostic only: raster hash after rounding to 1e-5


# ------------------------------------------------------------------ the core calls (adapt here)
def _segment(image: str, model: str, out_dir: Path) -> dict:
    """core.segment.segment_raster on the CPU: probability and class rasters."""
    from glacierseg.core.segment import segment_raster

    result = segment_raster(image, model, str(out_dir / "probabilities.tif"), str(out_dir / "classes.tif"),
                            device="cpu")
    return {"probabilities": result.probabilities, "classes": result.classes, "contract": result.contract,
            "summary": {"tiles_run": result.tiles_run, "tiles_skipped": result.tiles_skipped,
                        "width": result.width, "height": result.height, "resampled": result.resampled,
                        "band_map": dict(result.band_map)}}


def _vectorize(raster: str, contract, out_path: Path, thresholds=None) -> dict:
    """core.vectorize.vectorize with the model's classes (as segment's outlines are made)."""
    from glacierseg.core.vectorize import vectorize

    result = vectorize(raster, str(out_path), contract.classes, precedence=contract.precedence,
                       thresholds=thresholds, background_value=contract.background.value, source="sample")
    return {"path": result.path, "layer": result.layer_name,
            "summary": {"feature_count": result.feature_count, "removed_small": result.removed_small,
                        "filled_holes": result.filled_holes}}


def _split(outlines: str, dem: str, out_dir: Path) -> dict:
    """core.dem_split.split_glaciers with the default split parameters, divides written too."""
    from glacierseg.core.dem_split import split_glaciers

    result = split_glaciers(outlines, dem, str(out_dir / "glaciers.gpkg"), str(out_dir / "divides.gpkg"))
    return {"glaciers": result["glaciers"], "divides": result["divides"],
            "summary": {k: result[k] for k in ("n_glaciers", "n_divides", "n_split", "n_unsplit_no_dem",
                                               "n_unsplit_error")}}


def _attributes(glaciers: str, dem: str, out_path: Path) -> dict:
    """core.inventory.inventory_attributes with a fixed outline date."""
    from glacierseg.core.inventory import inventory_attributes

    result = inventory_attributes(glaciers, dem, str(out_path), src_date="2021-08-31")
    return {"path": result["output"],
            "summary": {k: result[k] for k in ("n_glaciers", "n_without_topography")}}


# ------------------------------------------------------------------ fingerprints
def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def raster_fingerprint(path: str) -> dict:
    """dtype, shape, transform, CRS, no-data and pixel hashes of a raster."""
    import numpy as np
    import rasterio

    with rasterio.open(path) as ds:
        arr = ds.read()
        meta = {"dtype": str(arr.dtype), "shape": list(arr.shape),
                "transform": [round(v, ATTR_DECIMALS) for v in tuple(ds.transform)[:6]],
                "crs": ds.crs.to_string() if ds.crs else None,
                "nodata": None if ds.nodata is None else repr(float(ds.nodata))}  # 'nan' compares equal
    meta["sha256"] = _sha256(np.ascontiguousarray(arr).tobytes())
    rounded = np.round(arr.astype(np.float64), NOISE_DECIMALS) if arr.dtype.kind == "f" else arr
    meta["sha256_rounded_1e-5"] = _sha256(np.ascontiguousarray(rounded).tobytes())
    return meta


def _value(v):
    if isinstance(v, float):
        return None if math.isnan(v) else round(v, ATTR_DECIMALS)
    return v


def vector_fingerprint(path: str, layer: str | None = None) -> dict:
    """Per feature: geometry hash (rounded 1e-6, normalized WKB) and attributes; sorted; plus layer CRS."""
    import numpy as np
    import shapely
    from osgeo import ogr

    ds = ogr.Open(path)
    assert ds is not None, f"cannot open {path}"
    lyr = ds.GetLayerByName(layer) if layer else ds.GetLayer(0)
    srs = lyr.GetSpatialRef()
    defn = lyr.GetLayerDefn()
    names = [defn.GetFieldDefn(i).GetName() for i in range(defn.GetFieldCount())]
    features = []
    for feat in lyr:
        ref = feat.GetGeometryRef()
        geom = shapely.from_wkb(bytes(ref.ExportToIsoWkb())) if ref is not None else None
        if geom is not None:
            geom = shapely.normalize(shapely.transform(geom, lambda xy: np.round(xy, COORD_DECIMALS)))
            ghash = _sha256(shapely.to_wkb(geom, hex=False, output_dimension=2))
        else:
            ghash = None
        attrs = {n: _value(feat.GetField(n)) for n in names}
        features.append({"geometry": ghash, "attributes": attrs})
    features.sort(key=lambda f: (f["geometry"] or "", json.dumps(f["attributes"], sort_keys=True, default=str)))
    return {"fields": names, "crs": srs.GetAuthorityCode(None) if srs is not None else None,
            "features": features}


# ------------------------------------------------------------------ the pipeline
def glacier_outlines(outlines: str, layer: str, out_path: Path) -> str:
    """The ``glacier`` class of the outlines, as a layer of its own (GDAL VectorTranslate)."""
    from osgeo import gdal

    gdal.UseExceptions()
    gdal.VectorTranslate(str(out_path), outlines, layers=[layer], where="class_name = 'glacier'",
                         layerName="glacier_outlines")
    return str(out_path)


def run_pipeline(image: str, dem: str, model: str, out_dir: Path) -> dict:
    """Segment, vectorize (class and probability rasters), split and attributes; their fingerprints."""
    out_dir.mkdir(parents=True, exist_ok=True)
    seg = _segment(image, model, out_dir)
    contract = seg["contract"]
    vec = _vectorize(seg["classes"], contract, out_dir / "outlines.gpkg")
    vec_p = _vectorize(seg["probabilities"], contract, out_dir / "outlines_from_probabilities.gpkg",
                       thresholds=contract.thresholds)
    glaciers_in = glacier_outlines(vec["path"], vec["layer"], out_dir / "glacier_outlines.gpkg")
    split = _split(glaciers_in, dem, out_dir)
    attrs = _attributes(split["glaciers"], dem, out_dir / "attributes.gpkg")
    return {
        "segment": {"probabilities": raster_fingerprint(seg["probabilities"]),
                    "classes": raster_fingerprint(seg["classes"]), "summary": seg["summary"]},
        "vectorize": {"outlines": vector_fingerprint(vec["path"], vec["layer"]), "summary": vec["summary"]},
        "vectorize_probabilities": {"outlines": vector_fingerprint(vec_p["path"], vec_p["layer"]),
                                    "summary": vec_p["summary"]},
        "split": {"glaciers": vector_fingerprint(split["glaciers"]),
                  "divides": vector_fingerprint(split["divides"]), "summary": split["summary"]},
        "attributes": {"glaciers": vector_fingerprint(attrs["path"]), "summary": attrs["summary"]},
    }


def _normalised(obj):
    """JSON round trip (tuples -> lists), so fresh results compare equal to the recorded ones."""
    return json.loads(json.dumps(obj, sort_keys=True))


def _differences(recorded, actual, where=""):
    """Paths where two JSON-like values differ (at most a few per branch, for a readable message)."""
    if isinstance(recorded, dict) and isinstance(actual, dict):
        out = []
        for key in sorted(set(recorded) | set(actual)):
            if key not in recorded or key not in actual:
                out.append(f"{where}/{key}: only in {'recorded' if key in recorded else 'actual'}")
            else:
                out += _differences(recorded[key], actual[key], f"{where}/{key}")
        return out
    if isinstance(recorded, list) and isinstance(actual, list):
        if len(recorded) != len(actual):
            return [f"{where}: {len(recorded)} recorded items, {len(actual)} now"]
        out = []
        for i, (a, b) in enumerate(zip(recorded, actual)):
            out += _differences(a, b, f"{where}[{i}]")
        return out[:10]
    return [] if recorded == actual else [f"{where}: recorded {recorded!r}, now {actual!r}"]


# ------------------------------------------------------------------ the tests
@pytest.fixture(scope="module")
def fingerprints(sample_scene, sample_model, tmp_path_factory):
    return _normalised(run_pipeline(sample_scene.image, sample_scene.dem, sample_model,
                                    tmp_path_factory.mktemp("identical")))


@pytest.fixture(scope="module")
def recorded():
    if not RECORD.exists():
        pytest.fail(f"{RECORD} is missing; record it with: .venv/bin/python -m tests.test_identical_outputs --record")
    return json.loads(RECORD.read_text())


@pytest.mark.parametrize("step", ["segment", "vectorize", "vectorize_probabilities", "split", "attributes"])
def test_outputs_identical_to_the_recorded_ones(step, fingerprints, recorded):
    assert step in recorded, f"{RECORD.name} has no '{step}'; re-record it (see this module's docstring)"
    diffs = _differences(recorded[step], fingerprints[step], step)
    if step == "segment":
        for name in ("probabilities", "classes"):
            rec, now = recorded[step][name], fingerprints[step][name]
            if rec["sha256"] != now["sha256"] and rec["sha256_rounded_1e-5"] == now["sha256_rounded_1e-5"]:
                diffs.append(f"{name}: only differences below 1e-5 (floating-point noise: another CPU or "
                             "onnxruntime build?) — still a difference; re-record only if the environment changed")
    assert not diffs, "outputs differ from the recorded ones:\n" + "\n".join(diffs[:30])


def test_the_record_covers_every_output(recorded):
    """The record is not empty: features and pixel hashes exist for every step."""
    assert recorded["segment"]["classes"]["shape"] == [1, 512, 512]
    assert recorded["vectorize"]["outlines"]["features"]
    assert recorded["split"]["glaciers"]["features"] and recorded["split"]["divides"]["features"]
    assert len(recorded["attributes"]["glaciers"]["features"]) == recorded["split"]["summary"]["n_glaciers"]


# ------------------------------------------------------------------ the recorder
def record(out_dir: Path | None = None) -> dict:
    """Run the pipeline on freshly generated sample data and write ``RECORD``."""
    import tempfile

    from . import conftest  # noqa: F401 — makes ``glacierseg`` importable (the .build/pkg link)
    from glacierseg.core.sample_data import make_scene
    from glacierseg.models.sample import export_sample_model

    with tempfile.TemporaryDirectory() as tmp:
        base = Path(out_dir or tmp)
        scene = make_scene(str(base / "scene"))
        model = export_sample_model(str(base / "models" / "sample.onnx"), tile_size=64)
        data = _normalised(run_pipeline(scene.image, scene.dem, model, base / "run"))
    RECORD.parent.mkdir(parents=True, exist_ok=True)
    RECORD.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    return data


if __name__ == "__main__":
    if "--record" not in sys.argv[1:]:
        sys.exit("usage: python -m tests.test_identical_outputs --record")
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    result = record()
    print(f"recorded {RECORD}: " + ", ".join(f"{k}: {v.get('summary')}" for k, v in result.items()))
