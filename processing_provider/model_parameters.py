"""Parameters that choose a model and where it runs: the MODEL value and the DEVICE choice
(shared by glacierseg:segment, explain, optimize_model and train)."""
from __future__ import annotations

from .base import model_store

# Labels of the DEVICE enum parameter, in the order of ``core.runtime.DEVICES``.
DEVICE_LABELS = ["Auto (CUDA when available)", "CPU", "CUDA"]


def resolve_model_path(value) -> str:
    """The .onnx file the MODEL value names: an installed model's name (user models in the QGIS
    profile, then those shipped with the plugin) or a path. Raises ``InputError`` naming the
    installed models when it names neither."""
    return model_store().resolve(str(value or ""))
