"""SRGNet: the eager PyTorch reference of GCN-LSTM's semantic relationship graph model.

Boxes-mode forward (docs/DESIGN.md §3): `image` [1,3,H,W], `boxes` [N,4], `pairs` [P,2] unordered ->
`features` [N,2048] (pool5), `object_logits` [N,objects+1], `relation_logits` [P,2,predicates+1].
All N boxes and P union boxes go through one RoI pooling and one pool5 pass: each union is computed once and
serves both directions of its pair. No data-dependent op is used, so the same module exports to ONNX/TensorRT.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torchvision
from torch import Tensor, nn

from srg_deploy.config import Architecture, SRGConfig
from srg_deploy.contract import FEATURE_DIM
from srg_deploy.detector import DetectorHeads


def build_resnet_c4(arch: Architecture) -> tuple[nn.Sequential, nn.Sequential]:
    """ResNet-101 split at res4b22: (trunk = conv1..layer3, res5 = layer4), torchvision module names kept."""
    net = torchvision.models.resnet101(
        weights=None, replace_stride_with_dilation=[False, False, arch.res5_dilation == 2]
    )
    if arch.res5_dilation == 2:
        # detectron2 dilates every res5 block; torchvision leaves the first one at dilation 1.
        net.layer4[0].conv2.dilation, net.layer4[0].conv2.padding = (2, 2), (2, 2)
    if arch.stem_pool == "caffe":
        net.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
    if arch.stride_in_1x1:
        for layer in (net.layer2, net.layer3, net.layer4):
            block = layer[0]
            block.conv1.stride, block.conv2.stride = block.conv2.stride, (1, 1)
    trunk = nn.Sequential(
        OrderedDict(
            (name, getattr(net, name)) for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3")
        )
    )
    return trunk, net.layer4


def union_boxes(boxes: Tensor, pairs: Tensor) -> Tensor:
    """The smallest box holding both boxes of each pair: [P,4]."""
    a, b = boxes[pairs[:, 0]], boxes[pairs[:, 1]]
    return torch.cat([torch.minimum(a[:, :2], b[:, :2]), torch.maximum(a[:, 2:], b[:, 2:])], dim=1)


class SRGNet(nn.Module):
    """Trunk, RoI pooling, pool5, object head, relation head; plus the detector heads used in SGDet mode."""

    def __init__(self, config: SRGConfig) -> None:
        super().__init__()
        self.config = config
        arch = config.architecture
        self.trunk, self.res5 = build_resnet_c4(arch)
        self.object_head = nn.Linear(FEATURE_DIM, config.num_object_classes)
        self.subject_embed = nn.Linear(FEATURE_DIM, arch.embed_dim)
        self.object_embed = nn.Linear(FEATURE_DIM, arch.embed_dim)
        self.union_embed = nn.Linear(FEATURE_DIM, arch.embed_dim)
        self.relation_head = nn.Linear(3 * arch.embed_dim, config.num_predicate_classes)
        self.detector = DetectorHeads(config)
        self.eval()

    def pool5(self, feature_map: Tensor, boxes: Tensor) -> Tensor:
        """RoI max pooling (torchvision semantics) of `boxes` [R,4] on the res4b22 map, then res5 and a global mean."""
        arch = self.config.architecture
        rois = torch.cat([torch.zeros_like(boxes[:, :1]), boxes], dim=1)
        size = arch.roi_output_size
        pooled = torchvision.ops.roi_pool(feature_map, rois, (size, size), arch.spatial_scale)
        return self.res5(pooled).mean(dim=(2, 3))

    def relate(self, feature_map: Tensor, boxes: Tensor, pairs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Boxes mode on an already computed res4b22 map (the detector path reuses it)."""
        features, union_features = self.pool_regions(feature_map, boxes, pairs)
        return self.heads(features, union_features, pairs)

    def pool_regions(self, feature_map: Tensor, boxes: Tensor, pairs: Tensor) -> tuple[Tensor, Tensor]:
        """pool5 vectors of the N boxes and of the P pair unions, in one RoI pooling and one res5 pass."""
        n = boxes.shape[0]
        pooled = self.pool5(feature_map, torch.cat([boxes, union_boxes(boxes, pairs)], dim=0))
        return pooled[:n], pooled[n:]

    def heads(self, features: Tensor, union_features: Tensor, pairs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Object and relation heads on the pool5 vectors of the N regions and the P unions. `relate` is
        `pool_regions` then `heads`, split so that `bench` can time each stage of the eager model."""
        subject = torch.relu(self.subject_embed(features))
        obj = torch.relu(self.object_embed(features))
        union = torch.relu(self.union_embed(union_features))
        i, j = pairs[:, 0], pairs[:, 1]
        forward = torch.cat([subject[i], obj[j], union], dim=1)
        backward = torch.cat([subject[j], obj[i], union], dim=1)
        relation_logits = self.relation_head(torch.stack([forward, backward], dim=1))
        return features, self.object_head(features), relation_logits

    def forward(self, image: Tensor, boxes: Tensor, pairs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        return self.relate(self.trunk(image), boxes, pairs)
