"""Which Python packages GlacierSeg needs in QGIS's Python, whether they are there, and how to
install the missing ones into GlacierSeg's own package folder (QGIS-free).

- ``RUNTIME``: the packages with the oldest version the code works with; ``check_runtime``
  reads their installed versions with ``importlib.metadata`` (no package is imported, so it is
  cheap enough for plugin start).
- ``requirements.txt`` (shipped in the plugin) holds the tested pins that get installed;
  ``pinned_requirements`` reads it.
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

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REQUIREMENTS = os.path.join(_ROOT, "requirements.txt")
GPU_REQUIREMENTS = os.path.join(_ROOT, "requirements-gpu.txt")
PACKAGES_DIR = "python"  # GlacierSeg's package prefix, inside its folder in the QGIS profile


@dataclass(frozen=True)
class Requirement:
    """A runtime package: import name, distribution name(s), oldest version the code works with."""

    module: str
    distributions: Tuple[str, ...]
    minimum: str

    @property
    def distribution(self) -> str:
        return self.distributions[0]


RUNTIME = (
    Requirement("numpy", ("numpy",), "1.21"),
    Requirement("rasterio", ("rasterio",), "1.3"),
    Requirement("shapely", ("shapely",), "2.0"),  # shapely 2 API (make_valid, union_all, STRtree)
    Requirement("pyproj", ("pyproj",), "3.0"),
    Requirement("scipy", ("scipy",), "1.10"),
    Requirement("skimage", ("scikit-image",), "0.19"),
    Requirement("onnxruntime", ("onnxruntime", "onnxruntime-gpu"), "1.16"),
    Requirement("pysheds", ("pysheds",), "0.3"),
)
_BY_MODULE = {r.module: r for r in RUNTIME}
_DISTRIBUTION = {r.module: r.distribution for r in RUNTIME}

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


def requirement_range(req: Requirement, pins: Dict[str, str]) -> str:
    """What pip installs for ``req``: from its oldest usable version up to the tested pin, so pip
    takes the pin where QGIS's numpy allows it and the newest older release that fits otherwise
    (Debian 12's QGIS Python has numpy 1.24; shapely 2.2 needs numpy ≥ 1.26)."""
    pin = pins.get(req.distribution, "")
    name = pin.split("==")[0] if "==" in pin else req.distribution
    upper = f",<={pin.split('==', 1)[1]}" if "==" in pin else ""
    return f"{name}>={req.minimum}{upper}"


def pinned_requirements(gpu: bool = False) -> Dict[str, str]:
    """Distribution name -> tested pin from requirements.txt (``onnxruntime`` -> the GPU build's
    pin from requirements-gpu.txt when ``gpu``). The file ships in the plugin zip."""
    pins: Dict[str, str] = {}
    for path in (REQUIREMENTS, GPU_REQUIREMENTS) if gpu else (REQUIREMENTS,):
        with open(path, encoding="utf-8") as fh:
            for line in fh:
                line = line.split("#", 1)[0].strip()
                if line and not line.startswith("-"):
                    pins[distribution_name(line)] = line
    if gpu:
        pins["onnxruntime"] = pins.pop("onnxruntime-gpu")
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
    requirement: Requirement
    version: Optional[str]

    @property
    def ok(self) -> bool:
        return self.version is not None and _release(self.version) >= _release(self.requirement.minimum)

    def describe(self) -> str:
        r = self.requirement
        if self.version is None:
            return f"{r.distribution}: missing (needs ≥ {r.minimum})"
        return f"{r.distribution} {self.version}" + ("" if self.ok else f": too old (needs ≥ {r.minimum})")


def check_runtime(modules: Optional[Iterable[str]] = None) -> List[Status]:
    """Installed state of the runtime packages (all, or those of ``modules``)."""
    wanted = RUNTIME if modules is None else [_BY_MODULE[m] for m in modules if m in _BY_MODULE]
    return [Status(r, installed_version(r)) for r in wanted]


def problems(modules: Optional[Iterable[str]] = None) -> List[Status]:
    return [s for s in check_runtime(modules) if not s.ok]


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
    return subprocess.run([python, "-m", "pip", "--version"], capture_output=True).returncode == 0


# ------------------------------------------------------------------ GlacierSeg's package folder
def package_paths(prefix: str) -> List[str]:
    """Where ``pip install --prefix <prefix>`` puts packages for this interpreter: purelib and
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
    source_builds: List[str] = field(default_factory=list)  # built by pip against system libraries
    system: List[str] = field(default_factory=list)  # system packages the user installs first
    build: List[str] = field(default_factory=list)  # system packages a source build needs

    def command(self) -> str:
        return " ".join(_quote(a) for a in [self.python] + self.arguments())

    def arguments(self) -> List[str]:
        """Arguments after the interpreter. numpy is pinned to the running version, which QGIS's
        GDAL bindings are built for: pip keeps it and refuses packages that need another."""
        args = ["-m", "pip", "install", "--prefix", self.prefix, "--no-warn-script-location",
                "--disable-pip-version-check", "--progress-bar", "off"]
        for name in self.source_builds:
            args += ["--no-binary", name]
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
    """How to get the packages of ``statuses`` that are not ok on ``platform``. With ``gpu`` the
    CUDA build onnxruntime-gpu is installed (also when the CPU build is present)."""
    platform = platform or platform_id()
    plan = InstallPlan(platform, python or python_interpreter(), prefix)
    pins = pinned_requirements(gpu)
    todo = [s.requirement for s in statuses if not s.ok]
    if gpu and _BY_MODULE["onnxruntime"] not in todo:
        todo.append(_BY_MODULE["onnxruntime"])
    for req in todo:
        if req.module == "numpy":
            plan.system.append("python3-numpy")
            continue
        source = SOURCES.get(req.module, {}).get(platform, "pip")
        if source == "pip":
            plan.pip.append(requirement_range(req, pins))
        elif source == "source":
            plan.pip.append(requirement_range(req, pins))
            plan.source_builds.append(req.distribution)
            plan.build.extend(b for b in BUILD_PACKAGES.get(platform, BUILD_PACKAGES["linux"]) if b not in plan.build)
        else:
            plan.system.append(source)
    return plan


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
    if not gone and not old:
        return
    statuses = [Status(_BY_MODULE[m], None) for m in gone if m in _BY_MODULE] + old
    lines = []
    if gone:
        lines.append(f"GlacierSeg needs the Python package(s) {', '.join(repr(m) for m in gone)}, missing from QGIS's Python.")
    if old:
        lines.append(f"GlacierSeg needs newer Python package(s): {'; '.join(s.describe() for s in old)}.")
    lines.append("Install them from QGIS: Plugins › GlacierSeg › Install dependencies… (no restart needed).")
    try:
        plan = install_plan(statuses, _PREFIX or "<QGIS profile>/glacierseg/python")
        unknown = [m for m in gone if m not in _BY_MODULE]
        plan.pip.extend(unknown)
        if plan.system_command():
            lines.append(f"First install the system package(s): {plan.system_command()}")
        if plan.pip:
            where = "the OSGeo4W Shell" if os.name == "nt" else "a terminal"
            lines.append(f"Or with this command in {where}:\n    {plan.command()}")
    except DependencyError as exc:
        lines.append(str(exc))
    raise DependencyError("\n".join(lines))


def missing(modules: Iterable[str]) -> list:
    return [m for m in modules if importlib.util.find_spec(m) is None]
