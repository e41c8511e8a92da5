"""Faster R-CNN C4 detector heads on SRGNet's shared trunk (SGDet: image in, scene graph out).

The RPN runs on res4b22; its proposals are pooled and sent through the same pool5 and object head as the
relation path; class-specific box regression and per-class NMS give at most `max_detections` objects, whose
pool5 features and pairs then feed the relation head in the same forward. Anchors and box coding follow
detectron2's conventions (unrounded cell anchors, (dx, dy, dw, dh) deltas) so imported detectron2 weights behave as
they did there; decoding, clipping and NMS are torchvision's building blocks, which also export to ONNX.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
import torchvision
from torch import Tensor, nn
from torchvision.models.detection._utils import BoxCoder, _topk_min

from srg_deploy.config import SRGConfig

if TYPE_CHECKING:
    from srg_deploy.model import SRGNet

TRUNK_CHANNELS = 1024


class DetectorHeads(nn.Module):
    """The detector's own weights: RPN (3x3 conv, objectness, anchor deltas) and class-specific box regression."""

    def __init__(self, config: SRGConfig) -> None:
        super().__init__()
        a = config.detector.num_anchors
        self.rpn_conv = nn.Conv2d(TRUNK_CHANNELS, TRUNK_CHANNELS, kernel_size=3, padding=1)
        self.rpn_objectness = nn.Conv2d(TRUNK_CHANNELS, a, kernel_size=1)
        self.rpn_deltas = nn.Conv2d(TRUNK_CHANNELS, 4 * a, kernel_size=1)
        self.box_deltas = nn.Linear(2048, 4 * len(config.objects))
        for layer, std in (
            (self.rpn_conv, 0.01),
            (self.rpn_objectness, 0.01),
            (self.rpn_deltas, 0.01),
            (self.box_deltas, 0.001),
        ):
            nn.init.normal_(layer.weight, std=std)
            nn.init.zeros_(layer.bias)


def cell_anchors(sizes: tuple[float, ...], ratios: tuple[float, ...]) -> Tensor:
    """detectron2's DefaultAnchorGenerator cell anchors: sizes outer, ratios inner, centred on 0, not rounded."""
    anchors = []
    for size in sizes:
        for ratio in ratios:
            w = math.sqrt(size * size / ratio)
            h = ratio * w
            anchors.append([-w / 2.0, -h / 2.0, w / 2.0, h / 2.0])
    return torch.tensor(anchors, dtype=torch.float32)


def grid_anchors(feature_map: Tensor, cell: Tensor, stride: float, offset: float) -> Tensor:
    """All anchors of the map, location-major then anchor (the order of the RPN outputs after permute): [H*W*A, 4]."""
    h, w = feature_map.shape[-2:]
    xs = (torch.arange(w, dtype=torch.float32, device=feature_map.device) + offset) * stride
    ys = (torch.arange(h, dtype=torch.float32, device=feature_map.device) + offset) * stride
    shift_y, shift_x = torch.meshgrid(ys, xs, indexing="ij")
    shift_x, shift_y = shift_x.reshape(-1), shift_y.reshape(-1)
    shifts = torch.stack([shift_x, shift_y, shift_x, shift_y], dim=1)
    return (shifts[:, None, :] + cell.to(feature_map.device)[None, :, :]).reshape(-1, 4)


def clip_to_image(boxes: Tensor, image_hw: Tensor) -> Tensor:
    """Clip x to [0, W] and y to [0, H]; `image_hw` is a tensor so the bound stays dynamic in an exported graph."""
    h, w = image_hw[0].to(boxes.dtype), image_hw[1].to(boxes.dtype)
    x = torch.minimum(boxes[..., 0::2].clamp(min=0), w)
    y = torch.minimum(boxes[..., 1::2].clamp(min=0), h)
    return torch.stack([x, y], dim=-1).reshape(boxes.shape)


def all_pairs(n_boxes: Tensor | int, device: torch.device) -> Tensor:
    """All i < j pairs, row-major (i, then j): the same order as `scene_graph.all_pairs`."""
    idx = torch.arange(n_boxes, device=device)
    return torch.nonzero(idx[:, None] < idx[None, :])


