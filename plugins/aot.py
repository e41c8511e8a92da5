"""Ahead-of-time compilation of the RoI pooling kernel for a named GPU, with no GPU present.

TensorRT's `aot_impl` stores the PTX this returns in the engine, so the engine runs without Python (trtexec, Triton
Inference Server). Kept free of TensorRT so CI can compile for Hopper (sm_90) and Jetson Orin (sm_87) on a CPU.
"""

from __future__ import annotations

import triton
from triton.backends.compiler import GPUTarget

from srg_deploy.plugins.roi_pool_kernel import BLOCK_C, BLOCK_W, NUM_WARPS, roi_pool_kernel

DTYPES = {"fp32": "fp32", "fp16": "fp16"}


def compile_roi_pool(dtype: str, pooled_shape: tuple[int, int], spatial_scale: float, target: GPUTarget | None = None):
    """Compile for `target` (default: the current GPU) with the pooled size and scale baked in as constexprs.

    Returns Triton's compiled kernel: `.asm["ptx"]`, `.metadata.name`, `.metadata.num_warps`, `.metadata.shared`."""
    if dtype not in DTYPES:
        raise ValueError(f"features dtype {dtype!r} is not supported; expected fp32 or fp16")
    ph, pw = (int(v) for v in pooled_shape)
    signature = {
        "features": f"*{DTYPES[dtype]}",
        "rois": "*fp32",
        "R": "i32",
        "C": "i32",
        "H": "i32",
        "W": "i32",
        "out": f"*{DTYPES[dtype]}",
        "SPATIAL_SCALE": "constexpr",
        "PH": "constexpr",
        "PW": "constexpr",
        "BLOCK_C": "constexpr",
        "BLOCK_W": "constexpr",
    }
    constexprs = {"SPATIAL_SCALE": float(spatial_scale), "PH": ph, "PW": pw, "BLOCK_C": BLOCK_C, "BLOCK_W": BLOCK_W}
    source = triton.compiler.ASTSource(fn=roi_pool_kernel, signature=signature, constexprs=constexprs)
    options = {"num_warps": NUM_WARPS}
    return triton.compile(source, target=target, options=options) if target else triton.compile(source, options=options)
