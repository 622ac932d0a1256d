"""Output files that appear whole or not at all, the GeoTIFF profile they are written with, and
the GDAL block cache that reading and writing them run under."""
from __future__ import annotations

import contextlib
import glob
import logging
import os
import uuid
from typing import Dict, Iterator, List, Mapping, Optional, Sequence, cast

from .progress import ensure_progress

LOG = logging.getLogger("glacierseg.io")

GDAL_CACHE_BYTES = 128 * 2**20  # GDAL's block cache defaults to 5 % of RAM; 128 MB holds a strip of a 16k-wide raster


def geotiff_profile(crs, transform, width: int, height: int, count: int, dtype: str, nodata) -> dict:
    """Rasterio creation profile of GlacierSeg's GeoTIFF outputs: tiled, BigTIFF when needed,
    deflate at level 1 with the floating-point predictor for float bands, compressed by all
    cores. Measured by benchmarks/bench_segment.py (2048² outputs of segment, written in strips,
    quiet machine): 0.29 s and 11.2 MB with deflate level 6, 0.11 s and 8.8 MB with these; zstd was
    faster still but larger and not readable by every GIS."""
    profile = dict(driver="GTiff", width=int(width), height=int(height), count=count, dtype=dtype, crs=crs,
                   transform=transform, nodata=nodata, tiled=True, blockxsize=256, blockysize=256,
                   compress="deflate", zlevel=1, num_threads="ALL_CPUS", BIGTIFF="IF_SAFER")
    if str(dtype).startswith("float"):
        profile["predictor"] = 3
    return profile


def remove_dataset(path: str) -> None:
    """Delete a file and the sidecars GDAL/SQLite may have written beside it."""
    for p in (path, path + ".aux.xml", path + ".ovr", path + "-journal", path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)


def _written(tmp: str) -> list:
    """Every file written under the temporary name: the file and its sidecars (a shapefile's
    .shx/.dbf/.prj/.cpg, GDAL's .aux.xml, …)."""
    stem = os.path.splitext(tmp)[0]
    return [p for p in glob.glob(glob.escape(stem) + "*") if os.path.isfile(p)]


def _alive(pid: int) -> bool:
    """Whether a process with this id exists (signal 0 on POSIX; OpenProcess on Windows, where
    os.kill(pid, 0) would send Ctrl-C)."""
    if os.name == "nt":
        import ctypes

        kernel32 = ctypes.windll.kernel32  # type: ignore[attr-defined]  # (Windows only)
        handle = kernel32.OpenProcess(0x1000, False, pid)  # PROCESS_QUERY_LIMITED_INFORMATION
        if handle:
            kernel32.CloseHandle(handle)
            return True
        return kernel32.GetLastError() == 5  # ERROR_ACCESS_DENIED: it exists
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # a process of another user holds that id
        return True
    return True


def remove_stale_partials(path: str) -> List[str]:
    """Remove the hidden temporary files of ``path`` (``.name.partial-<pid>-…``) that a run
    killed before it could clean up left behind: those whose process no longer exists (and
    those of the older ``.name.partial-<hex>`` form, which carry no process id). Returns them."""
    directory = os.path.dirname(os.path.abspath(path))
    root = os.path.splitext(os.path.basename(path))[0]
    removed = []
    for p in glob.glob(os.path.join(glob.escape(directory), glob.escape(f".{root}.partial-") + "*")):
        tag = os.path.basename(p)[len(f".{root}.partial-"):].split(".")[0]
        pid = tag.split("-")[0] if "-" in tag else ""
        if pid.isdigit() and _alive(int(pid)):
            continue
        with contextlib.suppress(OSError):
            os.remove(p)
            removed.append(p)
    return removed


def _temporary_path(path: str) -> str:
    directory = os.path.dirname(os.path.abspath(path))
    root, ext = os.path.splitext(os.path.basename(path))
    return os.path.join(directory, f".{root}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}{ext}")


def _check_writable(path: str, tmp: str) -> None:
    """Make the output's folder and prove a file can be created there, or raise an
    ``InputError`` naming the user's path (not the hidden temporary one)."""
    from .errors import InputError

    directory = os.path.dirname(os.path.abspath(path))
    parent = directory
    while not os.path.exists(parent) and os.path.dirname(parent) != parent:
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        raise InputError(f"Cannot write the output {path!r}: {parent!r} is a file, not a folder. "
                         "Choose a folder you can write to.")
    try:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        os.close(fd)
        os.remove(tmp)
    except OSError as exc:
        raise InputError(
            f"Cannot write the output {path!r}: its folder {directory!r} cannot hold a new file "
            f"({exc.strerror or exc}). Choose a folder you can write to."
        ) from None
    if os.path.isdir(path):
        raise InputError(f"The output {path!r} is a folder; give a file name.")


