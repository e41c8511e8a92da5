"""The RoI pooling kernel as TensorRT's `aot_impl` stores it in an engine: PTX with the pooled size and spatial scale
baked in, taking exactly TensorRT's seven arguments.

The variants the project's configurations use (`SHIPPED`) come precompiled in `ptx/`, written from the Triton kernel
by `python -m srg_deploy.plugins.generate_ptx`, so building an engine needs no Triton (a Jetson builds its own
engine with JetPack's TensorRT alone); a test compiles them afresh and compares byte for byte. Any other variant is
compiled here with Triton, imported only then, into the same form, or refused in one line naming the variant.

One PTX serves every supported GPU and driver (docs/tensorrt.md):
- `.target sm_75`: PTX is forward compatible (the driver compiles it for the GPU it runs on), and 7.5 (Turing) is
  the oldest compute capability TensorRT 10.5+ supports (Volta was removed in 10.5); Jetson Orin (8.7) and Thor run
  it too.
- `.version 8.0`: a driver loads PTX up to its CUDA version's ISA and every older one; 8.0 is CUDA 12.0's, so every
  driver of the supported CUDA 12 and 13 builds loads it: JetPack 7 (CUDA 13), x86-64 and SBSA for CUDA 12.0-13.x.
Triton's hidden scratch parameters (3.3-3.4: global scratch; 3.5+: global and profile scratch) are dropped from the
entry once they are shown unused, so the PTX takes TensorRT's AOT arguments (inputs, int32 extras, outputs) whatever
the Triton version.
"""

from __future__ import annotations

import functools
import json
import os
import re
from dataclasses import asdict, dataclass
from importlib import resources

from srg_deploy.errors import SRGError

DTYPES = ("fp32", "fp16")
TARGET_ARCH = 75  # .target sm_75
PTX_ISA = 80  # .version 8.0
MIN_TRITON = (3, 2)  # the oldest Triton NVIDIA's AOT plugin sample pins (TensorRT 10.10-10.14)
TRITON_HINT = 'pip install "srg-deploy[jit]" (Triton 3.2-3.9)'


@dataclass(frozen=True)
class Variant:
    """What the compiled kernel depends on besides its source: the features' dtype and the two constexprs that an
    ONNX model's `srg::roi_pool` attributes fix."""

    dtype: str
    pooled_shape: tuple[int, int]
    spatial_scale: float

    def __str__(self) -> str:
        return (
            f"{self.dtype} features, pooled {self.pooled_shape[0]}x{self.pooled_shape[1]}, scale {self.spatial_scale!r}"
        )

    @property
    def file_name(self) -> str:
        return f"roi_pool_{self.dtype}_{self.pooled_shape[0]}x{self.pooled_shape[1]}_scale{self.spatial_scale!r}.ptx"


# Pooled 7x7 (the default architecture) and 14x14 (the bottom-up-attention import), both on the stride-16 trunk.
SHIPPED = tuple(Variant(d, p, 1 / 16) for p in ((7, 7), (14, 14)) for d in DTYPES)


@dataclass(frozen=True)
class AotKernel:
    """What `aot_impl` hands TensorRT, plus the PTX ISA version the engine's sidecar records."""

    name: str
    ptx: str
    num_warps: int
    shared: int
    block_c: int  # channels per program: the launch grid's y extent is ceil(C / block_c)
    ptx_isa: int  # e.g. 80 for PTX ISA 8.0


def aot_kernel(dtype: str, pooled_shape: tuple[int, int], spatial_scale: float, *, max_ptx_isa: int) -> AotKernel:
    """The kernel for this variant as TensorRT launches it: the shipped PTX, else Triton's compile. `max_ptx_isa` is
    the driver's limit: CUDA 12 and 13 drivers load 8.0; a CUDA 11 one (TensorRT 10.9-10.12's cu11 builds, outside
    the support table) gets one line."""
    if dtype not in DTYPES:
        raise ValueError(f"features dtype {dtype!r} is not supported; expected fp32 or fp16")
    if max_ptx_isa < PTX_ISA:
        raise SRGError(
            f"this NVIDIA driver loads PTX up to ISA {max_ptx_isa // 10}.{max_ptx_isa % 10}, older than the"
            f" {PTX_ISA // 10}.{PTX_ISA % 10} of the RoI pooling kernel: update the driver (CUDA 12.0 or newer)"
        )
    variant = Variant(dtype, (int(pooled_shape[0]), int(pooled_shape[1])), float(spatial_scale))
    return shipped_kernels().get(variant) or compile_kernel(variant)


