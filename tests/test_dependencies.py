"""Without onnxruntime (or torch, rasterio, …) the provider still loads and algorithms say what to install."""
import json
import os
import subprocess
import sys

from glacierseg.core.deps import pinned_requirements, require
from glacierseg.core.errors import DependencyError

from .conftest import PKG_DIR

BLOCKED = ["onnxruntime", "torch", "rasterio", "scipy", "shapely", "skimage", "pysheds", "onnx", "h5py"]

SCRIPT = r"""
import importlib.abc, json, sys
BLOCKED = set(sys.argv[1].split(","))

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}")
        return None

sys.meta_path.insert(0, Block())
import importlib.util
_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in BLOCKED else _find_spec(name, *a)
sys.path.insert(0, sys.argv[2])
from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback
app = QgsApplication([], False)
app.initQgis()
from glacierseg.processing_provider.provider import GlacierSegProvider
provider = GlacierSegProvider()
QgsApplication.processingRegistry().addProvider(provider)
ids = [a.id() for a in provider.algorithms()]
errors = {}
for alg_id in ids:
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    try:
        alg.processAlgorithm({}, QgsProcessingContext(), QgsProcessingFeedback())
    except Exception as exc:
        errors[alg_id] = str(exc)
print(json.dumps({"ids": ids, "errors": errors}))
"""


def test_provider_loads_and_algorithms_name_the_missing_package():
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, ",".join(BLOCKED), str(PKG_DIR)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert "glacierseg:segment" in out["ids"] and len(out["ids"]) >= 2
    for alg_id in out["ids"]:
        message = out["errors"][alg_id]
        assert "missing from QGIS's Python" in message and "-m pip install" in message, (alg_id, message)
    segment = out["errors"]["glacierseg:segment"]
    assert "'onnxruntime'" in segment and "onnxruntime==1.31.1" in segment


def test_require_message_uses_pinned_versions():
    assert pinned_requirements()["onnxruntime"] == "onnxruntime==1.31.1"
    require("numpy")  # present: no error
    try:
        require("numpy", "glacierseg_no_such_package")
    except DependencyError as exc:
        assert "'glacierseg_no_such_package'" in str(exc) and "pip install glacierseg_no_such_package" in str(exc)
    else:
        raise AssertionError("missing package not reported")
