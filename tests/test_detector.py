"""SGDet: the detector heads on the shared trunk, on random weights."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from conftest import run_cli

from srg_deploy.checkpoint import random_model, save_checkpoint
from srg_deploy.config import SRGConfig
from srg_deploy.detector import SGDetNet, all_pairs, cell_anchors, grid_anchors, select_pairs


def detector_model(score_threshold: float, max_detections: int = 36, seed: int = 5):
    config = SRGConfig()
    config = dataclasses.replace(
        config,
        detector=dataclasses.replace(config.detector, score_threshold=score_threshold, max_detections=max_detections),
        preprocessing=dataclasses.replace(config.preprocessing, min_size=160, max_size=256),
    )
    return random_model(config, seed)


@pytest.mark.parametrize("size", [(96, 128), (111, 149)])
@torch.no_grad()
def test_detections_invariants(size):
    model = detector_model(score_threshold=0.0, max_detections=12)
    net = SGDetNet(model).eval()
    image = torch.randn(1, 3, *size, generator=torch.Generator().manual_seed(3))
    boxes, scores, labels, features, object_logits, pairs, relation_logits = net(image)
    n = len(boxes)
    assert 0 < n <= 12
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 1] >= 0).all()
    assert (boxes[:, 2] <= size[1]).all() and (boxes[:, 3] <= size[0]).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
    assert torch.all(scores[:-1] >= scores[1:])
    assert ((labels >= 1) & (labels <= 150)).all()
    assert features.shape == (n, 2048) and object_logits.shape == (n, 151)
    assert pairs.tolist() == all_pairs(n, torch.device("cpu")).tolist()
    assert relation_logits.shape == (n * (n - 1) // 2, 2, 51)
    # The relation part is boxes mode on the detected boxes: same features, same relation logits.
    f2, _, r2 = model(image, boxes, pairs)
    torch.testing.assert_close(features, f2)
    torch.testing.assert_close(relation_logits, r2)


@torch.no_grad()
def test_pair_budget_keeps_highest_score_products():
    model = detector_model(score_threshold=0.0, max_detections=8)
    image = torch.randn(1, 3, 96, 128, generator=torch.Generator().manual_seed(4))
    full = SGDetNet(model).eval()(image)
    budget = SGDetNet(model, max_pairs=5).eval()(image)
    scores, pairs = budget[1], budget[5]
    assert pairs.shape == (5, 2) and budget[6].shape == (5, 2, 51)
    products = scores[full[5][:, 0]] * scores[full[5][:, 1]]
    kept = scores[pairs[:, 0]] * scores[pairs[:, 1]]
    torch.testing.assert_close(kept, products.sort(descending=True).values[:5])


class _PairSelection(torch.nn.Module):
    def __init__(self, max_pairs: int | None) -> None:
        super().__init__()
        self.max_pairs = max_pairs

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return select_pairs(scores, self.max_pairs)


@pytest.mark.parametrize(
    "scores",
    [[1.0] * 6, [0.5, 0.5, 1.0, 1.0, 0.25, 0.5], [1.0, 1.0, 1.0, 0.5, 0.5, 0.5], [0.9, 0.3, 0.6, 0.3], [0.7] * 40],
    ids=["all-tied", "mixed-ties", "two-levels", "distinct-products-and-ties", "40-tied"],
)
def test_pair_selection_is_one_rule_in_numpy_eager_and_onnx(scores, tmp_path):
    """Ties keep row-major order everywhere: scene_graph.select_pairs (boxes mode), eager SGDetNet and the exported
    graph (ONNX TopK) must choose the same pairs in the same order, or verify would flag a faithful export."""
    import warnings

    import numpy as np
    import onnxruntime as ort

    from srg_deploy.scene_graph import select_pairs as numpy_select_pairs

    values = np.asarray(scores, np.float32)
    path = tmp_path / "pairs.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _PairSelection(5), (torch.rand(6),), str(path), dynamo=False, opset_version=17,
            input_names=["scores"], output_names=["pairs"], dynamic_axes={"scores": {0: "n"}, "pairs": {0: "p"}},
        )  # fmt: skip
    expected = numpy_select_pairs(values.astype(np.float64), 5).tolist()
    assert select_pairs(torch.from_numpy(values), 5).tolist() == expected
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert session.run(None, {"scores": values})[0].tolist() == expected
    assert select_pairs(torch.from_numpy(values), None).tolist() == numpy_select_pairs(values).tolist()


@torch.no_grad()
def test_no_detections_gives_empty_graph():
    net = SGDetNet(detector_model(score_threshold=1.0)).eval()
    outputs = net(torch.randn(1, 3, 64, 80))
    assert [tuple(t.shape) for t in outputs] == [(0, 4), (0,), (0,), (0, 2048), (0, 151), (0, 2), (0, 2, 51)]


def test_anchors_follow_detectron2():
    cell = cell_anchors((32.0, 64.0), (0.5, 1.0, 2.0))
    assert cell.shape == (6, 4)
    torch.testing.assert_close(cell[1], torch.tensor([-16.0, -16.0, 16.0, 16.0]))  # size 32, ratio 1
    w, h = cell[0, 2] - cell[0, 0], cell[0, 3] - cell[0, 1]  # ratio 0.5: h / w = 0.5, area 32^2
    assert float(h / w) == pytest.approx(0.5) and float(w * h) == pytest.approx(1024.0)
    anchors = grid_anchors(torch.zeros(1, 1, 2, 3), cell, stride=16.0, offset=0.0)
    assert anchors.shape == (2 * 3 * 6, 4)
    torch.testing.assert_close(anchors[6 + 1], torch.tensor([0.0, -16.0, 32.0, 16.0]))  # location (y=0, x=1)


def test_infer_without_boxes_runs_the_detector(tmp_path, write_image):
    for threshold, name in ((0.0, "some"), (1.0, "none")):
        ckpt = tmp_path / name
        save_checkpoint(detector_model(score_threshold=threshold, max_detections=6), ckpt)
        out = tmp_path / f"{name}.jsonl"
        result = run_cli("infer", ckpt, "--source", write_image("f.png", 90, 130), "--json", out)
        assert result.returncode == 0, result.stderr
        record = json.loads(out.read_text())
        assert record["image_size"] == [130, 90]
        if name == "none":
            assert record["objects"] == [] and record["relations"] == [] and record["spatial"] == []
        else:
            assert 0 < len(record["objects"]) <= 6
            for obj in record["objects"]:
                x1, y1, x2, y2 = obj["box"]
                assert 0 <= x1 <= x2 <= 130 and 0 <= y1 <= y2 <= 90  # clipped, in original-frame pixels
            assert len(record["relations"]) == min(20, len(record["objects"]) * (len(record["objects"]) - 1))
