"""Build the installable plugin zip: a top-level ``glacierseg/`` folder with the plugin's files.

Only what QGIS needs goes in (no tests, benchmarks, CI or build folders). Usage:
``python3 scripts/package.py dist/glacierseg.zip``.
"""
import os
import subprocess
import sys
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
INCLUDE = ("metadata.txt", "__init__.py", "plugin.py", "LICENSE", "README.md", "requirements.txt",
           "requirements-gpu.txt", "requirements-dev.txt", "icons", "core", "processing_provider", "ui", "models", "docs")


def plugin_files():
    """Tracked files (or, outside git, all files) under the plugin's folders."""
    try:
        out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError):
        out = [os.path.relpath(os.path.join(d, f), ROOT) for d, _, fs in os.walk(ROOT) for f in fs]
    for rel in sorted(set(out)):
        if rel and rel.split("/")[0] in INCLUDE and "__pycache__" not in rel and os.path.isfile(os.path.join(ROOT, rel)):
            yield rel


def main(target: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(target)), exist_ok=True)
    with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
        for rel in plugin_files():
            zf.write(os.path.join(ROOT, rel), f"glacierseg/{rel}")
    print(f"wrote {target}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "dist", "glacierseg.zip"))
