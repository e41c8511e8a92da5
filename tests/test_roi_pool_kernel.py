"""The Triton RoI pooling kernel against torchvision.ops.roi_pool, the one reference for RoI pooling semantics."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import torchvision

from srg_deploy.errors import SRGError
from srg_deploy.plugins import roi_pool
from srg_deploy.plugins.aot import drop_hidden_params

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"  # cpu: TRITON_INTERPRET=1 (set in conftest)

ADVERSARIAL = [
    [0, 0.0, 0.0, 100.0, 80.0],
    [1, -40.0, -30.0, 20.0, 25.0],  # partly outside
    [0, 300.0, 300.0, 400.0, 380.0],  # entirely outside
    [1, 50.0, 50.0, 50.0, 50.0],  # zero size
    [0, 80.0, 60.0, 30.0, 20.0],  # inverted
    [1, 7.5, 8.5, 23.5, 40.5],  # fractional coordinates
    [0, 8.0, 24.0, 40.0, 56.0],  # 0.5, 1.5, 2.5, 3.5 cells at scale 1/16: round-half-away ties
    [1, -8.0, -24.0, 263.0, 199.0],  # -0.5 and -1.5 cells: ties below zero
    [0, 0.0, 0.0, 271.0, 207.0],  # the whole map
]


def random_rois(n: int, height: int, width: int, batch: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 4, generator=g) * torch.tensor([width, height, width, height]) * 1.3 - 20
    return torch.cat([torch.randint(0, batch, (n, 1), generator=g).float(), xy], dim=1)


def reference(features: torch.Tensor, rois: torch.Tensor, size: int, scale: float) -> torch.Tensor:
    """torchvision on fp32 features; max pooling only selects values, so this is exact for fp16 inputs too."""
    return torchvision.ops.roi_pool(features.float(), rois, (size, size), scale).to(features.dtype)


@pytest.mark.parametrize("size", [7, 14])
def test_fp32_bit_identical_two_images(size):
    g = torch.Generator().manual_seed(size)
    features = torch.randn(2, 20, 13, 17, generator=g).to(DEVICE)
    rois = torch.cat([torch.tensor(ADVERSARIAL[:5]), random_rois(3, 13 * 16, 17 * 16, 2, size)]).to(DEVICE)
    assert torch.equal(roi_pool(features, rois, size, 1 / 16), reference(features, rois, size, 1 / 16))


def test_fp32_ties_and_other_scales():
    features = torch.randn(2, 8, 13, 17, generator=torch.Generator().manual_seed(1)).to(DEVICE)
    rois = torch.tensor(ADVERSARIAL[5:]).to(DEVICE)
    for scale in (1 / 16, 0.5, 1 / 14):
        assert torch.equal(
            roi_pool(features, rois, (7, 5), scale), torchvision.ops.roi_pool(features, rois, (7, 5), scale)
        )


def test_fp16_features_fp32_rois():
    features = torch.randn(2, 16, 11, 9, generator=torch.Generator().manual_seed(2)).half().to(DEVICE)
    rois = torch.tensor(ADVERSARIAL[:4] + ADVERSARIAL[6:8]).to(DEVICE)
    out = roi_pool(features, rois, 7, 1 / 16)
    assert out.dtype == torch.float16
    assert torch.equal(out, reference(features, rois, 7, 1 / 16))


def test_empty_and_bad_inputs():
    features = torch.randn(1, 4, 5, 5).to(DEVICE)
    assert roi_pool(features, torch.zeros(0, 5).to(DEVICE), 7, 1 / 16).shape == (0, 4, 7, 7)
    with pytest.raises(SRGError, match=r"rois must be \[R,5\]"):
        roi_pool(features, torch.zeros(3, 4).to(DEVICE), 7)
    with pytest.raises(SRGError, match="rois must be float32"):
        roi_pool(features.half(), torch.zeros(1, 5).half().to(DEVICE), 7)


AOT_SCRIPT = """
import json, subprocess, sys, tempfile
from triton import knobs
from triton.backends.compiler import GPUTarget
from srg_deploy.plugins.aot import aot_kernel, compile_roi_pool, ptx_isa
capability, max_isa = int(sys.argv[1]), (int(sys.argv[2]) if sys.argv[2] != "none" else None)
target = GPUTarget("cuda", capability, 32)
kernel = aot_kernel("fp16", (14, 14), 1 / 16, max_ptx_isa=max_isa, target=target)
with tempfile.NamedTemporaryFile("w", suffix=".ptx", delete=False) as f:
    f.write(kernel.ptx)
