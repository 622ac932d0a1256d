"""Loading GlacierSeg ONNX models with onnxruntime on the requested device."""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Dict, List, Sequence

import numpy as np

from .contract import ModelContract, read_contract
from .deps import require
from .errors import DeviceError, InputError, ModelContractError

DEVICES = ("auto", "cpu", "cuda")
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"


@dataclass
class LoadedModel:
    """An onnxruntime session with its contract and the provider that actually runs it."""

    session: object
    contract: ModelContract
    provider: str
    input_name: str
    path: str

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw model output (N, C, H, W) for a float32 (N, bands, H, W) batch."""
        return self.session.run(None, {self.input_name: batch})[0]


def _load_error(path: str, exc: Exception) -> ModelContractError:
    return ModelContractError(
        f"{os.path.basename(path)} is not a readable ONNX model ({str(exc).splitlines()[0][:200]}). "
        "Choose a .onnx file exported by GlacierSeg (or one with a GlacierSeg sidecar JSON)."
    )


def _session(path: str, providers: Sequence[str]):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # errors only: a missing CUDA library is reported by us
    try:
        return ort.InferenceSession(path, sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise _load_error(path, exc) from None


def read_onnx_metadata(path: str) -> Dict[str, str]:
    """The model's ``metadata_props`` as a dict (read with onnxruntime)."""
    require("onnxruntime")
    _check_file(path)
    return dict(_session(path, [CPU]).get_modelmeta().custom_metadata_map)


def _check_file(path: str) -> None:
    if not path or not os.path.isfile(path):
        raise InputError(f"Model file not found: {path!r}. Choose an existing .onnx file.")


def available_providers() -> List[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def load_model(path: str, device: str = "auto") -> LoadedModel:
    """Open ``path`` on ``device`` (auto | cpu | cuda) and read its contract.

    ``auto`` takes CUDA when onnxruntime can run it, else the CPU; ``cuda`` never falls
    back silently: it raises ``DeviceError`` when CUDA cannot run the model.
    """
    require("onnxruntime")
    import onnxruntime as ort

    device = device.lower()
    if device not in DEVICES:
        raise InputError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    _check_file(path)
    has_cuda = CUDA in available_providers()
    if device == "cuda" and not has_cuda:
        raise DeviceError(
            f"Device 'CUDA' was requested but this onnxruntime ({ort.__version__}, providers: "
            f"{', '.join(available_providers())}) has no CUDA support. Install onnxruntime-gpu "
            "(pip install -r requirements-gpu.txt, after uninstalling onnxruntime) with a matching "
            "CUDA/cuDNN, or choose device 'Auto' or 'CPU'."
        )
    providers = [CUDA, CPU] if device in ("auto", "cuda") and has_cuda else [CPU]
    session = _session(path, providers)
    running = session.get_providers()[0]
    if device == "cuda" and running != CUDA:
        raise DeviceError(
            "Device 'CUDA' was requested and onnxruntime-gpu is installed, but the CUDA provider "
            "failed to start (missing CUDA/cuDNN libraries or no GPU). Check `nvidia-smi` and the "
            "CUDA/cuDNN versions onnxruntime-gpu needs, or choose device 'Auto' or 'CPU'."
        )
    contract = read_contract(path, dict(session.get_modelmeta().custom_metadata_map))
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelContractError(f"{os.path.basename(path)}: GlacierSeg models take one input tensor, this one has {len(inputs)}.")
    shape = inputs[0].shape
    if len(shape) != 4:
        raise ModelContractError(
            f"{os.path.basename(path)}: model input must be (batch, bands, height, width), got shape {shape}."
        )
    if isinstance(shape[1], int) and shape[1] != len(contract.bands):
        raise ModelContractError(
            f"{os.path.basename(path)}: model input has {shape[1]} channels but key 'bands' lists "
            f"{len(contract.bands)}; fix the contract's 'bands'."
        )
    return LoadedModel(session, contract, running, inputs[0].name, path)
