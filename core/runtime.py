"""Loading GlacierSeg ONNX models with onnxruntime on the requested device.

This module imports ``core.contract`` (never the reverse): the contract is read from the
session's metadata here, or from the file by ``contract.read_contract``. ``DEVICES`` is the one
list of devices (Processing adapters and training import it)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence

import numpy as np

from .contract import ModelContract, check_model_file, read_contract, unreadable_model_error
from .deps import require
from .errors import DeviceError, InputError, ModelContractError

DEVICES = ("auto", "cpu", "cuda")  # the choices of every device parameter, in this order
CUDA = "CUDAExecutionProvider"
CPU = "CPUExecutionProvider"
OPTIMIZATION_LEVELS = ("all", "extended", "basic", "disabled")  # onnxruntime GraphOptimizationLevel ORT_ENABLE_ALL …


def usable_cores() -> int:
    """CPU cores this process may run on (its affinity mask, which a container or ``taskset``
    narrows), the default for onnxruntime's intra-op threads."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # no affinity on Windows / macOS
        return os.cpu_count() or 1


@dataclass
class LoadedModel:
    """An onnxruntime session with its contract and the provider that actually runs it."""

    session: object
    contract: ModelContract
    provider: str
    input_name: str
    path: str
    options: Dict[str, object] = field(default_factory=dict)  # session options as set, for the log
    input_type: str = "tensor(float)"

    @property
    def half(self) -> bool:
        """Whether the model takes float16 inputs (an fp16 variant made by ``core.optimize``)."""
        return self.input_type == "tensor(float16)"

    def describe(self) -> str:
        """The session's settings in one line, for the log."""
        o = self.options
        return (f"{self.provider}, {o.get('threads')} intra-op thread(s), graph optimization "
                f"{o.get('optimization')}, {'float16' if self.half else 'float32'} inputs"
                + (", IOBinding (outputs kept on the GPU until read)" if o.get("io_binding") else ""))

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw float32 model output (N, C, H, W) for a float32 (N, bands, H, W) batch; float16
        models get and give float16, converted here. On CUDA the output is bound with IOBinding
        so that onnxruntime allocates it on the device and copies it once."""
        if self.half:
            batch = batch.astype(np.float16)
        if self.options.get("io_binding"):
            binding = self.session.io_binding()
            binding.bind_cpu_input(self.input_name, batch)
            binding.bind_output(self.session.get_outputs()[0].name, "cuda")
            self.session.run_with_iobinding(binding)
            out = binding.copy_outputs_to_cpu()[0]
        else:
            out = self.session.run(None, {self.input_name: batch})[0]
        return out.astype(np.float32, copy=False)


def session_options(threads: Optional[int] = None, optimization: str = "all"):
    """onnxruntime SessionOptions as GlacierSeg sets them: ``threads`` intra-op threads (default:
    ``usable_cores()``; one inter-op thread, the graph runs sequentially), graph optimization
    ``optimization`` (one of ``OPTIMIZATION_LEVELS``)."""
    import onnxruntime as ort

    if optimization not in OPTIMIZATION_LEVELS:
        raise InputError(f"Unknown graph optimization level {optimization!r}; choose one of {', '.join(OPTIMIZATION_LEVELS)}.")
    threads = usable_cores() if threads is None else int(threads)
    if threads < 1:
        raise InputError(f"Thread count must be at least 1, got {threads}.")
    options = ort.SessionOptions()
    options.graph_optimization_level = {
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL, "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC, "disabled": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    }[optimization]
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: a missing CUDA library is reported by us
    return options


def _session(path: str, providers: Sequence[str], options=None):
    import onnxruntime as ort

    options = options or session_options()
    try:
        return ort.InferenceSession(path, sess_options=options, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise unreadable_model_error(path, exc) from None


def available_providers() -> List[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def load_model(path: str, device: str = "auto", *, threads: Optional[int] = None,
               optimization: str = "all") -> LoadedModel:
    """Open ``path`` on ``device`` (auto | cpu | cuda) and read its contract.

    ``auto`` takes CUDA when onnxruntime can run it, else the CPU; ``cuda`` never falls
    back silently: it raises ``DeviceError`` when CUDA cannot run the model. ``threads`` and
    ``optimization`` go to ``session_options``; what was set is in ``LoadedModel.options``.
    """
    require("onnxruntime")
    device = device.lower()
    if device not in DEVICES:
        raise InputError(f"Unknown device {device!r}; choose one of {', '.join(DEVICES)}.")
    check_model_file(path)
    providers = execution_providers(device, available_providers())
    options = session_options(threads, optimization)
    session = _session(path, providers, options)
    running = session.get_providers()[0]
    if device == "cuda" and running != CUDA:
        raise DeviceError(
            "Device 'CUDA' was requested and onnxruntime-gpu is installed, but the CUDA provider "
            "failed to start (missing CUDA/cuDNN libraries or no GPU). Check `nvidia-smi` and the "
            "CUDA/cuDNN versions onnxruntime-gpu needs, or choose device 'Auto' or 'CPU'."
        )
    contract = read_contract(path, dict(session.get_modelmeta().custom_metadata_map))
    _check_input(session, contract, path)
    settings = {"threads": options.intra_op_num_threads, "optimization": optimization, "io_binding": running == CUDA}
    inputs = session.get_inputs()
    return LoadedModel(session, contract, running, inputs[0].name, path, settings, inputs[0].type)


def execution_providers(device: str, available: Sequence[str]) -> List[str]:
    """onnxruntime providers to try for ``device`` given the ``available`` ones: CUDA first and
    the CPU as fallback for ``auto`` / ``cuda`` when CUDA is available, else the CPU; ``cuda``
    without CUDA support raises ``DeviceError`` (never a silent fallback)."""
    has_cuda = CUDA in available
    if device == "cuda" and not has_cuda:
        import onnxruntime as ort

        raise DeviceError(
            f"Device 'CUDA' was requested but this onnxruntime ({ort.__version__}, providers: "
            f"{', '.join(available)}) has no CUDA support. Install onnxruntime-gpu "
            "(pip install -r requirements-gpu.txt, after uninstalling onnxruntime) with a matching "
            "CUDA/cuDNN, or choose device 'Auto' or 'CPU'."
        )
    return [CUDA, CPU] if device in ("auto", "cuda") and has_cuda else [CPU]


def _check_input(session, contract: ModelContract, path: str) -> None:
    """The session takes one (batch, bands, height, width) tensor with the contract's band count."""
    inputs = session.get_inputs()
    if len(inputs) != 1:
        raise ModelContractError(
            f"{os.path.basename(path)}: GlacierSeg models take one input tensor, this one has {len(inputs)}."
        )
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
