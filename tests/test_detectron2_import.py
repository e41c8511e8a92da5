"""Importing detectron2 R101-C4 checkpoints (bottom-up-attention style) and refusing pickles that run code."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from conftest import assert_clean_error, run_cli

from srg_deploy.checkpoint import load_model
from srg_deploy.commands.init import init_checkpoint
from srg_deploy.errors import SRGError

STAGES = {"res2": (3, 64, 256, 1), "res3": (4, 128, 512, 2), "res4": (23, 256, 1024, 2), "res5": (3, 512, 2048, 2)}
NUM_CLASSES = 20


def _norm(rng, prefix: str, channels: int) -> dict[str, np.ndarray]:
    return {
        f"{prefix}.norm.weight": rng.uniform(0.5, 1.0, channels).astype(np.float32),
        f"{prefix}.norm.bias": rng.normal(0, 0.1, channels).astype(np.float32),
        f"{prefix}.norm.running_mean": rng.normal(0, 0.1, channels).astype(np.float32),
        f"{prefix}.norm.running_var": rng.uniform(0.5, 1.5, channels).astype(np.float32),
    }


def _conv(rng, shape) -> np.ndarray:
    fan_in = shape[1] * shape[2] * shape[3]
    return (rng.standard_normal(shape) * np.sqrt(1.0 / fan_in)).astype(np.float32)


def detectron2_weights(seed: int = 0) -> dict[str, np.ndarray]:
    """Random arrays under detectron2's real R101-C4 names and shapes (res5 in roi_heads, background last)."""
    rng = np.random.default_rng(seed)
    w = {"backbone.stem.conv1.weight": _conv(rng, (64, 3, 7, 7)), **_norm(rng, "backbone.stem.conv1", 64)}
    in_ch = 64
    for stage, (blocks, mid, out, _) in STAGES.items():
        root = "roi_heads" if stage == "res5" else "backbone"
        for b in range(blocks):
            p = f"{root}.{stage}.{b}"
            if b == 0:
                w[f"{p}.shortcut.weight"] = _conv(rng, (out, in_ch, 1, 1))
                w |= _norm(rng, f"{p}.shortcut", out)
            w[f"{p}.conv1.weight"] = _conv(rng, (mid, in_ch if b == 0 else out, 1, 1))
            w[f"{p}.conv2.weight"] = _conv(rng, (mid, mid, 3, 3))
            w[f"{p}.conv3.weight"] = _conv(rng, (out, mid, 1, 1))
            for k, ch in (("conv1", mid), ("conv2", mid), ("conv3", out)):
                w |= _norm(rng, f"{p}.{k}", ch)
        in_ch = out
    rpn = "proposal_generator.rpn_head"
    w[f"{rpn}.conv.weight"], w[f"{rpn}.conv.bias"] = _conv(rng, (1024, 1024, 3, 3)), np.zeros(1024, np.float32)
    w[f"{rpn}.objectness_logits.weight"] = _conv(rng, (15, 1024, 1, 1))
    w[f"{rpn}.objectness_logits.bias"] = np.zeros(15, np.float32)
    w[f"{rpn}.anchor_deltas.weight"] = _conv(rng, (60, 1024, 1, 1))
    w[f"{rpn}.anchor_deltas.bias"] = np.zeros(60, np.float32)
    box = "roi_heads.box_predictor"
    w[f"{box}.cls_score.weight"] = rng.normal(0, 0.01, (NUM_CLASSES + 1, 2048)).astype(np.float32)
    w[f"{box}.cls_score.bias"] = rng.normal(0, 0.01, NUM_CLASSES + 1).astype(np.float32)
    w[f"{box}.bbox_pred.weight"] = rng.normal(0, 0.001, (NUM_CLASSES * 4, 2048)).astype(np.float32)
    w[f"{box}.bbox_pred.bias"] = np.zeros(NUM_CLASSES * 4, np.float32)
    w["roi_heads.attribute_predictor.cls_embedding.weight"] = rng.normal(0, 0.01, (NUM_CLASSES + 1, 256)).astype(
        np.float32
    )
    return w


