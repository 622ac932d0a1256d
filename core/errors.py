"""Typed errors raised by the core; Processing adapters turn them into QgsProcessingException."""


class GlacierSegError(Exception):
    """Base class: the message says what is wrong and how to fix it."""


class InputError(GlacierSegError):
    """An input (raster, layer, parameter) cannot be used as given."""


class ModelContractError(GlacierSegError):
    """A model file is not a valid GlacierSeg model (missing or malformed contract key)."""


class DependencyError(GlacierSegError):
    """A Python package GlacierSeg needs is missing from the running Python."""


class DeviceError(GlacierSegError):
    """The requested compute device (e.g. CUDA) is not available."""


class CancelledError(GlacierSegError):
    """The user cancelled the run; partial outputs have been removed. ``kept`` lists files
    that stay on purpose (a training checkpoint to resume from) and the message says why."""

    def __init__(self, message: str, kept=()):
        super().__init__(message)
        self.kept = tuple(kept)


class NoDemError(InputError):
    """A glacier or complex has too little elevation data (off the DEM, or voids too large to fill)."""


def first_reasons(reasons, shown: int = 5) -> str:
    """The first ``shown`` reasons of a refusal joined for its message, with how many there were in all."""
    return "; ".join(reasons[:shown]) + (f"; … ({len(reasons)} in all)" if len(reasons) > shown else "")
