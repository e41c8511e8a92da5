"""What the TensorRT builder (export) and the TensorRT runtime share, in the neutral core layer (no torch, Triton,
export or runtime imports): importing TensorRT and cuda-python, naming CUDA errors, the GPU and driver an engine
is built for, and the engine's JSON sidecar (`model.engine.json`), its format and its validation.

TensorRT and cuda-python are imported only inside functions, so this module loads on any machine.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from srg_deploy.contract import MODES
from srg_deploy.errors import SRGError

TRT_INSTALL_HINT = 'pip install "srg-deploy[trt]" (TensorRT 10.9+ and cuda-python, on a machine with an NVIDIA GPU)'
SIDECAR_FORMAT = "srg-deploy-engine/2"
SIDECAR_SUFFIX = ".json"
PRECISIONS = ("fp32", "fp16", "int8")  # what build-engine makes: fp32, --fp16, a `quantize` model
IMPLEMENTATIONS = ("aot", "jit")  # the plugin's kernel compiled into the engine, or called through Python


def import_tensorrt():
    """TensorRT, or one line saying how to install it."""
    try:
        import tensorrt as trt
    except ImportError:
        raise SRGError(f"TensorRT is required for this step and is not installed: {TRT_INSTALL_HINT}") from None
    return trt


def check_plugin_api(version: str) -> None:
    """TensorRT's Python plugins (`tensorrt.plugin`) arrived in 10.6 and their AOT form in 10.9; older TensorRT
    (JetPack 6.x ships 10.3) cannot build an engine with the srg::roi_pool plugin."""
    major, minor = (int(p) for p in re.findall(r"\d+", version)[:2])
    if (major, minor) < (10, 6):
        raise SRGError(
            f"TensorRT {version} has no Python plugin API (tensorrt.plugin, added in 10.6; AOT plugins in 10.9),"
            " which the srg::roi_pool plugin needs: install TensorRT >= 10.9 (JetPack 6.x ships 10.3; see the"
            " README's TensorRT support table)"
        )


def import_cudart():
    """cuda-python's CUDA runtime module (the new and the old import path), or one line saying how to install it."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python, as in TensorRT 10.9-10.13 samples
        except ImportError:
            raise SRGError(
                f"cuda-python is required for TensorRT engines and is not installed: {TRT_INSTALL_HINT}"
            ) from None
    return cudart


def _failed(err: Any) -> bool:
    return getattr(err, "value", err) != 0


def cuda_error_name(cudart, err: Any) -> str:
    """`cudaErrorInsufficientDriver`, not a number: the name is what users search for."""
    name = cudart.cudaGetErrorName(err)[1]
    return name.decode() if isinstance(name, bytes) else str(name)


def check_cuda(cudart, result: tuple) -> Any:
    """cuda-python calls return (error, *results): the results, or RuntimeError naming the error."""
    err, *results = result
    if _failed(err):
        raise RuntimeError(f"CUDA error {cuda_error_name(cudart, err)}")
    return results[0] if len(results) == 1 else (tuple(results) or None)


def gpu_identity(cudart) -> dict[str, str]:
    """Name and compute capability of GPU 0 (what an engine is built for and must run on)."""
    err, props = cudart.cudaGetDeviceProperties(0)
    if _failed(err):
        raise SRGError(f"cannot use GPU 0: CUDA reports {cuda_error_name(cudart, err)}; {_driver_problem(cudart)}")
    gpu = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return {"name": gpu.rstrip("\x00"), "compute_capability": f"{props.major}.{props.minor}"}


def _version_text(version: int) -> str:
    return f"{version // 1000}.{version % 1000 // 10}"


