"""Ahead-of-time compilation of the RoI pooling kernel into the PTX that TensorRT's `aot_impl` stores in an engine.

Kept free of TensorRT so CI compiles for Hopper (sm_90) and Jetson Orin (sm_87) on a CPU. Two things stand between
Triton's output and a kernel TensorRT can launch, and both are settled here:
- PTX ISA version: Triton writes the newest its own ptxas knows (8.8 for Triton 3.8), and a driver only loads PTX
  up to its CUDA version's ISA (a CUDA 12.6 driver, as on JetPack 6, stops at 8.5). `max_ptx_isa` caps it.
- Parameters: TensorRT launches the kernel with the inputs, the int32 extra arguments, then the outputs (its
  documented AOT convention). Triton >= 3.3 appends hidden scratch pointers (3.3-3.4: global scratch; 3.5+: global
  and profile scratch). Our kernel uses no scratch memory, so those pointers are never read; they are dropped from
  the entry's parameter list, so the PTX matches the convention whatever the Triton version.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import triton
from triton.backends.compiler import GPUTarget

from srg_deploy.errors import SRGError
from srg_deploy.plugins.roi_pool_kernel import BLOCK_C, BLOCK_W, NUM_WARPS, roi_pool_kernel

DTYPES = ("fp32", "fp16")
MIN_TRITON = (3, 2)  # the oldest Triton NVIDIA's AOT plugin sample pins (TensorRT 10.10-10.14)


def _signature(dtype: str) -> dict[str, str]:
    """Inputs, int32 scalars, output, then constexprs: the order TensorRT's AOT launch passes arguments in."""
    return {
        "features": f"*{dtype}",
        "rois": "*fp32",
        "R": "i32",
        "C": "i32",
        "H": "i32",
        "W": "i32",
        "out": f"*{dtype}",
        "SPATIAL_SCALE": "constexpr",
        "PH": "constexpr",
        "PW": "constexpr",
        "BLOCK_C": "constexpr",
        "BLOCK_W": "constexpr",
    }


def compile_roi_pool(
    dtype: str,
    pooled_shape: tuple[int, int],
    spatial_scale: float,
    target: GPUTarget | None = None,
    ptx_version: int | None = None,
):
    """Triton's compiled kernel for `target` (default: the current GPU) with the pooled size and scale baked in as
    constexprs; `ptx_version` (e.g. 85 for PTX ISA 8.5) overrides Triton's default.

    Returns Triton's compiled kernel: `.asm["ptx"]`, `.metadata.name`, `.metadata.num_warps`, `.metadata.shared`."""
    if dtype not in DTYPES:
        raise ValueError(f"features dtype {dtype!r} is not supported; expected fp32 or fp16")
    version = tuple(int(p) for p in re.findall(r"\d+", triton.__version__)[:2])
    if version < MIN_TRITON:
        raise SRGError(
            f"Triton {triton.__version__} is too old to compile the RoI pooling kernel ahead of time:"
            " install Triton >= 3.2 (it comes with PyTorch >= 2.6)"
        )
    ph, pw = (int(v) for v in pooled_shape)
    constexprs = {"SPATIAL_SCALE": float(spatial_scale), "PH": ph, "PW": pw, "BLOCK_C": BLOCK_C, "BLOCK_W": BLOCK_W}
    # Triton 3.3 renamed ASTSource's `constants` to `constexprs`
    values = {"constexprs" if version >= (3, 3) else "constants": constexprs}
    source = triton.compiler.ASTSource(fn=roi_pool_kernel, signature=_signature(dtype), **values)
    options: dict[str, int] = {"num_warps": NUM_WARPS}
    if ptx_version is not None:
        options["ptx_version"] = ptx_version
    return triton.compile(source, target=target, options=options) if target else triton.compile(source, options=options)


@dataclass(frozen=True)
class AotKernel:
    """What `aot_impl` hands TensorRT, plus the PTX ISA version the engine's sidecar records."""

    name: str
    ptx: str
    num_warps: int
    shared: int
    ptx_isa: int  # e.g. 85 for PTX ISA 8.5


def aot_kernel(
    dtype: str,
    pooled_shape: tuple[int, int],
    spatial_scale: float,
    *,
    max_ptx_isa: int | None = None,
    target: GPUTarget | None = None,
) -> AotKernel:
    """The kernel as TensorRT launches it: PTX no newer than `max_ptx_isa` (the driver's limit) and exactly the
    parameters TensorRT passes."""
    compiled = compile_roi_pool(dtype, pooled_shape, spatial_scale, target)
    if max_ptx_isa is not None and ptx_isa(compiled.asm["ptx"]) > max_ptx_isa:
        compiled = compile_roi_pool(dtype, pooled_shape, spatial_scale, target, ptx_version=max_ptx_isa)
    scratch = {k: getattr(compiled.metadata, k, 0) for k in ("global_scratch_size", "profile_scratch_size")}
    if any(scratch.values()):
        raise SRGError(
            f"Triton {triton.__version__} compiled the RoI pooling kernel with scratch memory ({scratch}),"
            " which TensorRT's AOT plugins cannot provide: use Triton 3.2-3.9"
        )
    tensor_params = sum(1 for kind in _signature(dtype).values() if kind != "constexpr")
    ptx = drop_hidden_params(compiled.asm["ptx"], compiled.metadata.name, tensor_params)
    return AotKernel(compiled.metadata.name, ptx, compiled.metadata.num_warps, compiled.metadata.shared, ptx_isa(ptx))


def ptx_isa(ptx: str) -> int:
    """The `.version X.Y` directive of a PTX module, as 10 * X + Y (Triton's `ptx_version` form)."""
    match = re.search(r"^\s*\.version (\d+)\.(\d+)\s*$", ptx, re.MULTILINE)
    if not match:
        raise ValueError("PTX without a .version directive")
    return int(match[1]) * 10 + int(match[2])


def drop_hidden_params(ptx: str, name: str, keep: int) -> str:
    """`ptx` with the entry `name` declaring only its first `keep` parameters. Refused (one line) unless every
    dropped parameter is a 64-bit pointer that the kernel body never reads: Triton's unused scratch pointers."""
    header = re.search(rf"\.entry {re.escape(name)}\(\n(?P<params>.*?)\n\)", ptx, re.DOTALL)
    if not header:
        raise SRGError(f"cannot find the entry point {name} in Triton's PTX; use Triton 3.2-3.9")
    params = header["params"].split(",\n")
    if len(params) < keep:
        raise SRGError(f"Triton's {name} takes {len(params)} parameters, fewer than the {keep} TensorRT passes")
    body = ptx[header.end() :]
    for param in params[keep:]:
        param_name = param.split()[-1]
        if ".u64" not in param.split() or re.search(rf"\b{re.escape(param_name)}\b", body):
            raise SRGError(
                f"Triton {triton.__version__} gave {name} an extra parameter that it uses ({param.strip()}),"
                " which TensorRT's AOT launch does not pass: use Triton 3.2-3.9"
            )
    return ptx[: header.start("params")] + ",\n".join(params[:keep]) + ptx[header.end("params") :]
