"""The demo: a generated Sentinel-2-like scene and the sample model, segmented by
``glacierseg:segment`` through ``qgis_process`` (as a user would from a shell).

Usage: ``python scripts/demo.py OUTPUT_DIR`` (``make demo`` does set-up first).
"""
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QGIS_PROCESS = "/usr/bin/qgis_process.bin"  # Debian's wrapper passes a flag QGIS 3.22 rejects


def plugin_path() -> str:
    """A folder holding a ``glacierseg`` link to this checkout (the plugin folder)."""
    pkg = os.path.join(ROOT, ".build", "pkg")
    os.makedirs(pkg, exist_ok=True)
    link = os.path.join(pkg, "glacierseg")
    if not os.path.exists(link):
        os.symlink(ROOT, link)
    return pkg


def outline_areas(path: str) -> dict:
    """Class name -> (polygon count, total area in km²) of the outlines layer."""
    from osgeo import ogr

    totals: dict = {}
    source = ogr.Open(path)  # keep the data source alive while its layer is read
    for feature in source.GetLayer(0):
        count, area = totals.get(feature.GetField("class_name"), (0, 0.0))
        totals[feature.GetField("class_name")] = (count + 1, area + feature.GetField("area_km2"))
    return totals


def main(out_dir: str) -> None:
    """Generate the sample scene and model in ``out_dir``, segment through qgis_process, print the outlines."""
    out_dir = os.path.abspath(out_dir)
    os.makedirs(out_dir, exist_ok=True)
    sys.path.insert(0, plugin_path())
    from glacierseg.core.sample_data import make_scene
    from glacierseg.models.sample import export_sample_model

    scene = make_scene(os.path.join(out_dir, "scene"))
    model = export_sample_model(os.path.join(out_dir, "sample_model.onnx"))
    print(f"scene: {scene.image} ({scene.size}×{scene.size} px, {scene.pixel_size:g} m, 6 Sentinel-2 bands)")
    print(f"model: {model}")

    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_PLUGINPATH=plugin_path(),
               QGIS_CUSTOM_CONFIG_PATH=tempfile.mkdtemp(prefix="glacierseg-profile-"))
    lib = os.path.join(ROOT, ".venv", "lib")
    site = [os.path.join(lib, d, "site-packages") for d in os.listdir(lib)]
    env["PYTHONPATH"] = os.pathsep.join(site)
    subprocess.run([QGIS_PROCESS, "plugins", "enable", "glacierseg"], env=env, check=True, capture_output=True)
    outputs = {
        "OUTPUT_PROBABILITIES": os.path.join(out_dir, "probabilities.tif"),
        "OUTPUT_CLASSES": os.path.join(out_dir, "classes.tif"),
        "OUTPUT_OUTLINES": os.path.join(out_dir, "outlines.gpkg"),
    }
    args = [QGIS_PROCESS, "--json", "run", "glacierseg:segment", "--",
            f"INPUT={scene.image}", f"MODEL={model}", "TTA=1"] + [f"{k}={v}" for k, v in outputs.items()]
    print("running:", " ".join(args))
    proc = subprocess.run(args, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"qgis_process failed:\n{proc.stdout}\n{proc.stderr}")
    result = json.loads(proc.stdout[proc.stdout.index("{"):])
    for line in result.get("log", "").splitlines() if isinstance(result.get("log"), str) else []:
        print("  log:", line)
    print("outputs:")
    for key, value in result["results"].items():
        print(f"  {key}: {value}")
    print("mapped (outline polygons):")
    for name, (count, area) in sorted(outline_areas(outputs["OUTPUT_OUTLINES"]).items()):
        print(f"  {name}: {count} polygons, {area:.2f} km²")
    print(f"open them in QGIS: {out_dir}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "demo_output"))
