"""The RoI kernel as TensorRT's AOT plugin takes it (plugins/aot.py): the shipped PTX is what the Triton kernel
compiles to, takes TensorRT's seven arguments, compiles for every GPU the support table names, is chosen without
Triton, and (on a GPU) computes torchvision's roi_pool when launched the way TensorRT launches it."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision
from conftest import ROOT, assert_clean_error, needs_tensorrt, run_cli
from test_roi_pool_kernel import ADVERSARIAL, random_rois

from srg_deploy.errors import SRGError
from srg_deploy.plugins.aot import PTX_ISA, SHIPPED, aot_kernel, drop_hidden_params, shipped_kernels

SHIPPED_DIR = ROOT / "plugins" / "ptx"
REGENERATE = "regenerate with `python -m srg_deploy.plugins.generate_ptx` and commit plugins/ptx/"
# The real kernel, not Triton's interpreter (which conftest turns on where there is no GPU).
COMPILE_ENV = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
# A fresh interpreter in which `import triton` fails, as on a device where Triton is not installed.
BLOCK_TRITON = """
import importlib.abc, sys
TRIED = []  # the imports of Triton that were refused
class NoTriton(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "triton":
            TRIED.append(name)
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, NoTriton())
"""


def entry_params(ptx: str) -> list[str]:
    entry = ptx[ptx.index(".entry") : ptx.index(")", ptx.index(".entry"))]
    return [line.split()[1] for line in entry.splitlines() if ".param" in line]


def ptxas(ptx_path, arch: str, out_dir) -> subprocess.CompletedProcess:
    """Triton's bundled ptxas (CUDA 12.9): what the driver's JIT does with the PTX on a GPU of `arch`."""
    from triton import knobs

    cubin = out_dir / f"{arch}.cubin"
    return subprocess.run(
        [knobs.nvidia.ptxas.path, f"--gpu-name={arch}", str(ptx_path), "-o", cubin], capture_output=True, text=True
    )


def test_shipped_ptx_is_a_fresh_compile(tmp_path):
    """The generator run now, from the kernel's source, writes exactly the files in plugins/ptx/, byte for byte:
    the shipped PTX cannot drift from the kernel (or from the Triton version .[dev] pins)."""
    out = tmp_path / "ptx"
    result = subprocess.run(
        [sys.executable, "-m", "srg_deploy.plugins.generate_ptx", "--out", str(out)],
        capture_output=True,
        text=True,
        env={**COMPILE_ENV, "TRITON_CACHE_DIR": str(tmp_path / "cache")},  # compiled now, not read from a cache
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    fresh = {p.name: p.read_bytes() for p in out.iterdir()}
    shipped = {p.name: p.read_bytes() for p in SHIPPED_DIR.iterdir()}
    assert len(fresh) == len(SHIPPED) + 1 and sorted(fresh) == sorted(shipped), REGENERATE
    for name in fresh:
        assert fresh[name] == shipped[name], f"plugins/ptx/{name} differs from a fresh compile: {REGENERATE}"


@pytest.mark.parametrize("variant", SHIPPED, ids=[v.file_name for v in SHIPPED])
def test_shipped_ptx_takes_tensorrt_arguments_on_every_gpu(variant, tmp_path):
    """sm_75 PTX at ISA 8.0 with exactly TensorRT's AOT arguments (inputs, four int32, output), which ptxas compiles
    for Turing, Jetson Orin (sm_87), Hopper, Jetson Thor (sm_101 in CUDA 12.9's naming), Blackwell and RTX 50."""
    kernel = shipped_kernels()[variant]
    assert kernel.ptx_isa == PTX_ISA == 80 and "\n.version 8.0\n.target sm_75\n" in kernel.ptx
    assert kernel.name == "roi_pool_kernel" and f".entry {kernel.name}(" in kernel.ptx
    assert "\t.file\t" not in kernel.ptx and "\t.loc\t" not in kernel.ptx  # no line info: no checkout paths
    assert entry_params(kernel.ptx) == [".u64", ".u64", ".u32", ".u32", ".u32", ".u32", ".u64"]
    assert kernel.num_warps * 32 == 128 and kernel.block_c == 64 and 0 < kernel.shared <= 48 * 1024
    for arch in ("sm_75", "sm_87", "sm_90", "sm_100", "sm_101", "sm_120"):
        compiled = ptxas(SHIPPED_DIR / variant.file_name, arch, tmp_path)
        assert compiled.returncode == 0, (arch, compiled.stderr)


CHOOSE_WITHOUT_TRITON = (
    BLOCK_TRITON
    + """
import json
from srg_deploy.errors import SRGError
from srg_deploy.plugins.aot import aot_kernel
kernels = [aot_kernel(d, (p, p), 0.0625, max_ptx_isa=85) for d in ("fp32", "fp16") for p in (7, 14)]
tried_for_shipped = list(TRIED)
try:
    aot_kernel("fp16", (5, 5), 0.0625, max_ptx_isa=90)
    refusal = None
except SRGError as e:
    refusal = str(e)
print(json.dumps({"ptx": [k.ptx for k in kernels], "refusal": refusal, "tried": [tried_for_shipped, TRIED]}))
"""
)


def test_aot_takes_the_shipped_ptx_without_triton():
    """A device without Triton gets the shipped PTX for every shipped variant, and for another pooled size one line
    naming the variant and how to get Triton."""
    result = subprocess.run([sys.executable, "-c", CHOOSE_WITHOUT_TRITON], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    chosen = json.loads(result.stdout)
    expected = [
        (SHIPPED_DIR / f"roi_pool_{d}_{p}x{p}_scale0.0625.ptx").read_text() for d in ("fp32", "fp16") for p in (7, 14)
    ]
    assert chosen["ptx"] == expected
    assert chosen["tried"] == [[], ["triton"]]  # Triton is looked for only when a variant is not shipped
    refusal = chosen["refusal"]
    assert "\n" not in refusal and refusal.startswith("no precompiled RoI pooling kernel for fp16 features, pooled 5x5")
    assert "srg-deploy ships pooled 7x7, 14x14 at scale 0.0625" in refusal
    assert 'compiling one needs Triton, which is not installed: pip install "srg-deploy[jit]"' in refusal


def test_aot_refuses_a_driver_older_than_the_ptx():
    with pytest.raises(
        SRGError, match=r"loads PTX up to ISA 7.8, older than the 8.0 of the RoI pooling kernel: update"
    ):
        aot_kernel("fp32", (7, 7), 1 / 16, max_ptx_isa=78)


COMPILE_OTHER = """
import json, sys
from srg_deploy.plugins.aot import aot_kernel
kernel = aot_kernel("fp32", (5, 3), 1 / 14, max_ptx_isa=90)
open(sys.argv[1], "w").write(kernel.ptx)
print(json.dumps({"name": kernel.name, "isa": kernel.ptx_isa, "warps": kernel.num_warps, "block_c": kernel.block_c}))
"""


def test_aot_compiles_a_variant_it_does_not_ship_with_triton(tmp_path):
    """Another pooled size and scale (a custom config): Triton compiles it into the same form on a CPU."""
    ptx_path = tmp_path / "k.ptx"
    result = subprocess.run(
        [sys.executable, "-c", COMPILE_OTHER, str(ptx_path)], capture_output=True, text=True, env=COMPILE_ENV
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"name": "roi_pool_kernel", "isa": 80, "warps": 4, "block_c": 64}
    ptx = ptx_path.read_text()
    assert "\n.version 8.0\n.target sm_75\n" in ptx
    assert entry_params(ptx) == [".u64", ".u64", ".u32", ".u32", ".u32", ".u32", ".u64"]
    compiled = ptxas(ptx_path, "sm_87", tmp_path)
    assert compiled.returncode == 0, compiled.stderr


def test_hidden_parameters_are_dropped_only_when_unused():
    """A parameter past TensorRT's arguments that the body reads cannot be dropped: refused, naming it."""
    header = ".visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u64 .ptr .global .align 1 k_param_1\n)\n"
    unused = header + "{\n\tld.param.u64 %rd1, [k_param_0];\n\tret;\n}\n"
    assert entry_params(drop_hidden_params(unused, "k", 1)) == [".u64"]
    used = header + "{\n\tld.param.u64 %rd1, [k_param_1];\n\tret;\n}\n"
    with pytest.raises(SRGError, match=r"gave k an extra parameter that it uses \(.param .u64 .ptr .global"):
        drop_hidden_params(used, "k", 1)
    with pytest.raises(SRGError, match="takes 2 parameters, fewer than the 7 TensorRT passes"):
        drop_hidden_params(unused, "k", 7)


def launch_like_tensorrt(kernel, features: torch.Tensor, rois: torch.Tensor, pooled: int) -> torch.Tensor:
    """The PTX loaded by the driver (cuModuleLoadData JIT-compiles it for this GPU) and launched with TensorRT's
    AOT arguments and the launch parameters `aot_impl` declares."""
    import ctypes

    cuda = ctypes.CDLL("libcuda.so.1")

    def check(status: int) -> None:
        assert status == 0, f"CUDA driver error {status}"

    r, (_, c, h, w) = rois.shape[0], features.shape
    out = torch.empty((r, c, pooled, pooled), dtype=features.dtype, device="cuda")
    module, function = ctypes.c_void_p(), ctypes.c_void_p()
    check(cuda.cuModuleLoadData(ctypes.byref(module), ctypes.c_char_p(kernel.ptx.encode() + b"\0")))
    check(cuda.cuModuleGetFunction(ctypes.byref(function), module, kernel.name.encode()))
    args = [ctypes.c_uint64(features.data_ptr()), ctypes.c_uint64(rois.data_ptr())]
    args += [ctypes.c_int32(v) for v in (r, c, h, w)] + [ctypes.c_uint64(out.data_ptr())]
    params = (ctypes.c_void_p * len(args))(*(ctypes.cast(ctypes.pointer(a), ctypes.c_void_p) for a in args))
    params_ptr = ctypes.cast(params, ctypes.c_void_p)
    cuda.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3
    grid = (max(r, 1), -(-c // kernel.block_c), pooled * pooled)
    stream = ctypes.c_void_p(torch.cuda.current_stream().cuda_stream)
    check(cuda.cuLaunchKernel(function, *grid, kernel.num_warps * 32, 1, 1, kernel.shared, stream, params_ptr, None))
    torch.cuda.synchronize()
    check(cuda.cuModuleUnload(module))
    return out


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (the driver JIT-compiles the PTX)")
@pytest.mark.parametrize("variant", SHIPPED, ids=[v.file_name for v in SHIPPED])
def test_shipped_ptx_on_the_gpu_matches_torchvision(variant):
    """The shipped sm_75 PTX, compiled by this GPU's driver and launched as TensorRT launches it, gives torchvision's
    CUDA roi_pool bit for bit (1024 channels, a 38x63 map, adversarial and random boxes, two images)."""
    dtype = {"fp32": torch.float32, "fp16": torch.float16}[variant.dtype]
    pooled = variant.pooled_shape[0]
    features = torch.randn(2, 1024, 38, 63, device="cuda").to(dtype)
    rois = torch.cat([torch.tensor(ADVERSARIAL), random_rois(300, 600, 1000, 2, pooled)]).cuda()
    kernel = shipped_kernels()[variant]
    expected = torchvision.ops.roi_pool(features.float(), rois, (pooled, pooled), variant.spatial_scale).to(dtype)
    assert torch.equal(launch_like_tensorrt(kernel, features, rois, pooled), expected)
    empty = launch_like_tensorrt(kernel, features, rois[:0], pooled)  # TensorRT launches one row for zero RoIs
    assert empty.shape == (0, 1024, pooled, pooled)


def without_triton(folder) -> dict[str, str]:
    """Environment for a CLI run whose Python cannot import Triton (a sitecustomize that installs the blocker)."""
    (folder / "sitecustomize.py").write_text(BLOCK_TRITON)
    return {"PYTHONPATH": os.pathsep.join(p for p in (str(folder), os.environ.get("PYTHONPATH")) if p)}


@pytest.mark.trt
@needs_tensorrt
def test_build_engine_without_triton(small_onnx, tmp_path):
    """A device without Triton builds an AOT engine (the shipped PTX, ISA 8.0): `build-engine` with `import
    triton` failing in its process."""
    engine = tmp_path / "model.engine"
    sizes = ["--min-size", "64x64", "--opt-size", "128x160", "--max-size", "256x256"]  # as test_build_engine's
    args = ["build-engine", small_onnx, "-o", engine, "--max-boxes", "16", "--max-pairs", "120", *sizes]
    result = run_cli(*args, env=without_triton(tmp_path))
    assert result.returncode == 0, result.stdout + result.stderr
    plugin = json.loads((tmp_path / "model.engine.json").read_text())["plugin"]
    assert plugin["implementation"] == "aot" and plugin["ptx_isa"] == "8.0"


@pytest.mark.trt
@needs_tensorrt
def test_build_engine_without_triton_refuses_an_unshipped_variant(small_onnx, tmp_path):
    """A pooled size whose PTX is not shipped, on a device without Triton: one line naming the variant."""
    import onnx

    proto = onnx.load(str(small_onnx))
    for node in proto.graph.node:
        for attr in node.attribute:
            if node.op_type == "roi_pool" and attr.name == "pooled_shape":
                attr.ints[:] = [5, 5]
    del proto.graph.value_info[:]  # shapes recorded for 7x7
    model = tmp_path / "pooled5.onnx"
    model.write_bytes(proto.SerializeToString())
    result = run_cli("build-engine", model, "-o", tmp_path / "m.engine", env=without_triton(tmp_path))
    assert_clean_error(result, "no precompiled RoI pooling kernel for fp32 features, pooled 5x5", "srg-deploy[jit]")
