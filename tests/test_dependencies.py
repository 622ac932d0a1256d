"""Without onnxruntime (or torch, rasterio, …) the provider still loads and algorithms say what to install."""
import json
import os
import subprocess
import sys

import pytest

from glacierseg.core import deps
from glacierseg.core.deps import pinned_requirements, require
from glacierseg.core.errors import DependencyError

from .helpers import PKG_DIR, ROOT

BLOCKED = ["onnxruntime", "torch", "rasterio", "scipy", "shapely", "pysheds", "onnx", "h5py"]

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
    assert "glacierseg:list_models" not in out["errors"]  # needs no package beyond QGIS
    for alg_id in set(out["ids"]) - {"glacierseg:list_models"}:
        message = out["errors"][alg_id]
        assert "missing from QGIS's Python" in message and "Install dependencies" in message, (alg_id, message)
    segment = out["errors"]["glacierseg:segment"]
    assert "'onnxruntime'" in segment and "'onnxruntime>=1.16,<=1.31.1'" in segment
    # the command: this interpreter, pip into GlacierSeg's folder (--prefix: no sudo, no PEP 668 refusal)
    assert f"{sys.executable} -m pip install --prefix" in segment
    # training: the installer's training extra, torch's CPU build up to the tested pin
    train = out["errors"]["glacierseg:train"]
    assert "'torch'" in train and "with 'Training' ticked" in train, train
    assert "'torch>=2.1,<=2.15.0'" in train and f"--extra-index-url {deps.TORCH_CPU_INDEX}" in train, train


def test_require_message_uses_pinned_versions():
    assert pinned_requirements()["onnxruntime"] == "onnxruntime==1.31.1"
    require("numpy")  # present: no error
    try:
        require("numpy", "glacierseg_no_such_package")
    except DependencyError as exc:
        assert "'glacierseg_no_such_package'" in str(exc) and "glacierseg_no_such_package" in str(exc).splitlines()[-1]
    else:
        raise AssertionError("missing package not reported")


def test_interpreter_inside_qgis_is_the_python_not_the_qgis_binary(monkeypatch):
    """Inside QGIS sys.executable is the QGIS binary (/usr/bin/qgis); the command must name Python."""
    monkeypatch.setattr(sys, "executable", "/usr/bin/qgis")
    python = deps.python_interpreter()
    assert os.path.basename(python).startswith("python3") and os.path.isfile(python)
    assert python.startswith(sys.exec_prefix)
    out = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True)
    assert out.stdout.strip() == str(tuple(sys.version_info[:2]))


def test_runtime_check_reads_versions_without_importing():
    statuses = {s.requirement.module: s for s in deps.check_runtime()}
    assert statuses["onnxruntime"].ok and statuses["numpy"].ok
    code = "import sys; from glacierseg.core import deps; deps.check_runtime(); " \
           "print(sorted(m for m in ('onnxruntime', 'scipy', 'pysheds', 'rasterio', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(PKG_DIR)))
    assert out.stdout.strip() == "[]", out.stderr
    too_old = deps.Status(deps.RUNTIME[2], "1.8.5")  # Debian 12's python3-shapely
    assert not too_old.ok and "too old (needs ≥ 2.0)" in too_old.describe()


@pytest.mark.parametrize("platform, pip, source, system", [
    ("debian12", ["shapely>=2.0,<=2.2.0", "onnxruntime>=1.16,<=1.31.1"], ["shapely"],
     ["python3-rasterio", "libgeos-dev", "python3-dev", "build-essential"]),
    ("ubuntu2404", ["onnxruntime>=1.16,<=1.31.1"], [], ["python3-rasterio", "python3-shapely"]),
    ("windows", ["onnxruntime>=1.16,<=1.31.1"], [], ["python3-rasterio", "python3-shapely"]),
])
def test_install_plan_keeps_one_gdal_and_one_geos(platform, pip, source, system):
    missing = [deps.Status(r, None) for r in deps.RUNTIME if r.module in ("onnxruntime", "shapely", "rasterio")]
    plan = deps.install_plan(missing, "/profile/glacierseg/python", platform, python="/usr/bin/python3.11")
    assert plan.pip == pip and plan.source_builds == source and plan.system + plan.build == system
    args = plan.arguments()
    assert args[:5] == ["-m", "pip", "install", "--prefix", "/profile/glacierseg/python"]
    assert args[-1].startswith("numpy==")  # QGIS's numpy stays
    if source:
        assert args[args.index("--no-binary") + 1] == "shapely"
    gpu = deps.install_plan([], "/p", platform, gpu=True, python="/usr/bin/python3.11")
    assert gpu.pip == ["onnxruntime-gpu>=1.16,<=1.31.1"]  # oldest usable .. tested pin


