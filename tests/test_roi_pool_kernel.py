"""The Triton RoI pooling kernel against torchvision.ops.roi_pool, the one reference for RoI pooling semantics."""

from __future__ import annotations

import pytest
import torch
import torchvision

from srg_deploy.errors import SRGError
from srg_deploy.plugins import roi_pool

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
