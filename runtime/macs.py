"""Multiply-accumulates of SRGNet per frame, from its configuration and the workload's sizes (no torch).

Counts every convolution and linear layer, as `bench` reports them; batch norm, ReLU, pooling and additions are
not counted. The arithmetic follows torchvision's ResNet-101 (and the config's Caffe/detectron2 variants:
stride in the 1x1 conv, ceil-mode stem pooling, res5 at stride 1 with dilation 2); tests/test_bench.py checks it
against a hand count and against torch's FlopCounterMode on real forward passes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from srg_deploy.config import Architecture, SRGConfig
from srg_deploy.contract import FEATURE_DIM

# (blocks, width, stride) of layer1..layer3 (the trunk, up to res4b22) and layer4 (res5).
TRUNK_STAGES = ((3, 64, 1), (4, 128, 2), (23, 256, 2))
RES5_STAGE = (3, 512, 2)
TRUNK_CHANNELS = 1024


@dataclass(frozen=True)
class MacCount:
    """Multiply-accumulates per frame by stage."""

    trunk: int
    roi_pool5: int
    heads: int
    per_roi: int  # res5 on one pooled RoI

    @property
    def total(self) -> int:
        return self.trunk + self.roi_pool5 + self.heads


def _out(size: int, stride: int) -> int:
    """Output size of a convolution whose padding keeps `same` geometry (3x3 pad 1 or dilation d pad d, 1x1 pad 0,
    7x7 pad 3): floor((size - 1) / stride) + 1."""
    return (size - 1) // stride + 1


def _stage(h: int, w: int, cin: int, blocks: int, width: int, stride: int, stride_in_1x1: bool) -> tuple[int, ...]:
    """(h, w, channels out, MACs) of one ResNet stage of bottlenecks with a projection shortcut on block 0."""
    total = 0
    for b in range(blocks):
        s = stride if b == 0 else 1
        h2, w2 = _out(h, s), _out(w, s)
        h1, w1 = (h2, w2) if stride_in_1x1 else (h, w)  # where conv1's output lives
        total += h1 * w1 * width * cin  # conv1 1x1
        total += h2 * w2 * width * width * 9  # conv2 3x3
        total += h2 * w2 * 4 * width * width  # conv3 1x1
        if b == 0:
            total += h2 * w2 * 4 * width * cin  # downsample 1x1
        h, w, cin = h2, w2, 4 * width
    return h, w, cin, total


def trunk_macs(arch: Architecture, height: int, width: int) -> int:
    """conv1 (7x7/2) -> max pool (3x3/2; torchvision pads 1, Caffe pads 0 and rounds up) -> layer1..layer3."""
    h, w = _out(height, 2), _out(width, 2)
    total = h * w * 64 * 3 * 49
    if arch.stem_pool == "caffe":
        h, w = math.ceil((h - 3) / 2) + 1, math.ceil((w - 3) / 2) + 1
    else:
        h, w = _out(h, 2), _out(w, 2)
    cin = 64
    for blocks, width_, stride in TRUNK_STAGES:
        h, w, cin, macs = _stage(h, w, cin, blocks, width_, stride, arch.stride_in_1x1)
        total += macs
    return total


def res5_macs(arch: Architecture) -> int:
    """layer4 on one pooled RoI (roi_output_size square, 1024 channels); dilation 2 keeps stride 1."""
    size = arch.roi_output_size
    blocks, width, stride = RES5_STAGE
    return _stage(
        size, size, TRUNK_CHANNELS, blocks, width, 1 if arch.res5_dilation == 2 else stride, arch.stride_in_1x1
    )[3]


def head_macs(config: SRGConfig, boxes: int, pairs: int) -> int:
    """Object head and subject/object embeddings on N regions, union embedding on P unions, relation classifier on
    both directions of each pair."""
    embed = config.architecture.embed_dim
    per_box = FEATURE_DIM * (config.num_object_classes + 2 * embed)
    return boxes * per_box + pairs * FEATURE_DIM * embed + 2 * pairs * 3 * embed * config.num_predicate_classes


def count_macs(config: SRGConfig, height: int, width: int, boxes: int, pairs: int) -> MacCount:
    """MACs of one boxes-mode frame of `height` x `width` model pixels with `boxes` regions and `pairs` unions."""
    per_roi = res5_macs(config.architecture)
    return MacCount(
        trunk=trunk_macs(config.architecture, height, width),
        roi_pool5=per_roi * (boxes + pairs),
        heads=head_macs(config, boxes, pairs),
        per_roi=per_roi,
    )
