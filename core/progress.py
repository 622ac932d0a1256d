"""The progress/cancel protocol shared by all long-running core functions.

Core functions take an optional ``progress`` object with ``set_progress`` (percent,
0–100), ``is_canceled`` and ``push_info``. Processing adapters wrap their
``QgsProcessingFeedback`` in ``FeedbackProgress``. Without one (library and command-line
use) ``ensure_progress`` gives a ``LogProgress``: the messages go to the standard ``logging``
logger ``glacierseg`` (or a module's ``glacierseg.<module>``), warnings at WARNING, the rest at
INFO, so ``logging.basicConfig(level=logging.INFO)`` shows them.
"""
from __future__ import annotations

import logging
from typing import Optional, Protocol, Union

from .errors import CancelledError


class Progress(Protocol):
    """What a core function reports to and asks of its caller."""

    def set_progress(self, percent: float) -> None:
        """Report progress, 0–100."""

    def is_canceled(self) -> bool:
        """Whether the user asked to stop."""

    def push_info(self, message: str) -> None:
        """Report a message (warnings start with "Warning")."""


class NullProgress:
    """Progress sink that ignores everything and never cancels."""

    def set_progress(self, percent: float) -> None:
        """Report progress, 0–100."""
        pass

    def is_canceled(self) -> bool:
        """Whether the user asked to stop."""
        return False

    def push_info(self, message: str) -> None:
        """Report a message."""
        pass


class FeedbackProgress:
    """Adapts a ``QgsProcessingFeedback`` (setProgress/isCanceled/pushInfo) to ``Progress``."""

    def __init__(self, feedback):
        self._feedback = feedback

    def set_progress(self, percent: float) -> None:
        """Report progress, 0–100."""
        self._feedback.setProgress(float(percent))

    def is_canceled(self) -> bool:
        """Whether the user asked to stop."""
        return bool(self._feedback.isCanceled())

    def push_info(self, message: str) -> None:
        """Report a message."""
        self._feedback.pushInfo(message)


class LogProgress:
    """Progress sink for callers without one: messages to a ``logging`` logger (those that
    start with "Warning" at WARNING, others at INFO), percentages dropped, never cancels."""

    def __init__(self, logger: Optional[logging.Logger] = None):
        self.logger = logger or logging.getLogger(LOGGER)

    def set_progress(self, percent: float) -> None:
        """Report progress, 0–100."""
        pass

    def is_canceled(self) -> bool:
        """Whether the user asked to stop."""
        return False

    def push_info(self, message: str) -> None:
        """Report a message."""
        level = logging.WARNING if message.lower().startswith("warning") else logging.INFO
        self.logger.log(level, message)


LOGGER = "glacierseg"  # the package's logger; modules log to children of it (glacierseg.band_ratio, …)


def ensure_progress(progress: Optional[Progress], logger: Union[str, logging.Logger, None] = None) -> Progress:
    """``progress``, or where it is None a ``LogProgress`` writing to ``logger`` (a name or a
    logger; default ``glacierseg``)."""
    if progress is not None:
        return progress
    return LogProgress(logging.getLogger(logger) if isinstance(logger, str) else logger)


def check_cancel(progress: Progress) -> None:
    """Raise ``CancelledError`` when the user asked to stop."""
    if progress.is_canceled():
        raise CancelledError("Run cancelled by the user.")


class SubProgress:
    """Maps 0–100 of a sub-step onto [start, end] of the parent's progress."""

    def __init__(self, parent: Progress, start: float, end: float):
        self._parent, self._start, self._end = parent, start, end

    def set_progress(self, percent: float) -> None:
        """Report progress, 0–100."""
        self._parent.set_progress(self._start + (self._end - self._start) * percent / 100.0)

    def is_canceled(self) -> bool:
        """Whether the user asked to stop."""
        return self._parent.is_canceled()

    def push_info(self, message: str) -> None:
        """Report a message."""
        self._parent.push_info(message)
