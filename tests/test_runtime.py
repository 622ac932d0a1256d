"""core.runtime on its own: the one device list, device resolution with CPU fallback, session
options, the loaded model's settings and run, and the one-way contract -> runtime import."""
import os
import subprocess
import sys

import numpy as np
import pytest

from glacierseg.core import runtime
from glacierseg.core.errors import DeviceError, InputError, ModelContractError
from glacierseg.core.runtime import CPU, CUDA, DEVICES, execution_providers, load_model, session_options, usable_cores

from .helpers import PKG_DIR

HAS_CUDA = CUDA in runtime.available_providers()


def test_device_resolution_prefers_cuda_and_falls_back_to_the_cpu():
    assert execution_providers("auto", [CUDA, CPU]) == [CUDA, CPU]
    assert execution_providers("cuda", [CUDA, CPU]) == [CUDA, CPU]  # the CPU takes nodes CUDA cannot run
    assert execution_providers("auto", [CPU]) == [CPU]
    assert execution_providers("cpu", [CUDA, CPU]) == [CPU]
    with pytest.raises(DeviceError, match="onnxruntime-gpu") as info:
        execution_providers("cuda", ["CPUExecutionProvider", "AzureExecutionProvider"])
    assert "AzureExecutionProvider" in str(info.value) and "'Auto' or 'CPU'" in str(info.value)


@pytest.mark.skipif(HAS_CUDA, reason="a CUDA provider is present")
def test_loading_on_a_machine_without_cuda(sample_model):
    assert load_model(sample_model, "AUTO").provider == CPU  # case-insensitive, falls back to the CPU
    assert load_model(sample_model, "cpu").options["io_binding"] is False
    with pytest.raises(DeviceError):
        load_model(sample_model, "cuda")


def test_unknown_device_names_the_choices(sample_model):
    with pytest.raises(InputError, match="auto, cpu, cuda"):
        load_model(sample_model, "tpu")


def test_one_device_list_for_every_device_parameter():
    from glacierseg.models import train
    from glacierseg.processing_provider import explain, model_parameters, optimize_model, segment
    from glacierseg.processing_provider import train as train_algorithm

    assert DEVICES == ("auto", "cpu", "cuda")
    assert segment.DEVICES is DEVICES and train_algorithm.DEVICES is DEVICES and train.DEVICES is DEVICES
    assert len(model_parameters.DEVICE_LABELS) == len(DEVICES)
    for adapter in (segment, train_algorithm, explain, optimize_model):
        assert adapter.DEVICE_LABELS is model_parameters.DEVICE_LABELS


def test_session_options():
    import onnxruntime as ort

    o = session_options(3, "basic")
    assert o.intra_op_num_threads == 3 and o.inter_op_num_threads == 1
    assert o.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    assert o.execution_mode == ort.ExecutionMode.ORT_SEQUENTIAL
    assert o.log_severity_level == 3
    assert session_options().intra_op_num_threads == usable_cores()
    disabled = session_options(optimization="disabled")
    assert disabled.graph_optimization_level == ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    with pytest.raises(InputError, match="all, extended, basic, disabled"):
        session_options(optimization="fast")
    with pytest.raises(InputError, match="at least 1"):
        session_options(0)


def test_usable_cores_follow_the_affinity_mask():
    cores = usable_cores()
    assert 1 <= cores <= (os.cpu_count() or 1)
    if hasattr(os, "sched_getaffinity"):
        assert cores == len(os.sched_getaffinity(0))


def test_loaded_model_runs_and_describes_its_session(sample_model):
    from glacierseg.models.sample import sample_contract

    loaded = load_model(sample_model, "cpu", threads=2, optimization="extended")
    assert loaded.contract == sample_contract(tile_size=64)
    assert loaded.options == {"threads": 2, "optimization": "extended", "io_binding": False}
    assert not loaded.half
    assert loaded.describe() == ("CPUExecutionProvider, 2 intra-op thread(s), graph optimization extended, "
                                 "float32 inputs")
    x = np.random.default_rng(0).random((2, len(loaded.contract.bands), 64, 64), dtype=np.float32)
    out = loaded.run(x)
    assert out.dtype == np.float32 and out.shape == (2, len(loaded.contract.classes), 64, 64)


def test_model_file_checks(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_model(str(tmp_path / "missing.onnx"))
    (tmp_path / "junk.onnx").write_bytes(b"\x00junk")
    with pytest.raises(ModelContractError, match="not a readable ONNX model"):
        load_model(str(tmp_path / "junk.onnx"))


def test_contract_does_not_import_runtime(sample_model):
    """One import direction: runtime -> contract. Reading a contract from a file leaves the
    runtime module unloaded."""
    code = ("import sys; from glacierseg.core.contract import read_contract; "
            f"read_contract({sample_model!r}); print('glacierseg.core.runtime' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env=dict(os.environ, PYTHONPATH=str(PKG_DIR)))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"
