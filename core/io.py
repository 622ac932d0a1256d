"""Output files that appear whole or not at all, and small raster I/O helpers."""
from __future__ import annotations

import contextlib
import os
import uuid
from typing import Iterator


def remove_dataset(path: str) -> None:
    """Delete a file and the sidecars GDAL may have written beside it."""
    for p in (path, path + ".aux.xml", path + ".ovr", path + "-journal", path + "-wal", path + "-shm"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(p)


@contextlib.contextmanager
def atomic_output(path: str) -> Iterator[str]:
    """Yield a temporary path beside ``path``; on success move it onto ``path``.

    On any exception (a cancel included) the temporary file is removed and ``path`` is
    left untouched, so a failed run never leaves a half-written output.
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    root, ext = os.path.splitext(os.path.basename(path))
    tmp = os.path.join(directory, f".{root}.partial-{uuid.uuid4().hex[:8]}{ext}")
    try:
        yield tmp
    except BaseException:
        remove_dataset(tmp)
        raise
    remove_dataset(path)
    os.replace(tmp, path)
    if os.path.exists(tmp + ".aux.xml"):
        os.replace(tmp + ".aux.xml", path + ".aux.xml")
