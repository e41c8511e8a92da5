"""`srg-deploy bench` and its FLOP counter, checked against a hand count and torch's own FlopCounterMode."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import assert_clean_error, run_cli
from torch.utils.flop_counter import FlopCounterMode

from srg_deploy.config import SRGConfig
from srg_deploy.model import SRGNet
from srg_deploy.runtime.bench import STAGES, Workload


def conv(h: int, w: int, cin: int, cout: int, k: int, stride: int, pad: int) -> tuple[int, int, int]:
    """(out h, out w, MACs) of a k x k convolution, by the textbook formula."""
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    return ho, wo, ho * wo * cout * cin * k * k


def bottlenecks(h: int, w: int, cin: int, blocks: int, width: int, stride: int) -> tuple[int, int, int, int]:
    """A torchvision ResNet stage (stride on the 3x3, projection shortcut on the first block): (h, w, cout, MACs)."""
    total = 0
    for b in range(blocks):
        s = stride if b == 0 else 1
        _, _, m1 = conv(h, w, cin, width, 1, 1, 0)
        h2, w2, m2 = conv(h, w, width, width, 3, s, 1)
        _, _, m3 = conv(h2, w2, width, 4 * width, 1, 1, 0)
        total += m1 + m2 + m3 + (conv(h, w, cin, 4 * width, 1, s, 0)[2] if b == 0 else 0)
        h, w, cin = h2, w2, 4 * width
    return h, w, cin, total


def hand_trunk_macs(h: int, w: int) -> int:
    """ResNet-101 conv1..layer3 (res4b22): 7x7/2 stem, 3x3/2 max pool, 3 + 4 + 23 bottlenecks."""
    h, w, total = conv(h, w, 3, 64, 7, 2, 3)
    h, w = (h + 2 - 3) // 2 + 1, (w + 2 - 3) // 2 + 1
    cin = 64
    for blocks, width, stride in ((3, 64, 1), (4, 128, 2), (23, 256, 2)):
        h, w, cin, macs = bottlenecks(h, w, cin, blocks, width, stride)
        total += macs
    return total


@pytest.mark.parametrize("size", [(600, 1000), (480, 640), (97, 131)])
def test_trunk_macs_match_hand_count(size):
    macs = Workload(*size, boxes=2).macs(SRGConfig())
    assert macs.trunk == hand_trunk_macs(*size)
    if size == (600, 1000):
        assert round(macs.trunk / 1e9, 1) == 84.9  # docs/DESIGN.md §2: "trunk ≈ 82 G at 600×1000"


def test_roi_and_head_macs_match_hand_count():
    n, p = 36, 630
    macs = Workload(600, 1000, boxes=n).macs(SRGConfig())
    assert macs.per_roi == bottlenecks(7, 7, 1024, 3, 512, 2)[3]
    assert round(macs.per_roi / 1e9, 2) == 0.26  # docs/DESIGN.md §2: "pool5 ≈ 0.26 G per RoI at 7×7"
    assert macs.roi_pool5 == (n + p) * macs.per_roi
    assert macs.heads == n * 2048 * (151 + 512 + 512) + p * 2048 * 512 + 2 * p * 1536 * 51
    budget = Workload(600, 1000, boxes=n, pairs=128).macs(SRGConfig())
    assert budget.roi_pool5 == (n + 128) * macs.per_roi and budget.trunk == macs.trunk


@pytest.mark.parametrize(
    "variant",
    [
        {},
        {"stride_in_1x1": True, "stem_pool": "caffe"},
        {"res5_dilation": 2, "roi_output_size": 14},
    ],
    ids=["torchvision", "caffe-stem-stride-in-1x1", "dilated-res5-14x14"],
)
@torch.no_grad()
def test_macs_of_config_variants_match_torch_flop_counter(variant):
    """The count is arithmetic on the config (no torch at run time): torch's FlopCounterMode on a real forward
    pass of each architecture variant must agree, at an odd size where rounding differs between variants."""
    config = dataclasses.replace(SRGConfig(), architecture=dataclasses.replace(SRGConfig().architecture, **variant))
    net = SRGNet(config)
    image = torch.randn(1, 3, 75, 101)
    boxes = torch.tensor([[0.0, 0.0, 40.0, 30.0], [20.0, 10.0, 90.0, 60.0]])
    pairs = torch.tensor([[0, 1]])
    macs = Workload(75, 101, boxes=2, pairs=1).macs(config)
    with FlopCounterMode(display=False) as counter:
        net(image, boxes, pairs)
    assert counter.get_total_flops() == 2 * macs.total


@torch.no_grad()
def test_macs_match_torch_flop_counter(model):
    """An independent count: torch's FlopCounterMode on a real forward pass (2 FLOPs per MAC)."""
    image = torch.randn(1, 3, 64, 96)
    boxes = torch.tensor([[0.0, 0.0, 40.0, 30.0], [20.0, 10.0, 90.0, 60.0], [5.0, 5.0, 15.0, 15.0]])
    pairs = torch.tensor([[0, 1], [0, 2]])
    macs = Workload(64, 96, boxes=3, pairs=2).macs(model.config)
    for run, expected in (
        (lambda: model.trunk(image), macs.trunk),
        (lambda: model.pool_regions(model.trunk(image), boxes, pairs), macs.trunk + macs.roi_pool5),
        (lambda: model(image, boxes, pairs), macs.total),
    ):
        with FlopCounterMode(display=False) as counter:
            run()
        assert counter.get_total_flops() == 2 * expected


@pytest.mark.parametrize("kind", ["onnx", "checkpoint"])
def test_bench_tiny_prints_stages_and_writes_json(kind, onnx_boxes, checkpoint, tmp_path):
    model = onnx_boxes if kind == "onnx" else checkpoint
    out = tmp_path / "bench.json"
    result = run_cli(
        "bench", model, "--image-size", "64x96", "--boxes", "3", "--iters", "2", "--warmup", "1", "--json", out
    )
    assert result.returncode == 0, result.stderr
    expected = [s for s in STAGES if kind == "onnx" or s != "runtime_overhead"]
    for stage in expected:
        assert stage in result.stdout
    assert "GFLOP/s" in result.stdout and "peak" in result.stdout
    report = json.loads(out.read_text())
    assert list(report["stages"]) == expected
    assert report["workload"] == {"height": 64, "width": 96, "boxes": 3, "pairs": 3}
    assert report["gmac_per_frame"]["trunk"] == hand_trunk_macs(64, 96) / 1e9
    assert report["peak_gflop_per_s"] > 0 and report["machine"]["cores"] >= 1
    for stage in ("trunk", "roi_pool5", "heads", "model", "end_to_end"):
        s = report["stages"][stage]
        assert s["median_ms"] > 0 and s["gflop_per_s"] > 0 and s["peak_fraction"] > 0


def test_bench_user_errors(onnx_boxes):
    assert_clean_error(run_cli("bench", onnx_boxes, "--boxes", "4", "--pairs", "7"), "4 boxes have 6 unordered pairs")
    assert_clean_error(run_cli("bench", onnx_boxes, "--image-size", "640"), "--image-size must look like 480x640")