@pytest.mark.slow
def test_pip_installs_into_glacierseg_prefix_under_pep668(tmp_path):
    """Debian's /usr/bin/python3 is 'externally managed' (PEP 668); GlacierSeg's --prefix install
    is not refused, lands in the GlacierSeg folder and imports once the folder is activated."""
    python = "/usr/bin/python3"
    if not os.path.isfile("/usr/lib/python3.11/EXTERNALLY-MANAGED") or not deps.has_pip(python):
        pytest.skip("needs Debian 12's externally managed Python with pip")
    plan = deps.InstallPlan("debian12", python, str(tmp_path / "python"), pip=["geojson==3.1.0"])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([python] + plan.arguments(), capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "externally-managed" not in proc.stdout + proc.stderr
    code = (f"import sys; sys.path.insert(0, {str(PKG_DIR)!r}); from glacierseg.core import deps; "
            f"deps.activate({plan.prefix!r}); import geojson; print(geojson.__file__)")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env)
    assert out.stdout.strip().startswith(plan.prefix), out.stderr


def test_too_old_package_is_named_by_the_algorithms(monkeypatch):
    real = deps.installed_version
    monkeypatch.setattr(deps, "installed_version",
                        lambda r: "1.8.5" if r.module == "shapely" else real(r))  # Debian 12's python3-shapely
    with pytest.raises(DependencyError, match=r"newer Python package\(s\): shapely 1.8.5: too old \(needs ≥ 2.0\)"):
        require("numpy", "shapely")


def test_cuda_report_says_when_cuda_does_not_load(qgis_app, monkeypatch, tmp_path):
    """The GPU option's report on a machine whose onnxruntime offers no CUDA provider (this one)."""
    from glacierseg.core.runtime import available_providers
    from glacierseg.ui.install_dialog import cuda_report

    monkeypatch.setenv("GLACIERSEG_HOME", str(tmp_path))
    if "CUDAExecutionProvider" in available_providers():
        pytest.skip("this machine's onnxruntime offers CUDA")
    report = cuda_report()
    assert report.startswith("CUDA check: this onnxruntime offers ") and "CPUExecutionProvider" in report
    assert "not CUDA" in report and "restart QGIS" in report


def test_printed_command_quotes_version_ranges_for_the_shell():
    plan = deps.InstallPlan("windows", r"C:\OSGeo4W\apps\Python39\python.exe", r"C:\Users\me\AppData\glacierseg\python",
                            pip=["onnxruntime>=1.16,<=1.31.1"])
    args = plan.arguments()
    assert " ".join(deps._quote(a, windows=True) for a in args[-2:-1]) == '"onnxruntime>=1.16,<=1.31.1"'
    assert deps._quote("onnxruntime>=1.16,<=1.31.1", windows=False) == "'onnxruntime>=1.16,<=1.31.1'"
    # the POSIX command runs as printed: the shell hands pip the range unchanged
    line = deps.InstallPlan("debian12", sys.executable, "/tmp/x", pip=["onnxruntime>=1.16,<=1.31.1"]).command()
    out = subprocess.run(["sh", "-c", f"printf '%s\\n' {line.split(' ', 1)[1]}"], capture_output=True, text=True).stdout
    assert "onnxruntime>=1.16,<=1.31.1" in out.splitlines()


def test_restart_needed_only_for_packages_already_loaded():
    import numpy  # noqa: F401  (loaded in this process)

    plan = deps.InstallPlan("debian12", sys.executable, "/tmp/x",
                            pip=["onnxruntime-gpu>=1.16,<=1.31.1", "numpy==1.26.4"])
    assert deps.loaded_before(plan) == ["numpy"] + (["onnxruntime"] if "onnxruntime" in sys.modules else [])
    assert deps.loaded_before(deps.InstallPlan("debian12", sys.executable, "/tmp/x", pip=["pysheds>=0.3,<=0.5"])) == \
        (["pysheds"] if "pysheds" in sys.modules else [])


