"""The time budget of a training run: ``Clock`` (wall time against the budget, time kept for the
last validation and the export) and ``BudgetEpochs`` (CPU threads and epochs sized from the
budget by timing the first steps)."""
from __future__ import annotations

import math
import os
import time
from typing import Dict, List, Optional

import numpy as np

# With a time budget (``BudgetEpochs``): steps timed after a warm-up step before the first epoch is sized,
# and the most of the training time spent on validation passes between epochs (chosen here, measured by
# benchmarks/bench_training.py: a validation pass of the generated 512² scene takes 2–10 s on 2 busy cores).
TIMED_STEPS = 4
VALIDATION_SHARE = 0.15
BUDGET_EPOCHS = 6  # at most, with a time budget: epochs long enough to learn between validations
# kept in a time budget (at most 5 % of it) for export and reports, beside the timed validation passes: ONNX
# export, JSON and HTML report took 13 s at load 10-15 on 2 cores (bench_training budget5; 5 s left it 10 % over)
EXPORT_SECONDS = 15.0


def thread_candidates() -> List[int]:
    """CPU thread counts a budgeted run times on its first steps: torch's and half as many (the
    cheaper first); only the half when the machine is already busy (load average at least the
    number of cores), where the full count is the slow one (measured: 37.8 s against 4.4 s per
    step of unet_efficientnet_b0 at load 12 on 2 cores)."""
    import torch

    n = torch.get_num_threads()
    if n == 1:
        return [1]
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= (os.cpu_count() or n)
    return [max(1, n // 2)] if busy else [max(1, n // 2), n]


class BudgetEpochs:
    """With a time budget, the epochs are sized from it where it, not *Epochs* × *Training tiles
    per epoch*, ends the run (a short run keeps its epochs, as without a budget). The first steps are timed (after a
    warm-up step), with torch's CPU threads and with half as many, and the faster is kept: on a
    shared or busy machine fewer threads can be several times faster (2 threads of a 2-core machine
    that others load wait for each other at every operation: 18–22 s per step against 3.3 s with
    one thread, measured here under load 10). Then ``epochs`` = the validation passes that fit in
    ``VALIDATION_SHARE`` of the training time (at most the *Epochs* given), and each epoch gets
    the steps that the time left, less the validation passes still to come, allows at the measured
    seconds per step, re-sized at every epoch, so a machine that slows down or speeds up still
    ends on time. The learning rate follows the clock (``Clock.fraction``), so the cosine
    schedule completes within the budget whatever the step count."""

    def __init__(self, clock: "Clock", epoch_overhead: float, most_epochs: int, nominal_steps: int, threads: int = 0):
        self.clock, self.most_epochs, self.nominal = clock, max(1, most_epochs), nominal_steps
        self.bound = False  # the budget, not the epochs × tiles, ends the run (then it sizes the epochs)
        self.first = 1  # the epoch in which the timing ended: the sized epochs count from it
        self.overhead = epoch_overhead  # seconds between epochs (validation, checkpoint); measured
        self.seconds: Dict[int, List[float]] = {}
        self.candidates = [threads] if threads else thread_candidates()
        self.threads = self.candidates[0]
        self.timing = True  # the first steps of the run time the candidates
        self._k, self._t = 0, time.perf_counter()
        self.message = ""
        self._ended: Optional[float] = None

    @property
    def epochs(self) -> int:
        """Epochs the budget is shared into (at most ``BUDGET_EPOCHS`` and the *Epochs* given)."""
        share = VALIDATION_SHARE * self.clock.train_seconds / max(self.overhead, 1e-3)
        return int(min(self.most_epochs, BUDGET_EPOCHS, max(1, share)))

    def _timed_enough(self) -> bool:
        """The candidate being timed has ``TIMED_STEPS`` steps, or one step twice as slow as the best other."""
        own = self.seconds.get(self.candidates[self._k], [])
        others = [np.median(v) for n, v in self.seconds.items() if n != self.candidates[self._k]]
        return len(own) >= TIMED_STEPS or bool(own and others and own[-1] > 2 * min(others))

    def before_step(self) -> bool:
        """Set the threads of the next step; True when the timing has just ended (the epoch must be sized)."""
        import torch

        ended = False
        if self.timing and self._timed_enough():
            self._k += 1
            if self._k == len(self.candidates):
                timings = {n: float(np.median(v)) for n, v in self.seconds.items()}
                self.candidates = [min(timings, key=timings.get)]
                self.message = "; ".join(f"{n} thread(s) {t:.2f} s" for n, t in timings.items())
                self.timing, ended, self._k = False, True, 0
        self.threads = self.candidates[self._k]
        if torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        self._t = time.perf_counter()
        return ended

    def after_step(self, warm_up: bool) -> None:
        """Time the step just taken (not the run's first: it warms up allocations and caches)."""
        if not warm_up:
            self.seconds.setdefault(self.threads, []).append(time.perf_counter() - self._t)

    def epoch_started(self) -> None:
        """Measure the time between epochs (validation, checkpoint) that the plan keeps for each."""
        if self._ended is not None:
            self.overhead = time.perf_counter() - self._ended

    def steps_ended(self) -> None:
        """Note the end of an epoch's training steps (its validation follows)."""
        self._ended = time.perf_counter()

    def seconds_per_step(self) -> float:
        """Mean of the recent step times with the chosen thread count."""
        recent = self.seconds.get(self.threads, [])[-4 * TIMED_STEPS:]
        return float(np.mean(recent)) if recent else math.inf

    def steps(self, epoch: int, done: int = 0) -> int:
        """Training steps of ``epoch`` (1-based among this run's epochs), ``done`` of them taken."""
        if self.timing:  # until the timing ends (``before_step``): epochs of *Training tiles per epoch*
            self.first = epoch
            return self.nominal
        left = self.clock.train_seconds - self.clock.elapsed()
        epochs_left = self.most_epochs - epoch + 1
        nominal = (epochs_left * self.nominal - done) * self.seconds_per_step() + (epochs_left - 1) * self.overhead
        self.bound = nominal > left
        if not self.bound:  # the epochs end before the budget: as without one
            return self.nominal
        epochs_left = max(1, self.epochs - (epoch - self.first))
        seconds = left - (epochs_left - 1) * self.overhead
        return done + max(1, int(seconds / self.seconds_per_step() / epochs_left))

    def too_short_for_another(self) -> bool:
        """The budget ends the run and the training time left would give less than a quarter of an
        epoch: stop here."""
        left = self.clock.train_seconds - self.clock.elapsed()
        return self.bound and left < 0.25 * self.clock.train_seconds / self.epochs


class Clock:
    """Wall time of a run against its time budget: training gets the budget less what the
    last validation passes (timed), the validation rasters and the export need."""

    def __init__(self, started: float, budget: float):
        self.started, self.budget = started, budget
        self.kept_seconds = 0.0

    def reserve(self, validation_seconds: float, validation_rasters: bool) -> None:
        """Keep time for the last validation passes, the validation rasters and the export."""
        # one validation after the last epoch, one of the best weights, one per validation raster set
        self.kept_seconds = validation_seconds * (2 + validation_rasters) + min(EXPORT_SECONDS, 0.05 * self.budget)

    @property
    def train_seconds(self) -> float:
        """Seconds of the budget that training may use."""
        return max(self.budget - self.kept_seconds, 1e-6)

    def elapsed(self) -> float:
        """Seconds since the run started."""
        return time.monotonic() - self.started

    def fraction(self) -> float:
        """Share of the training time spent (1 = stop training)."""
        return self.elapsed() / self.train_seconds
