"""Which Python packages GlacierSeg needs in QGIS's Python, whether they are there, and how to
install the missing ones into GlacierSeg's own package folder (QGIS-free).

- ``RUNTIME``: the packages with the oldest version the code works with; ``check_runtime``
  reads their installed versions with ``importlib.metadata`` (no package is imported, so it is
  cheap enough for plugin start).
- ``Requirement.pin``: the tested version pip installs at most (requirements*.txt, for developers
  and CI, carry the same pins: ``tests/test_dependencies.py`` checks). The pins live here, not
  read from those files at run time: what the plugin installs is code, not a text file that
  packaging may drop or a developer may edit for a CI machine.
- ``TRAINING``: the optional "training" extra (torch and what the torch side needs), offered by
  the Install dialog; ``glacierseg:train`` runs in a child Python that sees the same packages.
- ``install_plan`` says, per platform, which packages pip installs into GlacierSeg's folder
  (``--prefix`` under the QGIS profile: no sudo, no PEP 668 refusal, nothing in the system
  Python) and which must come from the system's package manager first, so that QGIS, rasterio
  and shapely share one GDAL and one GEOS (two GEOS in one process crash QGIS).
- ``python_interpreter`` finds the Python executable of the running interpreter (inside QGIS
  ``sys.executable`` is the QGIS binary on Linux and Windows).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import sysconfig
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import DependencyError

PACKAGES_DIR = "python"  # GlacierSeg's package prefix, inside its folder in the QGIS profile


@dataclass(frozen=True)
class Requirement:
    """A runtime package: import name, distribution name(s), oldest version the code works with."""

    module: str
    distributions: Tuple[str, ...]
    minimum: str
    pin: str = ""  # tested version: pip installs from ``minimum`` up to it ('' = no upper bound)

    @property
    def distribution(self) -> str:
        """The distribution name pip installs (the first one listed)."""
        return self.distributions[0]


RUNTIME = (
    Requirement("numpy", ("numpy",), "1.21"),
    Requirement("rasterio", ("rasterio",), "1.3"),
    Requirement("shapely", ("shapely",), "2.0", "2.2.0"),  # shapely 2 API (make_valid, union_all, STRtree)
    Requirement("pyproj", ("pyproj",), "3.0"),
    Requirement("scipy", ("scipy",), "1.10", "1.17.1"),
    Requirement("onnxruntime", ("onnxruntime", "onnxruntime-gpu"), "1.16", "1.31.1"),
    Requirement("pysheds", ("pysheds",), "0.3", "0.5"),
)
GPU_PIN = "1.31.1"  # onnxruntime-gpu (requirements-gpu.txt)
# The "training" extra: what ``python -m glacierseg.models.cli train`` imports (torch; smp and its
# torchvision for the default network unet_efficientnet_b0; onnx to export; matplotlib, which QGIS
# ships, for the HTML report).
TRAINING = (
    Requirement("torch", ("torch",), "2.1", "2.15.0"),
    Requirement("torchvision", ("torchvision",), "0.16", "0.29.2"),
    Requirement("segmentation_models_pytorch", ("segmentation-models-pytorch",), "0.3.3", "0.6.0"),
    Requirement("onnx", ("onnx",), "1.15", "1.23.2"),
    Requirement("matplotlib", ("matplotlib",), "3.5"),
)
# torch's PyPI wheels for Linux carry the CUDA libraries (GBs); without the GPU option the CPU
# builds come from PyTorch's own index (their versions, e.g. 2.15.0+cpu, satisfy the same range).
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
_BY_MODULE = {r.module: r for r in RUNTIME + TRAINING}

# Where each package comes from, per platform: "pip" (GlacierSeg's folder), "source" (pip
# builds it against the system's library, needing BUILD_PACKAGES), or the name of the system
# package to install first. numpy always comes with QGIS and is never installed by GlacierSeg.
PLATFORMS = ("debian12", "ubuntu2404", "windows", "macos", "linux")
SOURCES: Dict[str, Dict[str, str]] = {
    # rasterio: PyPI wheels bundle their own GDAL; use the one built on QGIS's GDAL
    "rasterio": {"debian12": "python3-rasterio", "ubuntu2404": "python3-rasterio", "windows": "python3-rasterio",
                 "macos": "pip", "linux": "pip"},
    # shapely: Debian 12's python3-shapely is 1.8 (too old); Ubuntu 24.04's is 2.0 on the system GEOS
    "shapely": {"debian12": "source", "ubuntu2404": "python3-shapely", "windows": "python3-shapely",
                "macos": "pip", "linux": "source"},
    "pyproj": {"debian12": "python3-pyproj", "ubuntu2404": "python3-pyproj", "windows": "python3-pyproj",
               "macos": "pip", "linux": "pip"},
    "scipy": {"debian12": "python3-scipy", "ubuntu2404": "python3-scipy", "windows": "python3-scipy",
              "macos": "pip", "linux": "pip"},
}
BUILD_PACKAGES = {  # what a source build of shapely needs (GEOS headers, Python headers, a compiler)
    "debian12": ("libgeos-dev", "python3-dev", "build-essential"),
    "linux": ("GEOS development files (geos-config)", "Python development headers", "a C compiler"),
}
PIP_SYSTEM_PACKAGE = {"debian12": "python3-pip", "ubuntu2404": "python3-pip"}


def distribution_name(spec: str) -> str:
    """'onnxruntime>=1.16,<=1.31.1' -> 'onnxruntime' (lower case)."""
    return re.split(r"[<>=!~ \[]", spec.strip(), 1)[0].lower()


def requirement_range(req: Requirement, gpu: bool = False) -> str:
    """What pip installs for ``req``: from its oldest usable version up to the tested pin, so pip
    takes the pin where QGIS's numpy allows it and the newest older release that fits otherwise
    (Debian 12's QGIS Python has numpy 1.24; shapely 2.2 needs numpy ≥ 1.26). With ``gpu``
    onnxruntime is its CUDA build, onnxruntime-gpu."""
    name, pin = req.distribution, req.pin
    if gpu and req.module == "onnxruntime":
        name, pin = "onnxruntime-gpu", GPU_PIN
    return f"{name}>={req.minimum}" + (f",<={pin}" if pin else "")


def pinned_requirements(gpu: bool = False) -> Dict[str, str]:
    """Distribution name -> tested pin (``name==version``) of the runtime and training packages
    (``onnxruntime`` -> the GPU build's pin when ``gpu``)."""
    pins = {r.distribution: f"{r.distribution}=={r.pin}" for r in RUNTIME + TRAINING if r.pin}
    if gpu:
        pins["onnxruntime"] = f"onnxruntime-gpu=={GPU_PIN}"
    return pins


def _release(version: str) -> Tuple[int, ...]:
    return tuple(int(p) for p in re.findall(r"\d+", version.split("+")[0])[:3])


def installed_version(requirement: Requirement) -> Optional[str]:
    """Installed version of any of the requirement's distributions (metadata only, no import)."""
    for dist in requirement.distributions:
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return None


@dataclass(frozen=True)
class Status:
    """A runtime requirement and the version installed (None: missing)."""

    requirement: Requirement
    version: Optional[str]

    @property
    def ok(self) -> bool:
        """Installed and at least the oldest version the code works with."""
        return self.version is not None and _release(self.version) >= _release(self.requirement.minimum)

    def describe(self) -> str:
        """One line for the user: package, version, and what is wrong with it."""
        r = self.requirement
        if self.version is None:
            return f"{r.distribution}: missing (needs ≥ {r.minimum})"
        return f"{r.distribution} {self.version}" + ("" if self.ok else f": too old (needs ≥ {r.minimum})")


def check_runtime(modules: Optional[Iterable[str]] = None, training: bool = False) -> List[Status]:
    """Installed state of the runtime packages (all, with the training extra if ``training``, or
    those of ``modules``)."""
    everything = RUNTIME + TRAINING if training else RUNTIME
    wanted = everything if modules is None else [_BY_MODULE[m] for m in modules if m in _BY_MODULE]
    return [Status(r, installed_version(r)) for r in wanted]


def problems(modules: Optional[Iterable[str]] = None, training: bool = False) -> List[Status]:
    """Runtime requirements missing or too old (``training``: the Training extra's too)."""
    return [s for s in check_runtime(modules, training=training) if not s.ok]


# ------------------------------------------------------------------ platform and interpreter
def platform_id() -> str:
    """One of ``PLATFORMS`` for this machine."""
    if os.name == "nt":
        return "windows"
    if sys.platform == "darwin":
        return "macos"
    release: Dict[str, str] = {}
    try:
        with open("/etc/os-release", encoding="utf-8") as fh:
            for line in fh:
                key, _, value = line.strip().partition("=")
                release[key] = value.strip('"')
    except OSError:
        pass
    if release.get("ID") == "ubuntu" and _release(release.get("VERSION_ID", "0")) >= (24,):
        return "ubuntu2404"
    if release.get("ID") in ("debian", "ubuntu") or "debian" in release.get("ID_LIKE", ""):
        return "debian12"  # Debian 12 and other Debian-based systems: the conservative recipe
    return "linux"


def python_interpreter() -> str:
    """The Python executable of the running interpreter. Inside QGIS ``sys.executable`` is the
    QGIS binary (Linux: /usr/bin/qgis; Windows: qgis-bin.exe); the interpreter then lives under
    ``sys.exec_prefix`` (Linux/macOS ``bin/python3.X``; OSGeo4W ``apps/Python3X/python.exe``)."""
    exe = sys.executable or ""
    if os.path.basename(exe).lower().startswith("python"):
        return exe
    major, minor = sys.version_info[:2]
    if os.name == "nt":
        candidates = [os.path.join(sys.exec_prefix, "python.exe"), os.path.join(sys.exec_prefix, "python3.exe")]
    else:
        candidates = [os.path.join(sys.exec_prefix, "bin", f"python{major}.{minor}"),
                      os.path.join(sys.exec_prefix, "bin", f"python{major}"),
                      os.path.join(sys.exec_prefix, "bin", "python3")]
    for path in candidates:
        if os.path.isfile(path):
            return path
    raise DependencyError(
        f"Cannot find the Python {major}.{minor} interpreter that runs QGIS (looked for "
        f"{', '.join(candidates)}). Install the packages by hand (see the GlacierSeg README)."
    )


def has_pip(python: str) -> bool:
    """Whether the interpreter ``python`` can run pip."""
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


# ------------------------------------------------------------------ GlacierSeg's package folder
def package_paths(prefix: str) -> List[str]:
    r"""Where ``pip install --prefix <prefix>`` puts packages for this interpreter: purelib and
    platlib of the scheme pip picks for a prefix (Debian: ``<prefix>/local/lib/python3.X/dist-packages``;
    a macOS framework Python: ``posix_prefix``, not its framework scheme; Windows ``<prefix>\\Lib\\site-packages``)."""
    preferred = getattr(sysconfig, "get_preferred_scheme", None)  # Python >= 3.10
    scheme = preferred("prefix") if preferred else ("nt" if os.name == "nt" else "posix_prefix")  # Python 3.9
    paths = []
    for key in ("purelib", "platlib"):
        path = sysconfig.get_path(key, scheme, vars={"base": prefix, "platbase": prefix})
        if path not in paths:
            paths.append(path)
    return paths


def activate(prefix: str) -> None:
    """Put GlacierSeg's package folder first on ``sys.path`` (its packages were installed to
    complement or replace too-old ones of QGIS's Python) and remember it for install commands."""
    global _PREFIX
    _PREFIX = prefix
    for path in reversed(package_paths(prefix)):
        if path not in sys.path:
            sys.path.insert(0, path)
    importlib.invalidate_caches()


_PREFIX: Optional[str] = None


@dataclass
class InstallPlan:
    """What installing the missing packages takes on one platform."""

    platform: str
    python: str
    prefix: str
    pip: List[str] = field(default_factory=list)  # pinned requirements pip installs into ``prefix``
    index_urls: List[str] = field(default_factory=list)  # extra package indexes (torch's CPU builds)
    source_builds: List[str] = field(default_factory=list)  # built by pip against system libraries
    system: List[str] = field(default_factory=list)  # system packages the user installs first
    build: List[str] = field(default_factory=list)  # system packages a source build needs

    def command(self) -> str:
        """The pip command line, quoted for a shell."""
        return " ".join(_quote(a) for a in [self.python] + self.arguments())

    def arguments(self) -> List[str]:
        """Arguments after the interpreter. numpy is pinned to the running version, which QGIS's
        GDAL bindings are built for: pip keeps it and refuses packages that need another."""
        args = ["-m", "pip", "install", "--prefix", self.prefix, "--no-warn-script-location",
                "--disable-pip-version-check", "--progress-bar", "off"]
        for name in self.source_builds:
            args += ["--no-binary", name]
        for url in self.index_urls:
            args += ["--extra-index-url", url]
        numpy = installed_version(_BY_MODULE["numpy"])
        return args + self.pip + ([f"numpy=={numpy}"] if numpy and self.pip else [])

    def system_command(self) -> str:
        """The command (or instruction) that installs the system packages, or ''."""
        packages = self.system + self.build
        if not packages:
            return ""
        if self.platform in ("debian12", "ubuntu2404"):
            return "sudo apt-get install " + " ".join(packages)
        if self.platform == "windows":
            return "OSGeo4W Setup (Advanced install) › select " + ", ".join(packages)
        return "install " + ", ".join(packages)


def loaded_before(plan: InstallPlan) -> List[str]:
    """Modules that ``plan`` installed but this Python had already imported (an older or other
    build is in use until QGIS restarts)."""
    installed = {distribution_name(p) for p in plan.pip}
    return [r.module for r in RUNTIME if r.module in sys.modules and installed & set(r.distributions)]


def _quote(arg: str, windows: bool = os.name == "nt") -> str:
    """``arg`` as typed in a terminal: POSIX shell quoting, or double quotes in the OSGeo4W Shell
    (cmd.exe) around spaces and the redirection characters of version ranges (``<``, ``>``)."""
    if windows:
        return f'"{arg}"' if any(c in arg for c in ' <>&|^') else arg
    return shlex.quote(arg)


def install_plan(statuses: Sequence[Status], prefix: str, platform: Optional[str] = None, gpu: bool = False,
                 python: Optional[str] = None) -> InstallPlan:
    """How to get the packages of ``statuses`` that are not ok on ``platform`` (give the statuses
    of ``check_runtime(training=True)`` for the training extra). With ``gpu`` the CUDA build
    onnxruntime-gpu is installed (also when the CPU build is present), and torch's CUDA build."""
    platform = platform or platform_id()
    plan = InstallPlan(platform, python or python_interpreter(), prefix)
    todo = [s.requirement for s in statuses if not s.ok]
    if gpu and _BY_MODULE["onnxruntime"] not in todo:
        todo.append(_BY_MODULE["onnxruntime"])
    for req in todo:
        _plan_one(plan, req, gpu)
    if not gpu and platform not in ("windows", "macos") and any(r.module == "torch" for r in todo):
        plan.index_urls.append(TORCH_CPU_INDEX)
    return plan


def _plan_one(plan: InstallPlan, req: Requirement, gpu: bool) -> None:
    """Add ``req`` to ``plan``: system package, pip, or pip built against system libraries."""
    if req.module == "numpy":
        plan.system.append("python3-numpy")
        return
    source = SOURCES.get(req.module, {}).get(plan.platform, "pip")
    if source not in ("pip", "source"):
        plan.system.append(source)
        return
    plan.pip.append(requirement_range(req, gpu))
    if source == "source":
        plan.source_builds.append(req.distribution)
        plan.build.extend(b for b in BUILD_PACKAGES.get(plan.platform, BUILD_PACKAGES["linux"]) if b not in plan.build)


def missing_build_tools(plan: InstallPlan) -> List[str]:
    """Build packages of ``plan`` that are evidently absent (checked by their files)."""
    if not plan.source_builds or plan.platform == "windows":
        return []
    absent = []
    include = sysconfig.get_paths().get("include", "")
    checks = {
        "libgeos-dev": lambda: _which("geos-config"),
        "python3-dev": lambda: os.path.isfile(os.path.join(include, "Python.h")),
        "build-essential": lambda: _which("gcc") or _which("cc"),
    }
    for package in plan.build:
        check = checks.get(package)
        if check is not None and not check():
            absent.append(package)
    return absent


def _which(name: str) -> bool:
    import shutil

    return shutil.which(name) is not None


def require(*modules: str) -> None:
    """Raise ``DependencyError`` naming every module that is missing (or, by its metadata, older
    than GlacierSeg needs) and how to install it."""
    gone = missing(modules)
    old = [s for s in check_runtime(m for m in modules if m not in gone) if s.version is not None and not s.ok]
    if gone or old:
        raise DependencyError("\n".join(_what_is_missing(gone, old) + _how_to_install(gone, old)))


def _what_is_missing(gone: Sequence[str], old: Sequence[Status]) -> List[str]:
    lines = []
    if gone:
        lines.append(f"GlacierSeg needs the Python package(s) {', '.join(repr(m) for m in gone)}, "
                     "missing from QGIS's Python.")
    if old:
        lines.append(f"GlacierSeg needs newer Python package(s): {'; '.join(s.describe() for s in old)}.")
    training = [m for m in gone if m in {r.module for r in TRAINING}]
    where = "Plugins › GlacierSeg › Install dependencies…"
    lines.append(f"Install them from QGIS: {where}" + (" with 'Training' ticked" if training else "")
                 + " (no restart needed).")
    return lines


def _how_to_install(gone: Sequence[str], old: Sequence[Status]) -> List[str]:
    """The system packages and the pip command that install ``gone`` and ``old``."""
    statuses = [Status(_BY_MODULE[m], None) for m in gone if m in _BY_MODULE] + list(old)
    try:
        plan = install_plan(statuses, _PREFIX or "<QGIS profile>/glacierseg/python")
    except DependencyError as exc:
        return [str(exc)]
    plan.pip.extend(m for m in gone if m not in _BY_MODULE)
    lines = []
    if plan.system_command():
        lines.append(f"First install the system package(s): {plan.system_command()}")
    if plan.pip:
        where = "the OSGeo4W Shell" if os.name == "nt" else "a terminal"
        lines.append(f"Or with this command in {where}:\n    {plan.command()}")
    return lines


def missing(modules: Iterable[str]) -> list:
    """The modules that cannot be imported (no module spec found)."""
    return [m for m in modules if importlib.util.find_spec(m) is None]
