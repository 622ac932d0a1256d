"""Where the pipeline's tasks run: in this process (``SequentialRunner``) or on a Dask
distributed cluster (``DaskRunner``: a LocalCluster this process starts, or a running
scheduler), with retries, progress and cancel; and safe first use of pysheds' numba code."""
from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import time
import uuid
from typing import Any, Callable, List, Optional, Sequence, Tuple

from ..errors import CancelledError
from ..progress import Progress, check_cancel

Outcome = Tuple[bool, Any, int]  # (succeeded, result or error text, attempts)
_NUMBA_READY = False


def first_numba_use(call: Callable[[], Any]) -> Any:
    """Run ``call`` — the first use of pysheds' numba functions in this process — while holding
    an exclusive lock shared by all processes using the same numba cache folder.

    pysheds compiles its functions on first use and caches them on disk (numba ``cache=True``);
    two processes compiling and writing the cache at once were seen to fail inside numba
    (``KeyError: int64 generator(...)``). Under the lock the first process compiles and writes
    the cache, every later one loads it; after that no process compiles again."""
    global _NUMBA_READY
    if _NUMBA_READY:
        return call()
    folder = os.environ.get("NUMBA_CACHE_DIR") or tempfile.gettempdir()
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "glacierseg-numba-first-use.lock"), "a") as lock:
        _lock(lock)
        try:
            result = call()
            _NUMBA_READY = True
            return result
        finally:
            _unlock(lock)


def _lock(f) -> None:
    if sys.platform == "win32":
        import msvcrt

        while True:
            with contextlib.suppress(OSError):
                msvcrt.locking(f.fileno(), msvcrt.LK_LOCK, 1)
                return
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_EX)


def _unlock(f) -> None:
    if sys.platform == "win32":
        import msvcrt

        f.seek(0)
        msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
    else:
        import fcntl

        fcntl.flock(f.fileno(), fcntl.LOCK_UN)


class SequentialRunner:
    """Tasks one after another in this process (QGIS in-process, or without Dask)."""

    description = "in this process"
    slots = 1

    def map(self, fn: Callable, args: Sequence[tuple], retries: int, label: str, progress: Progress,
            done: Callable[[int, Outcome], None]) -> None:
        """Run ``fn(*a)`` for each ``a`` of ``args`` (``retries`` more tries on an error); call
        ``done(i, (ok, result or error text, attempts))`` as each finishes."""
        for i, a in enumerate(args):
            attempts = 0
            while True:
                check_cancel(progress)
                attempts += 1
                try:
                    outcome: Outcome = (True, fn(*a), attempts)
                except CancelledError:
                    raise
                except Exception as exc:  # noqa: BLE001 — reported per task, as on a cluster
                    if attempts <= retries:
                        continue
                    outcome = (False, f"{type(exc).__name__}: {exc}", attempts)
                break
            done(i, outcome)

    def close(self) -> None:
        """Nothing to release."""
        pass


class DaskRunner:
    """Tasks on a Dask distributed cluster. ``scheduler`` (``tcp://host:port``) connects to a
    running one; otherwise a LocalCluster of ``workers`` processes (default one per two usable
    cores), one task at a time each, is started and closed with the runner."""

    def __init__(self, workers: Optional[int] = None, scheduler: Optional[str] = None,
                 memory_limit: str = "auto"):
        from distributed import Client, LocalCluster

        from ..runtime import usable_cores

        self.cluster = None
        if scheduler:
            self.client = Client(scheduler, timeout="30s")
            self.description = f"Dask scheduler {scheduler}"
        else:
            n = int(workers) if workers else max(1, usable_cores() // 2)
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        memory_limit=memory_limit, dashboard_address=_dashboard_address(),
                                        scheduler_port=0, silence_logs=40)
            self.client = Client(self.cluster)
            self.description = f"Dask LocalCluster, {n} worker process(es)"
        self.dashboard = self.client.dashboard_link if _dashboard_address() else None

    @property
    def slots(self) -> int:
        """Tasks the cluster runs at once (worker threads)."""
        return max(1, sum(w.get("nthreads", 1) for w in self.client.scheduler_info().get("workers", {}).values()))

    def threads_per_worker(self) -> int:
        """Cores each worker may use (onnxruntime's intra-op threads), so workers do not
        oversubscribe: the machine's cores shared among the workers on it."""
        from ..runtime import usable_cores

        info = self.client.scheduler_info().get("workers", {})
        hosts: dict = {}
        for w in info.values():
            hosts.setdefault(w.get("host"), []).append(w)
        per_host = max((len(ws) for ws in hosts.values()), default=1)
        return max(1, usable_cores() // per_host)

    def map(self, fn: Callable, args: Sequence[tuple], retries: int, label: str, progress: Progress,
            done: Callable[[int, Outcome], None]) -> None:
        """As ``SequentialRunner.map``, on the cluster: tasks ``<label>-<i>-<run>`` with Dask's
        ``retries``; results in the order they finish; cancel stops the remaining tasks."""
        from distributed import as_completed

        if not args:
            return
        run = uuid.uuid4().hex[:8]
        futures = [self.client.submit(fn, *a, retries=retries, pure=False, key=f"{label}-{i}-{run}")
                   for i, a in enumerate(args)]
        index = {f.key: i for i, f in enumerate(futures)}
        try:
            for future in as_completed(futures):
                check_cancel(progress)
                i = index[future.key]
                if future.status == "finished":
                    done(i, (True, future.result(), 1))
                else:
                    exc = future.exception()
                    done(i, (False, f"{type(exc).__name__}: {exc}", retries + 1))
        except BaseException:
            self.client.cancel(futures)
            raise

    def close(self) -> None:
        """Close the client (and the LocalCluster this runner started)."""
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _dashboard_address() -> Optional[str]:
    """':0' (any free port) when bokeh, which Dask's dashboard needs, is installed; else None."""
    import importlib.util

    return ":0" if importlib.util.find_spec("bokeh") is not None else None


def wait_for_workers(runner, n: int, timeout_s: float = 60.0) -> None:
    """Block until ``n`` workers are connected to the runner's scheduler."""
    start = time.monotonic()
    while len(runner.client.scheduler_info().get("workers", {})) < n:
        if time.monotonic() - start > timeout_s:
            raise TimeoutError(f"fewer than {n} Dask workers after {timeout_s:.0f} s")
        time.sleep(0.2)


def worker_pids(runner) -> List[int]:
    """Process ids of the runner's workers."""
    return list(runner.client.run(os.getpid).values())