def _pins_in(path):
    pins = {}
    with open(os.path.join(ROOT, path), encoding="utf-8") as fh:
        for line in fh:
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==")
                pins[name.lower()] = version
    return pins


def test_pins_in_deps_agree_with_the_requirements_files():
    """The deps module carries the pins the installer installs up to (no file read at run time); the
    requirements files that developers and CI install from must say the same."""
    files = {**_pins_in("requirements.txt"), **_pins_in("requirements-dev.txt")}
    for r in deps.RUNTIME + deps.TRAINING:
        if r.pin:
            assert files.get(r.distribution) == r.pin, (r.distribution, r.pin, files.get(r.distribution))
    assert _pins_in("requirements-gpu.txt")["onnxruntime-gpu"] == deps.GPU_PIN
    assert not any("skimage" == r.module for r in deps.RUNTIME) and "scikit-image" not in files


@pytest.mark.parametrize("platform, gpu, index", [("debian12", False, True), ("debian12", True, False),
                                                  ("windows", False, False), ("macos", False, False)])
def test_training_extra_in_the_install_plan(platform, gpu, index):
    """Torch and what training needs, offered as the 'training' extra: oldest usable .. tested pin;
    torch's CPU build on Linux unless the GPU option asks for the CUDA one."""
    statuses = [deps.Status(r, None) for r in deps.TRAINING] + [deps.Status(r, "99") for r in deps.RUNTIME]
    plan = deps.install_plan(statuses, "/p", platform, gpu=gpu, python="/usr/bin/python3.11")
    assert plan.pip[:4] == ["torch>=2.1,<=2.15.0", "torchvision>=0.16,<=0.29.2",
                            "segmentation-models-pytorch>=0.3.3,<=0.6.0", "onnx>=1.15,<=1.23.2"]
    assert ("onnxruntime-gpu>=1.16,<=1.31.1" in plan.pip) == gpu
    args = plan.arguments()
    assert (args.count("--extra-index-url") == 1 and deps.TORCH_CPU_INDEX in args) == index
    # the runtime plan alone offers no torch
    runtime = deps.install_plan(deps.check_runtime(), "/p", platform, python="/usr/bin/python3.11")
    assert not any(p.startswith("torch") for p in runtime.pip) and not runtime.index_urls
    # this machine: the training extra is installed (requirements-dev.txt), so nothing is left to do
    assert all(s.ok for s in deps.check_runtime(training=True) if s.requirement in deps.TRAINING)


def test_install_dialog_offers_the_training_extra(qgis_app, tmp_path, monkeypatch):
    """Ticking 'Training' lists torch & co in the table and plans their install where missing."""
    from glacierseg.ui.install_dialog import InstallDialog

    real = deps.installed_version
    monkeypatch.setattr(deps, "installed_version", lambda r: None if r.module == "torch" else real(r))
    dialog = InstallDialog(str(tmp_path / "python"), platform="debian12")
    rows = lambda: [dialog.table.item(r, 0).text() for r in range(dialog.table.rowCount())]  # noqa: E731
    assert "torch" not in rows() and not any(p.startswith("torch") for p in dialog.plan.pip)
    dialog.training.setChecked(True)
    assert rows()[-len(deps.TRAINING):] == [r.distribution for r in deps.TRAINING]
    torch_row = rows().index("torch")
    assert dialog.table.item(torch_row, 1).text() == "missing"
    assert dialog.table.item(torch_row, 3).text().startswith("pip")
    assert dialog.plan.pip == ["torch>=2.1,<=2.15.0"] and dialog.plan.index_urls == [deps.TORCH_CPU_INDEX]
    assert "torch&gt;=2.1,&lt;=2.15.0" in dialog.plan_label.text() and "CPU build" in dialog.plan_label.text()
    assert dialog.install_button.isEnabled()
    dialog.resize(780, 760)
    out = ROOT / "tests" / "artifacts" / "install_dialog_training"
    out.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(out / "training_ticked.png"))
    dialog.close()