def check_output_paths(outputs: Mapping[str, Optional[str]], inputs: Mapping[str, Optional[str]]) -> None:
    """Refuse outputs that would overwrite an input or each other (``{label: path}``; empty
    paths are ignored): writing either would lose a file the user gave or another output; and
    outputs whose folder cannot take a file (checked before any work, message naming the path)."""
    from .errors import InputError

    def key(p: str) -> str:
        return os.path.normcase(os.path.realpath(p.split("|")[0]))

    for p in outputs.values():
        if p:
            _check_writable(p.split("|")[0], _temporary_path(p.split("|")[0]))
    seen: Dict[str, str] = {}
    for label, p in inputs.items():
        if p:
            seen.setdefault(key(p), f"the input '{label}'")
    outs: Dict[str, str] = {}
    for label, p in outputs.items():
        if not p:
            continue
        k = key(p)
        if k in seen:
            raise InputError(f"The output '{label}' ({p}) is the same file as {seen[k]}: it would be overwritten. "
                             "Give the output another file name.")
        if k in outs:
            raise InputError(f"The outputs '{outs[k]}' and '{label}' are the same file ({p}): one would overwrite "
                             "the other. Give each output its own file name.")
        outs[k] = label


@contextlib.contextmanager
def atomic_outputs(*paths: Optional[str], progress=None) -> Iterator[List[Optional[str]]]:
    """Yield one temporary path beside each of ``paths`` (None stays None); when the block
    succeeds, all of them are moved, with their sidecars, onto their paths together.

    Before anything is written, every output's folder is checked (``InputError`` naming the
    user's path when it cannot take a file) and the temporary files a killed earlier run left
    for the same outputs are removed. On any exception (a cancel included) everything written
    under the temporary names is removed and every existing output is left untouched, so a
    failed run never leaves a half-written output and never removes an older one.
    """
    tmps = _prepare(paths, progress)
    try:
        yield tmps
    except BaseException:
        _discard(tmps)
        raise
    _commit(paths, tmps)


def _prepare(paths: Sequence[Optional[str]], progress) -> List[Optional[str]]:
    """The temporary paths of an output group, once its paths are distinct, their folders can
    take a file and the temporary files a killed earlier run left for them are gone."""
    from .errors import InputError

    given = [p for p in paths if p]
    if len({os.path.abspath(p) for p in given}) != len(given):
        raise InputError(f"Two outputs have the same path ({', '.join(given)}); give each output its own file name.")
    tmps = [_temporary_path(p) if p else None for p in paths]
    for p, tmp in zip(paths, tmps):
        if p and tmp:
            _check_writable(p, tmp)
            stale = remove_stale_partials(p)
            if stale:
                _say(progress, f"Removed {len(stale)} temporary file(s) of {os.path.basename(p)} left by an "
                     "interrupted earlier run.")
    return tmps


def _discard(tmps: Sequence[Optional[str]]) -> None:
    """Remove everything written under the temporary names (a failed or cancelled run)."""
    for tmp in tmps:
        for f in _written(tmp) if tmp else ():
            with contextlib.suppress(OSError):
                os.remove(f)


def _commit(paths: Sequence[Optional[str]], tmps: Sequence[Optional[str]]) -> None:
    """Move each output, with its sidecars, from its temporary name onto its path."""
    for p, tmp in zip(paths, tmps):
        if not p or not tmp:
            continue
        directory = os.path.dirname(os.path.abspath(p))
        root = os.path.splitext(os.path.basename(p))[0]
        tmp_stem = os.path.splitext(tmp)[0]
        remove_dataset(p)
        for f in _written(tmp):
            os.replace(f, os.path.join(directory, root) + f[len(tmp_stem):])


def _say(progress, message: str) -> None:
    ensure_progress(progress, LOG).push_info(message)


@contextlib.contextmanager
def atomic_output(path: str, progress=None) -> Iterator[str]:
    """``atomic_outputs`` of one path: yields its temporary path."""
    with atomic_outputs(path, progress=progress) as (tmp,):
        yield cast(str, tmp)  # a path given: its temporary path is never None


def raster_exists(name: str) -> bool:
    """Whether ``name`` is a file or GDAL opens it as a raster: a GDAL dataset name such as a VRT,
    'GPKG:file.gpkg:table', '/vsizip/archive.zip/image.tif' or '/vsicurl/https://…/cog.tif'."""
    return os.path.isfile(name) or opens_as_raster(name)


def opens_as_raster(name: str) -> bool:
    """Whether GDAL opens ``name`` as a raster (quietly; a vector file or a missing name: False)."""
    from osgeo import gdal

    gdal.PushErrorHandler("CPLQuietErrorHandler")
    try:
        return gdal.OpenEx(name, gdal.OF_RASTER) is not None
    except RuntimeError:
        return False
    finally:
        gdal.PopErrorHandler()