def select_pairs(scores: Tensor, max_pairs: int | None) -> Tensor:
    """The graph form of `scene_graph.select_pairs`, the one definition: all i < j pairs, or the `max_pairs` with
    the highest score product, highest first, ties in row-major order. ONNX's TopK returns equal values lowest index
    first, which is that order; eager `topk` promises no order for ties, so eager PyTorch sorts stably instead
    (a stable sort does not export, hence the two spellings of one rule; tests/test_detector.py checks all three)."""
    pairs = all_pairs(scores.shape[0], scores.device)
    if max_pairs is None:
        return pairs
    product = scores[pairs[:, 0]] * scores[pairs[:, 1]]
    if torch.onnx.is_in_onnx_export():
        return pairs[product.topk(_topk_min(product, max_pairs, 0)).indices]
    return pairs[torch.sort(product, descending=True, stable=True).indices[:max_pairs]]


class SGDetNet(nn.Module):
    """Image in, scene-graph tensors out (`contract.OUTPUTS["sgdet"]`); boxes are in `image` pixels, labels index `objects`
    with 0 = background, pairs are unordered (i < j) and, with `max_pairs`, the pairs with the highest product of
    the two object scores, highest first."""

    def __init__(self, model: SRGNet, max_pairs: int | None = None) -> None:
        super().__init__()
        self.model = model
        self.max_pairs = max_pairs
        det = model.config.detector
        self.det = det
        self.register_buffer("cell_anchors", cell_anchors(det.anchor_sizes, det.anchor_ratios), persistent=False)
        self.rpn_coder = BoxCoder(det.rpn_box_weights)
        self.box_coder = BoxCoder(det.box_weights)

    def proposals(self, feature_map: Tensor, image_hw: Tensor) -> Tensor:
        heads, det = self.model.detector, self.det
        x = torch.relu(heads.rpn_conv(feature_map))
        objectness = heads.rpn_objectness(x).permute(0, 2, 3, 1).reshape(-1)
        h, w = x.shape[-2:]
        deltas = heads.rpn_deltas(x).reshape(1, -1, 4, h, w).permute(0, 3, 4, 1, 2).reshape(-1, 4)
        stride = 1.0 / self.model.config.architecture.spatial_scale
        anchors = grid_anchors(feature_map, self.cell_anchors, stride, det.anchor_offset)
        top = objectness.topk(_topk_min(objectness, det.pre_nms_top_n, 0)).indices
        boxes = clip_to_image(self.rpn_coder.decode_single(deltas[top], anchors[top]), image_hw)
        scores = objectness[top]
        nonempty = torch.where((boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))[0]
        boxes, scores = boxes[nonempty], scores[nonempty]
        keep = torchvision.ops.nms(boxes, scores, det.rpn_nms_threshold)[: det.post_nms_top_n]
        return boxes[keep]

    def detect(self, feature_map: Tensor, image_hw: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Per-class NMS over the box head's class-specific boxes: (boxes [D,4], scores [D], labels [D])."""
        model, det = self.model, self.det
        proposals = self.proposals(feature_map, image_hw)
        pooled = model.pool5(feature_map, proposals)
        probs = torch.softmax(model.object_head(pooled), dim=1)[:, 1:]
        k = probs.shape[1]
        deltas = model.detector.box_deltas(pooled)
        boxes = clip_to_image(self.box_coder.decode_single(deltas, proposals).reshape(-1, k, 4), image_hw)
        labels = torch.arange(1, k + 1, device=probs.device).expand_as(probs)
        boxes, scores, labels = boxes.reshape(-1, 4), probs.reshape(-1), labels.reshape(-1)
        keep = torch.where((scores > det.score_threshold) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1]))[
            0
        ]
        boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
        keep = torchvision.ops.batched_nms(boxes, scores, labels, det.nms_threshold)[: det.max_detections]
        return boxes[keep], scores[keep], labels[keep]

    def forward(self, image: Tensor) -> tuple[Tensor, ...]:
        feature_map = self.model.trunk(image)
        image_hw = torch._shape_as_tensor(image)[2:]
        boxes, scores, labels = self.detect(feature_map, image_hw)
        pairs = select_pairs(scores, self.max_pairs)
        features, object_logits, relation_logits = self.model.relate(feature_map, boxes, pairs)
        return boxes, scores, labels, features, object_logits, pairs, relation_logits
