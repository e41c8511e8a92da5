"""What the TensorRT runtime needs before TensorRT itself: the import direction, the sidecar, version and driver
checks, CUDA error names. None of it needs TensorRT or a GPU."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from srg_deploy.config import SRGConfig
from srg_deploy.errors import SRGError
from srg_deploy.tensorrt_env import (
    SIDECAR_FORMAT,
    check_cuda,
    check_plugin_api,
    driver_cuda_version,
    gpu_identity,
    import_cudart,
    max_ptx_isa,
    ptx_isa_from_text,
    ptx_isa_text,
    read_sidecar,
    sidecar_path,
)

FORBIDDEN = ("torch", "torchvision", "triton", "onnx", "srg_deploy.export", "srg_deploy.plugins.trt_plugin")


def test_tensorrt_runtime_imports_neither_torch_nor_the_export_package():
    """A fresh interpreter: the TensorRT backend loads no torch, Triton, onnx, export package or plugin module."""
    code = (
        "import sys, json; import srg_deploy.runtime.trt_backend, srg_deploy.tensorrt_env;"
        "print(json.dumps(sorted(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    loaded = json.loads(result.stdout)
    assert not [m for m in loaded if m in FORBIDDEN or m.startswith(tuple(f"{f}." for f in FORBIDDEN))]


def sidecar(**changes) -> dict:
    data = {
        "format": SIDECAR_FORMAT,
        "mode": "boxes",
        "precision": "fp16",
        "max_pairs": None,
        "config": SRGConfig().to_dict(),
        "tensorrt_version": "10.16.1.11",
        "gpu": {"name": "NVIDIA H100", "compute_capability": "9.0"},
        "cuda_driver": "12.8",
        "plugin": {"id": "srg::roi_pool", "implementation": "aot", "ptx_isa": "8.7"},
    }
    return data | changes


@pytest.fixture
def engine(tmp_path):
    path = tmp_path / "model.engine"
    path.write_bytes(b"engine")
    return path


def write(engine, data) -> None:
    sidecar_path(engine).write_text(data if isinstance(data, str) else json.dumps(data))


def test_sidecar_round_trip(engine):
    write(engine, sidecar())
    assert read_sidecar(engine)["plugin"]["ptx_isa"] == "8.7"
    write(engine, sidecar(plugin={"implementation": "jit", "ptx_isa": None}))
    assert read_sidecar(engine)["plugin"]["implementation"] == "jit"
    for precision in ("fp32", "fp16", "int8"):  # int8: a `quantize` model built into an engine
        write(engine, sidecar(precision=precision))
        assert read_sidecar(engine)["precision"] == precision


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "is not valid JSON"),
        ("[1, 2]", "is not an srg-deploy engine sidecar"),
        (sidecar(format="srg-deploy-engine/1"), "is format srg-deploy-engine/1, this srg-deploy reads"),
        (sidecar(mode="detect", gpu={"name": "x"}), "missing or invalid mode, gpu;"),
        (sidecar(precision="bf16"), "missing or invalid precision;"),
        (sidecar(plugin={"implementation": "aot"}), "missing or invalid plugin.ptx_isa;"),
        (sidecar(plugin={"implementation": "jit", "ptx_isa": "8.7"}), "missing or invalid plugin.ptx_isa;"),
        (sidecar(plugin={"implementation": "cubin", "ptx_isa": None}), "plugin.implementation, plugin.ptx_isa;"),
        ({k: v for k, v in sidecar().items() if k != "config"}, "missing or invalid config;"),
    ],
)
def test_sidecar_is_validated_with_one_line(engine, data, message):
    write(engine, data)
    with pytest.raises(SRGError, match="rebuild the engine with `srg-deploy build-engine`") as error:
        read_sidecar(engine)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_missing_sidecar(engine):
    with pytest.raises(SRGError, match=r"model.engine has no sidecar model.engine.json"):
        read_sidecar(engine)


def test_tensorrt_without_python_plugins_is_refused_naming_the_minimum():
    with pytest.raises(SRGError) as error:
        check_plugin_api("10.3.0.30")  # JetPack 6.x
    assert str(error.value) == (
        "TensorRT 10.3.0.30 has no Python plugin API (tensorrt.plugin, added in 10.6; AOT plugins in 10.9), which the"
        " srg::roi_pool plugin needs: install TensorRT >= 10.9 (JetPack 6.x ships 10.3; see the README's TensorRT"
        " support table)"
    )
    for version in ("10.6.0", "10.9.0.34", "10.16.1.11", "11.4.0.106"):
        check_plugin_api(version)


@pytest.mark.parametrize(
    ("cuda", "isa"),
    [((11, 8), 78), ((12, 0), 80), ((12, 4), 84), ((12, 6), 85), ((12, 8), 87), ((12, 9), 88), ((13, 0), 90)],
)
def test_newest_ptx_a_driver_loads(cuda, isa):
    """PTX ISA release notes: CUDA 12.6 added no ISA (8.5, JetPack 6), 12.8 -> 8.7, 12.9 -> 8.8, 13.0 -> 9.0."""
    assert max_ptx_isa(cuda) == isa
    assert ptx_isa_from_text(ptx_isa_text(isa)) == isa


def fake_cudart(error: int, name: bytes, driver: int, runtime: int):
    """cuda-python's runtime module as NVIDIA's samples use it: calls return (error, *results)."""
    return SimpleNamespace(
        cudaGetDeviceProperties=lambda device: (error, None),
        cudaGetErrorName=lambda err: (0, name),
        cudaDriverGetVersion=lambda: (0, driver),
        cudaRuntimeGetVersion=lambda: (0, runtime),
    )


def test_cuda_errors_are_reported_by_name():
    """cuda-python 13 (what `[trt]` resolves to) on a CUDA 12 driver: the error's name and the CUDA 12 builds."""
    old_driver = fake_cudart(35, b"cudaErrorInsufficientDriver", driver=12060, runtime=13000)
    with pytest.raises(SRGError) as error:
        gpu_identity(old_driver)
    assert str(error.value) == (
        "cannot use GPU 0: CUDA reports cudaErrorInsufficientDriver; the NVIDIA driver supports CUDA 12.6, older than"
        ' cuda-python\'s CUDA 13.0: use the CUDA 12 builds, pip install tensorrt-cu12 "cuda-python<13"'
    )
    no_gpu = fake_cudart(100, b"cudaErrorNoDevice", driver=13000, runtime=13000)
    with pytest.raises(SRGError, match="CUDA reports cudaErrorNoDevice; TensorRT engines need an NVIDIA GPU"):
        gpu_identity(no_gpu)
    with pytest.raises(RuntimeError, match="CUDA error cudaErrorMemoryAllocation"):
        check_cuda(fake_cudart(2, b"cudaErrorMemoryAllocation", 13000, 13000), (2, 0))


@pytest.mark.skipif(importlib.util.find_spec("cuda.bindings") is None, reason="cuda-python not installed")
@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present: the no-driver path cannot be reached")
def test_real_cuda_python_without_a_driver():
    """This machine's own cuda-python (PyTorch brings it) with no NVIDIA driver: named, not 'no GPU'."""
    cudart = import_cudart()
    with pytest.raises(SRGError) as error:
        gpu_identity(cudart)
    assert str(error.value).startswith("cannot use GPU 0: CUDA reports cudaError")
    assert "no NVIDIA driver is installed" in str(error.value)
    with pytest.raises(SRGError, match="no NVIDIA driver is installed"):
        driver_cuda_version(cudart)
