"""Crash driver: dereferences NULL so the harness must report a crash (tests the harness)."""
from qgis_driver import run_job


def main(job):
    yield 100
    job.step = "crash on purpose"
    import ctypes

    ctypes.string_at(0)


run_job(main)
