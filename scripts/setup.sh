#!/usr/bin/env bash
# One-shot set-up on Debian 12 (as root or with sudo): QGIS 3.22 LTR from Debian, then a
# virtual environment in .venv that sees QGIS's Python bindings (--system-site-packages)
# with GlacierSeg's pinned Python packages. Idempotent: a second run only checks.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
APT_PACKAGES=(qgis python3-qgis qgis-providers python3-venv python3-pip python3-dev python3-rasterio python3-scipy
              python3-pyproj python3-matplotlib libgeos-dev build-essential xvfb xauth gdb zip make)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing Debian packages: ${missing[*]}"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating $VENV (system site packages, so 'qgis' imports)"
  /usr/bin/python3 -m venv --system-site-packages "$VENV"
fi
stamp="$VENV/.glacierseg-requirements"
want="$(cat "$ROOT/constraints.txt" "$ROOT/requirements.txt" "$ROOT/requirements-dev.txt" "$ROOT/requirements-regional.txt" | sha256sum | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing Python packages (pinned; first run downloads torch, a few GB)"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check \
      -c "$ROOT/constraints.txt" -r "$ROOT/requirements-dev.txt"
  echo "$want" > "$stamp"
fi
"$VENV/bin/python" - <<'PY'
import subprocess
import numpy, onnxruntime, qgis.core, rasterio, shapely
assert numpy.__version__.startswith("1."), f"numpy {numpy.__version__}: GDAL/QGIS need numpy 1.x"
system_geos = subprocess.run(["geos-config", "--version"], capture_output=True, text=True).stdout.strip()
assert shapely.geos_version_string == system_geos, (
    f"shapely uses GEOS {shapely.geos_version_string}, QGIS uses {system_geos}: reinstall shapely "
    "with --no-binary shapely (see requirements.txt)")
print(f"setup: ok (QGIS {qgis.core.Qgis.QGIS_VERSION}, numpy {numpy.__version__}, "
      f"onnxruntime {onnxruntime.__version__}, rasterio {rasterio.__version__})")
PY