arch = f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"  # the PTX target Triton writes
ptxas = subprocess.run([knobs.nvidia.ptxas.path, f"--gpu-name={arch}", f.name, "-o", f.name + ".cubin"],
                       capture_output=True, text=True)
triton_default = ptx_isa(compile_roi_pool("fp16", (14, 14), 1 / 16, target).asm["ptx"])
print(json.dumps({"ptx": kernel.ptx, "name": kernel.name, "warps": kernel.num_warps, "isa": kernel.ptx_isa,
                  "default_isa": triton_default, "ptxas": ptxas.returncode, "ptxas_log": ptxas.stderr}))
"""


def entry_params(ptx: str) -> list[str]:
    entry = ptx[ptx.index(".entry") : ptx.index(")", ptx.index(".entry"))]
    return [line.split()[1] for line in entry.splitlines() if ".param" in line]


@pytest.mark.parametrize(
    ("capability", "max_isa"),
    [(90, 85), (87, 85), (90, 80), (90, None)],
    ids=["sm90-cuda12.6-driver", "orin-jetpack6", "sm90-cuda12.0-driver", "sm90-triton-default"],
)
def test_aot_ptx_for_hopper_and_orin_without_a_gpu(capability, max_isa):
    """What TensorRT's aot_impl stores in the engine, compiled for H100 (sm_90) and Jetson Orin (sm_87) on a CPU:
    PTX no newer than the driver loads, exactly TensorRT's AOT arguments (inputs, four int32, output; Triton's
    hidden scratch pointers dropped), and still valid PTX for ptxas. Fresh process: AOT needs the real kernel."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    result = subprocess.run(
        [sys.executable, "-c", AOT_SCRIPT, str(capability), str(max_isa).lower()],
        capture_output=True,
        text=True,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    compiled = json.loads(result.stdout)
    ptx, expected_isa = compiled["ptx"], min(max_isa or 999, compiled["default_isa"])
    assert compiled["isa"] == expected_isa and f".version {expected_isa // 10}.{expected_isa % 10}\n" in ptx
    assert f".target sm_{capability}" in ptx and ".entry roi_pool_kernel(" in ptx
    assert entry_params(ptx) == [".u64", ".u64", ".u32", ".u32", ".u32", ".u32", ".u64"]
    assert compiled["ptxas"] == 0, compiled["ptxas_log"]
    assert compiled["name"] == "roi_pool_kernel" and compiled["warps"] * 32 == 128


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


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (torchvision's CUDA roi_pool)")
@pytest.mark.parametrize("dtype", [torch.float32, torch.float16])
def test_full_size_on_gpu_matches_torchvision_cuda(dtype):
    """1024 channels on a 38x63 res4b22 map (600x1000 input), 666 RoIs, against torchvision's own CUDA kernel."""
    features = torch.randn(1, 1024, 38, 63, device="cuda").to(dtype)
    adversarial = torch.tensor(ADVERSARIAL) * torch.tensor([0, 1, 1, 1, 1])  # one image: batch index 0
    rois = torch.cat([adversarial, random_rois(666 - len(ADVERSARIAL), 600, 1000, 1, 0)]).cuda()
    expected = torchvision.ops.roi_pool(features.float(), rois, (7, 7), 1 / 16).to(dtype)
    assert torch.equal(roi_pool(features, rois, 7, 1 / 16), expected)
