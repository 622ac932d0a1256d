"""Build the installable plugin zip: a top-level ``glacierseg/`` folder with the plugin's files
and the sample model installed in ``glacierseg/bundled_models/glacierseg-sample/``.

Only what QGIS needs goes in (no tests, benchmarks, CI or build folders). The sample model is
exported by ``models/sample.py``, which needs torch: it is built in a subprocess with the
project's ``.venv`` Python (``make venv``), so this script itself runs with any Python 3. Usage:
``python3 scripts/package.py dist/glacierseg.zip``.
"""
import os
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = ("metadata.txt", "__init__.py", "plugin.py", "LICENSE", "CHANGELOG.md", "README.md", "requirements.txt",
           "requirements-gpu.txt", "requirements-dev.txt", "requirements-regional.txt", "icons", "core",
           "processing_provider", "ui", "models", "docs")
REQUIRED = ("metadata.txt", "__init__.py", "LICENSE")  # the QGIS plugin repository refuses a zip without a LICENSE


def plugin_files():
    """Tracked files (or, outside git, all files) under the plugin's folders."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        out = [os.path.relpath(os.path.join(d, f), ROOT) for d, _, fs in os.walk(ROOT) for f in fs]
    for rel in sorted(set(out)):
        if rel and rel.split("/")[0] in INCLUDE and "__pycache__" not in rel \
                and os.path.isfile(os.path.join(ROOT, rel)):
            yield rel


SAMPLE_NAME = "glacierseg-sample"
BUILD_SAMPLE = """
import sys
sys.path.insert(0, sys.argv[1])
from glacierseg.core.store import ModelStore
from glacierseg.models.sample import export_sample_model
onnx_path = export_sample_model(sys.argv[2] + "/sample.onnx")
ModelStore(sys.argv[2] + "/bundled_models").install(onnx_path, name=sys.argv[3])
"""


def build_bundled_models(work: str) -> str:
    """Export the sample model and install it into ``work/bundled_models`` (subprocess, torch)."""
    python = os.path.join(ROOT, ".venv", "bin", "python")
    python = python if os.path.exists(python) else sys.executable
    pkg = os.path.join(work, "pkg")
    os.makedirs(pkg)
    os.symlink(ROOT, os.path.join(pkg, "glacierseg"), target_is_directory=True)
    subprocess.run([python, "-c", BUILD_SAMPLE, pkg, work, SAMPLE_NAME], check=True)
    return os.path.join(work, "bundled_models")


def main(target: str) -> None:
    """Write the plugin zip to ``target`` (folder ``glacierseg/``, sample model installed)."""
    files = list(plugin_files())
    missing = [name for name in REQUIRED if name not in files]
    if missing:
        sys.exit(f"package: {', '.join(missing)} missing from {ROOT} (tracked or untracked, not ignored)")
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        bundled = build_bundled_models(work)
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for rel in files:
                zf.write(os.path.join(ROOT, rel), f"glacierseg/{rel}")
            for folder, _, files in os.walk(bundled):
                for name in sorted(files):
                    path = os.path.join(folder, name)
                    zf.write(path, "glacierseg/bundled_models/" + os.path.relpath(path, bundled))
    print(f"wrote {target} (with the sample model installed as {SAMPLE_NAME!r})")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "dist", "glacierseg.zip"))
