"""SRGNet against independent compositions of torchvision's own modules."""

from __future__ import annotations

import pytest
import torch
import torchvision
from torchvision.ops import roi_pool

from srg_deploy.model import union_boxes

ADVERSARIAL = [
    [10.0, 12.0, 90.0, 70.0],  # ordinary
    [-40.0, -30.0, 20.0, 25.0],  # partly outside
    [300.0, 300.0, 400.0, 380.0],  # entirely outside
    [50.0, 50.0, 50.0, 50.0],  # zero size
    [80.0, 60.0, 30.0, 20.0],  # inverted
    [0.0, 0.0, 159.0, 119.0],  # full image
    [7.5, 8.5, 23.5, 40.5],  # exact .5 coordinates
]


def torchvision_reference(model, image, boxes):
    """ResNet-101 from torchvision with the model's weights, composed by hand: conv1..layer3, roi_pool, layer4, mean."""
    net = torchvision.models.resnet101(weights=None).eval()
    state = {k.removeprefix("trunk."): v for k, v in model.state_dict().items() if k.startswith("trunk.")}
    state |= {f"layer4.{k.removeprefix('res5.')}": v for k, v in model.state_dict().items() if k.startswith("res5.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert set(missing) == {"fc.weight", "fc.bias"} and not unexpected
    x = net.layer3(net.layer2(net.layer1(net.maxpool(net.relu(net.bn1(net.conv1(image)))))))
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], dim=1)
    return net.layer4(roi_pool(x, rois, (7, 7), 1 / 16)).mean(dim=(2, 3))


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


@pytest.mark.parametrize("size", [(120, 160), (97, 131)])
@torch.no_grad()
def test_features_equal_torchvision_composition(model, size):
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(1))
    boxes = torch.tensor(ADVERSARIAL)
    pairs = torch.tensor([[0, 1], [2, 5], [3, 4]])
    features, object_logits, _ = model(image, boxes, pairs)
    expected = torchvision_reference(model, image, boxes)
    assert features.shape == (len(ADVERSARIAL), 2048)
    assert relative_error(features, expected) <= 1e-5
    torch.testing.assert_close(object_logits, model.object_head(expected), rtol=1e-4, atol=1e-4)


@torch.no_grad()
def test_relation_logits_equal_naive_per_ordered_pair(model):
    """Naive: pool each ordered pair's union on its own, embed subject/object/union, classify."""
    image = torch.randn(1, 3, 120, 160, generator=torch.Generator().manual_seed(2))
    boxes = torch.tensor(ADVERSARIAL[:5])
    pairs = torch.tensor([[0, 1], [0, 4], [1, 2], [3, 4], [2, 4]])
    features, _, relation_logits = model(image, boxes, pairs)
    fmap = model.trunk(image)
    for p, (i, j) in enumerate(pairs.tolist()):
        for direction, (s, o) in enumerate([(i, j), (j, i)]):
            union = union_boxes(boxes, torch.tensor([[s, o]]))
            u = model.pool5(fmap, union)
            x = torch.cat(
                [
                    torch.relu(model.subject_embed(features[s : s + 1])),
                    torch.relu(model.object_embed(features[o : o + 1])),
                    torch.relu(model.union_embed(u)),
                ],
                dim=1,
            )
            torch.testing.assert_close(relation_logits[p, direction], model.relation_head(x)[0], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("n_boxes, n_pairs", [(0, 0), (1, 0), (2, 1)])
@torch.no_grad()
def test_small_counts(model, n_boxes, n_pairs):
    image = torch.randn(1, 3, 64, 80)
    boxes = torch.tensor(ADVERSARIAL[:n_boxes]).reshape(-1, 4)
    pairs = torch.tensor([[0, 1]][:n_pairs], dtype=torch.int64).reshape(-1, 2)
    features, object_logits, relation_logits = model(image, boxes, pairs)
    assert features.shape == (n_boxes, 2048)
    assert object_logits.shape == (n_boxes, 151)
    assert relation_logits.shape == (n_pairs, 2, 51)


def test_union_boxes():
    boxes = torch.tensor([[0.0, 5.0, 10.0, 20.0], [4.0, 1.0, 30.0, 12.0]])
    assert union_boxes(boxes, torch.tensor([[0, 1]])).tolist() == [[0.0, 1.0, 30.0, 20.0]]
    assert union_boxes(boxes, torch.tensor([[1, 0]])).tolist() == [[0.0, 1.0, 30.0, 20.0]]