def reference_pool5(w: dict[str, np.ndarray], image: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """detectron2's R101-C4 as bottom-up-attention runs it, straight from the arrays: stride in the 1x1 conv,
    Caffe max pool (k3 s2 p0, ceil), FrozenBN (eps 1e-5), res5 dilation 2 and stride 1, 14x14 RoI max pooling."""
    t = {k: torch.from_numpy(v) for k, v in w.items()}

    def bn(x, p):
        scale = t[f"{p}.norm.weight"] / torch.sqrt(t[f"{p}.norm.running_var"] + 1e-5)
        shift = t[f"{p}.norm.bias"] - t[f"{p}.norm.running_mean"] * scale
        return x * scale[None, :, None, None] + shift[None, :, None, None]

    def stage(x, root, name, blocks, first_stride, dilation):
        for b in range(blocks):
            p = f"{root}.{name}.{b}"
            s = first_stride if b == 0 else 1
            short = bn(F.conv2d(x, t[f"{p}.shortcut.weight"], stride=s), f"{p}.shortcut") if b == 0 else x
            y = F.relu(bn(F.conv2d(x, t[f"{p}.conv1.weight"], stride=s), f"{p}.conv1"))
            y = F.relu(bn(F.conv2d(y, t[f"{p}.conv2.weight"], padding=dilation, dilation=dilation), f"{p}.conv2"))
            x = F.relu(bn(F.conv2d(y, t[f"{p}.conv3.weight"]), f"{p}.conv3") + short)
        return x

    x = F.relu(bn(F.conv2d(image, t["backbone.stem.conv1.weight"], stride=2, padding=3), "backbone.stem.conv1"))
    x = F.max_pool2d(x, kernel_size=3, stride=2, padding=0, ceil_mode=True)
    for name in ("res2", "res3", "res4"):
        x = stage(x, "backbone", name, STAGES[name][0], STAGES[name][3], 1)
    rois = torch.cat([torch.zeros(len(boxes), 1), boxes], dim=1)
    pooled = torchvision.ops.roi_pool(x, rois, (14, 14), 1 / 16)
    return stage(pooled, "roi_heads", "res5", 3, 1, 2).mean(dim=(2, 3))


@pytest.fixture(scope="module")
def d2_pickle(tmp_path_factory):
    weights = detectron2_weights()
    path = tmp_path_factory.mktemp("d2") / "model_final.pkl"
    with open(path, "wb") as f:
        pickle.dump({"model": weights, "__author__": "test", "matching_heuristics": True}, f)
    return path, weights


@torch.no_grad()
def test_import_matches_direct_computation(d2_pickle, tmp_path):
    path, weights = d2_pickle
    (tmp_path / "objects.txt").write_text("\n".join(f"thing{k}" for k in range(NUM_CLASSES)))
    message = init_checkpoint(tmp_path / "ck", detectron2=path, objects=tmp_path / "objects.txt", seed=2)
    assert "roi_heads.attribute_predictor.cls_embedding.weight" in message  # ignored keys are named
    model = load_model(tmp_path / "ck")
    cfg = model.config
    assert cfg.architecture.roi_output_size == 14 and cfg.architecture.res5_dilation == 2
    assert cfg.preprocessing.channel_order == "BGR" and cfg.objects[0] == "thing0"
    image = torch.randn(1, 3, 80, 112, generator=torch.Generator().manual_seed(0))
    boxes = torch.tensor([[4.0, 6.0, 60.0, 70.0], [30.0, 10.0, 111.0, 79.0], [-10.0, -5.0, 20.0, 15.0]])
    features, object_logits, _ = model(image, boxes, torch.zeros((0, 2), dtype=torch.int64))
    expected = reference_pool5(weights, image, boxes)
    assert float((features - expected).abs().max() / expected.abs().max()) <= 1e-5
    # class scores: detectron2 puts background last, we put it first
    cls_w, cls_b = (torch.from_numpy(weights[f"roi_heads.box_predictor.cls_score.{k}"]) for k in ("weight", "bias"))
    logits = expected @ cls_w.T + cls_b
    torch.testing.assert_close(object_logits[:, 0], logits[:, -1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(object_logits[:, 1:], logits[:, :-1], rtol=1e-4, atol=1e-4)


def test_caffe2_names_map_like_detectron2(tmp_path):
    """Caffe2 Detectron / Caffe blob names (res4b22_branch2c_w, bg-first classifier with a bg box block)."""
    from srg_deploy.detectron2_import import convert

    blobs = {
        "conv1_w": np.zeros((64, 3, 7, 7), np.float32),
        "res_conv1_bn_s": np.ones(64, np.float32),
        "res4b22_branch2c_w": np.zeros((1024, 256, 1, 1), np.float32),
        "res4a_branch1_bn_b": np.zeros(1024, np.float32),
        "res5_2_branch2a_w": np.zeros((512, 2048, 1, 1), np.float32),
        "conv_rpn_w": np.zeros((1024, 1024, 3, 3), np.float32),
        "cls_score_w": np.arange(3 * 2, dtype=np.float32).reshape(3, 2),
        "bbox_pred_w": np.arange(12 * 2, dtype=np.float32).reshape(12, 2),
        "mystery_w": np.zeros(1, np.float32),
    }
    mapped, ignored = convert(blobs, "caffe2")
    assert set(mapped) == {
        "trunk.conv1.weight", "trunk.bn1.weight", "trunk.layer3.22.conv3.weight", "trunk.layer3.0.downsample.1.bias",
        "res5.2.conv1.weight", "detector.rpn_conv.weight", "object_head.weight", "detector.box_deltas.weight",
    }  # fmt: skip
    assert ignored == ["mystery_w"]
    assert mapped["object_head.weight"][0].tolist() == [0.0, 1.0]  # background stays first
    assert mapped["detector.box_deltas.weight"].shape == (8, 2)  # background box block dropped


def test_missing_and_misshapen_keys_are_named(d2_pickle, tmp_path):
    _, weights = d2_pickle
    broken = dict(weights)
    del broken["backbone.res3.2.conv2.norm.weight"]
    path = tmp_path / "broken.pkl"
    path.write_bytes(pickle.dumps({"model": broken, "__author__": "x"}))
    with pytest.raises(SRGError, match=r"lacks weights for trunk.layer2.2.bn2.weight"):
        init_checkpoint(tmp_path / "ck", detectron2=path)
    broken = dict(weights)
    broken["backbone.res2.0.conv2.weight"] = np.zeros((64, 64, 1, 1), np.float32)
    path.write_bytes(pickle.dumps({"model": broken, "__author__": "x"}))
    with pytest.raises(SRGError, match=r"trunk.layer1.0.conv2.weight has shape \(64, 64, 1, 1\)"):
        init_checkpoint(tmp_path / "ck", detectron2=path)
    assert not (tmp_path / "ck").exists()


class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def test_pickle_that_calls_os_system_is_refused(tmp_path):
    marker = tmp_path / "PWNED"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps({"model": {"backbone.stem.conv1.weight": _RunsCode(marker)}}))
    result = run_cli("init", tmp_path / "ck", "--from-detectron2", path)
    assert_clean_error(result, "refused to load", "posix.system")
    assert not marker.exists() and not (tmp_path / "ck").exists()