def _driver_problem(cudart) -> str:
    """Why CUDA refuses the GPU, when the driver says: none installed, or older than cuda-python's CUDA runtime
    (cuda-python 13, what `[trt]` resolves to, on a CUDA 12 driver)."""
    driver, runtime = cudart.cudaDriverGetVersion()[1], cudart.cudaRuntimeGetVersion()[1]
    if driver == 0:
        return "no NVIDIA driver is installed, and TensorRT engines need an NVIDIA GPU"
    if driver < runtime:
        major = driver // 1000
        return (
            f"the NVIDIA driver supports CUDA {_version_text(driver)}, older than cuda-python's CUDA"
            f" {_version_text(runtime)}: use the CUDA {major} builds,"
            f' pip install tensorrt-cu{major} "cuda-python<{major + 1}"'
        )
    return "TensorRT engines need an NVIDIA GPU"


def driver_cuda_version(cudart) -> tuple[int, int]:
    """The newest CUDA version the installed NVIDIA driver supports, e.g. (12, 6) on JetPack 6."""
    version = check_cuda(cudart, cudart.cudaDriverGetVersion())
    if version == 0:
        raise SRGError("no NVIDIA driver is installed; TensorRT engines need an NVIDIA GPU and its driver")
    return version // 1000, version % 1000 // 10


def max_ptx_isa(cuda: tuple[int, int]) -> int:
    """The newest PTX ISA a driver for CUDA `cuda` loads, as 10 * major + minor (PTX ISA release notes: CUDA 11.x
    -> 7.x, 12.0-12.5 -> 8.0-8.5, 12.6 -> 8.5, 12.8 -> 8.7, 12.9 -> 8.8, 13.x -> 9.x; the mapping Triton uses)."""
    major, minor = cuda
    if major >= 13:
        return 90 + (major - 13) * 10 + minor
    if major == 12:
        return 80 + minor - (1 if minor >= 6 else 0)
    return 70 + minor


def ptx_isa_text(isa: int) -> str:
    """85 -> "8.5", as the sidecar records it."""
    return f"{isa // 10}.{isa % 10}"


def ptx_isa_from_text(text: str) -> int:
    major, minor = text.split(".")
    return int(major) * 10 + int(minor)


def sidecar_path(engine_path: Path) -> Path:
    return Path(str(engine_path) + SIDECAR_SUFFIX)


def read_sidecar(engine_path: Path) -> dict:
    """The sidecar of `engine_path`, checked for everything the runtime reads from it."""
    path = sidecar_path(engine_path)
    rebuild = "rebuild the engine with `srg-deploy build-engine`"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise SRGError(
            f"{engine_path} has no sidecar {path.name}; build engines with `srg-deploy build-engine`"
        ) from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SRGError(f"{path} is not valid JSON ({e}); {rebuild}") from None
    if not isinstance(data, dict) or not str(data.get("format", "")).startswith("srg-deploy-engine/"):
        raise SRGError(f"{path} is not an srg-deploy engine sidecar; {rebuild}")
    if data["format"] != SIDECAR_FORMAT:
        raise SRGError(f"{path} is format {data['format']}, this srg-deploy reads {SIDECAR_FORMAT}; {rebuild}")
    plugin = data.get("plugin") if isinstance(data.get("plugin"), dict) else {}
    gpu = data.get("gpu") if isinstance(data.get("gpu"), dict) else {}
    ptx = plugin.get("ptx_isa")
    checks = {
        "mode": data.get("mode") in MODES,
        "precision": data.get("precision") in PRECISIONS,
        "config": isinstance(data.get("config"), dict),
        "tensorrt_version": isinstance(data.get("tensorrt_version"), str),
        "gpu": all(isinstance(gpu.get(k), str) for k in ("name", "compute_capability")),
        "plugin.implementation": plugin.get("implementation") in IMPLEMENTATIONS,
        # an AOT engine's kernel is PTX of a known ISA version; a JIT engine has none
        "plugin.ptx_isa": ptx is None
        if plugin.get("implementation") == "jit"
        else isinstance(ptx, str) and re.fullmatch(r"\d+\.\d", ptx) is not None,
    }
    bad = [key for key, ok in checks.items() if not ok]
    if bad:
        raise SRGError(f"{path} has missing or invalid {', '.join(bad)}; {rebuild}")
    return data