@functools.cache
def shipped_kernels() -> dict[Variant, AotKernel]:
    """The precompiled kernels in the package's `ptx/` folder, as its manifest lists them."""
    folder = resources.files("srg_deploy.plugins") / "ptx"
    manifest = json.loads((folder / "manifest.json").read_text())
    kernels = {}
    for entry in manifest["kernels"]:
        variant = Variant(entry["dtype"], tuple(entry["pooled_shape"]), entry["spatial_scale"])
        ptx = (folder / variant.file_name).read_text()
        kernels[variant] = AotKernel(
            entry["name"], ptx, entry["num_warps"], entry["shared"], entry["block_c"], ptx_isa(ptx)
        )
    return kernels


def manifest_entry(variant: Variant, kernel: AotKernel) -> dict:
    """A kernel's line in `ptx/manifest.json`: everything but the PTX, which is in its own file."""
    entry = {k: v for k, v in asdict(kernel).items() if k not in ("ptx", "ptx_isa")}
    return {
        "dtype": variant.dtype,
        "pooled_shape": list(variant.pooled_shape),
        "spatial_scale": variant.spatial_scale,
    } | entry


def _import_triton(variant: Variant):
    try:
        import triton
    except ImportError:
        shipped = ", ".join(f"{v.pooled_shape[0]}x{v.pooled_shape[1]}" for v in SHIPPED if v.dtype == variant.dtype)
        raise SRGError(
            f"no precompiled RoI pooling kernel for {variant} (srg-deploy ships pooled {shipped} at scale"
            f" {SHIPPED[0].spatial_scale!r}), and compiling one needs Triton, which is not installed: {TRITON_HINT}"
        ) from None
    version = tuple(int(p) for p in re.findall(r"\d+", triton.__version__)[:2])
    if version < MIN_TRITON:
        raise SRGError(
            f"Triton {triton.__version__} is too old to compile the RoI pooling kernel ahead of time:"
            " install Triton >= 3.2 (it comes with PyTorch >= 2.6)"
        )
    return triton, version


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


def compile_kernel(variant: Variant) -> AotKernel:
    """Triton's compile of the kernel for sm_75 at PTX ISA 8.0, with no GPU needed, in TensorRT's launch form.
    Needs the real kernel: run it in a process without TRITON_INTERPRET."""
    triton, version = _import_triton(variant)
    from triton.backends.compiler import GPUTarget

    from srg_deploy.plugins.roi_pool_kernel import BLOCK_C, BLOCK_W, NUM_WARPS, roi_pool_kernel

    ph, pw = variant.pooled_shape
    constexprs = {"SPATIAL_SCALE": variant.spatial_scale, "PH": ph, "PW": pw, "BLOCK_C": BLOCK_C, "BLOCK_W": BLOCK_W}
    # Triton 3.3 renamed ASTSource's `constants` to `constexprs`
    values = {"constexprs" if version >= (3, 3) else "constants": constexprs}
    source = triton.compiler.ASTSource(fn=roi_pool_kernel, signature=_signature(variant.dtype), **values)
    options = {"num_warps": NUM_WARPS, "ptx_version": PTX_ISA}
    # Without line info, which names this checkout's path and line numbers: the PTX depends on the kernel's code
    # alone, the same from any checkout (and TensorRT has no use for it).
    saved = os.environ.get("TRITON_DISABLE_LINE_INFO")
    os.environ["TRITON_DISABLE_LINE_INFO"] = "1"
    try:
        compiled = triton.compile(source, target=GPUTarget("cuda", TARGET_ARCH, 32), options=options)
    finally:
        if saved is None:
            del os.environ["TRITON_DISABLE_LINE_INFO"]
        else:
            os.environ["TRITON_DISABLE_LINE_INFO"] = saved
    scratch = {k: getattr(compiled.metadata, k, 0) for k in ("global_scratch_size", "profile_scratch_size")}
    if any(scratch.values()):
        raise SRGError(
            f"Triton {triton.__version__} compiled the RoI pooling kernel with scratch memory ({scratch}),"
            " which TensorRT's AOT plugins cannot provide: use Triton 3.2-3.9"
        )
    tensor_params = sum(1 for kind in _signature(variant.dtype).values() if kind != "constexpr")
    name = compiled.metadata.name
    ptx = drop_hidden_params(compiled.asm["ptx"], name, tensor_params)
    return AotKernel(name, ptx, compiled.metadata.num_warps, compiled.metadata.shared, BLOCK_C, ptx_isa(ptx))


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
                f"Triton gave {name} an extra parameter that it uses ({param.strip()}),"
                " which TensorRT's AOT launch does not pass: use Triton 3.2-3.9"
            )
    return ptx[: header.start("params")] + ",\n".join(params[:keep]) + ptx[header.end("params") :]
