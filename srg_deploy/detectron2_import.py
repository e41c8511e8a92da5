"""Import a detectron2-format Faster R-CNN R101-C4 checkpoint (bottom-up-attention's Visual Genome detector first
of all) into SRGNet's names, safely.

Two naming schemes are read, the two that detectron2's own loader reads from a `.pkl`:
- detectron2 names (`{"model": {...}, "__author__": ...}`): `backbone.stem.*`, `backbone.res2..res4.*`,
  `proposal_generator.rpn_head.*`, `roi_heads.res5.*`, `roi_heads.box_predictor.{cls_score,bbox_pred}.*`; class
  scores put background last there, first here.
- Caffe2-Detectron / Caffe blob names (`{"blobs": {...}}` or a flat dict): `conv1_w`, `res_conv1_bn_s`,
  `res4_22_branch2c_w` or Caffe's `res4b22_branch2c_w`, `conv_rpn_w`, `rpn_cls_logits_w`, `cls_score_w`
  (background first) and `bbox_pred_w` (with a background row block, dropped as detectron2 does).
Affine-only norms (no running statistics) get mean 0, variance 1, as detectron2's FrozenBatchNorm does.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import torch

from srg_deploy.errors import SRGError
from srg_deploy.safe_pickle import load as safe_load

_NORM = {"weight": "weight", "bias": "bias", "running_mean": "running_mean", "running_var": "running_var"}
_C2_NORM = {"s": "weight", "b": "bias", "rm": "running_mean", "riv": "running_var"}
_RPN = {"conv": "rpn_conv", "objectness_logits": "rpn_objectness", "anchor_deltas": "rpn_deltas"}
_C2_RPN = {"conv_rpn": "rpn_conv", "rpn_cls_logits": "rpn_objectness", "rpn_bbox_pred": "rpn_deltas"}
_CONV = {"conv1": "1", "conv2": "2", "conv3": "3", "branch2a": "1", "branch2b": "2", "branch2c": "3"}


def read_detectron2_weights(path: Path) -> tuple[dict[str, np.ndarray], str]:
    """(name -> array, scheme) from a detectron2 or Caffe2 `.pkl`, read with the restricted unpickler."""
    data = safe_load(path)
    if not isinstance(data, dict):
        raise SRGError(f"{path} holds a {type(data).__name__}; expected a dict of weights")
    if "model" in data and isinstance(data["model"], dict):
        weights, scheme = data["model"], "detectron2"
    else:
        weights, scheme = data.get("blobs", data), "caffe2"
    arrays = {}
    for key, value in weights.items():
        if key.endswith("_momentum"):
            continue
        if not isinstance(value, np.ndarray):
            raise SRGError(f"{path}: {key!r} is a {type(value).__name__}, not an array")
        arrays[str(key)] = value
    return arrays, scheme


def _block_target(stage: int, block: int) -> str:
    return f"res5.{block}" if stage == 5 else f"trunk.layer{stage - 1}.{block}"


def _detectron2_name(key: str) -> str | None:
    if m := re.fullmatch(r"backbone\.stem\.conv1\.(weight|norm\.(\w+))", key):
        return "trunk.conv1.weight" if m[1] == "weight" else f"trunk.bn1.{_NORM.get(m[2], '?')}"
    if m := re.fullmatch(r"(?:backbone|roi_heads)\.res([2-5])\.(\d+)\.(conv[123]|shortcut)\.(weight|norm\.(\w+))", key):
        stage, block, conv = int(m[1]), int(m[2]), m[3]
        if (stage == 5) != key.startswith("roi_heads"):
            return None
        base = _block_target(stage, block)
        if conv == "shortcut":
            return f"{base}.downsample.0.weight" if m[4] == "weight" else f"{base}.downsample.1.{_NORM.get(m[5], '?')}"
        return (
            f"{base}.conv{_CONV[conv]}.weight" if m[4] == "weight" else f"{base}.bn{_CONV[conv]}.{_NORM.get(m[5], '?')}"
        )
    if m := re.fullmatch(r"proposal_generator\.rpn_head\.(conv|objectness_logits|anchor_deltas)\.(weight|bias)", key):
        return f"detector.{_RPN[m[1]]}.{m[2]}"
    if m := re.fullmatch(r"roi_heads\.box_predictor\.(cls_score|bbox_pred)\.(weight|bias)", key):
        return f"{'object_head' if m[1] == 'cls_score' else 'detector.box_deltas'}.{m[2]}"
    return None


def _caffe_block(letter: str, digits: str) -> int:
    """Caffe block letters: res4a -> 0, res4b22 -> 22, res2c -> 2."""
    return int(digits) if digits else ord(letter) - ord("a")


def _caffe2_name(key: str) -> str | None:
    key = re.sub(r"^res(\d)([a-z])(\d*)_", lambda m: f"res{m[1]}_{_caffe_block(m[2], m[3])}_", key)
    if key == "conv1_w":
        return "trunk.conv1.weight"
    if m := re.fullmatch(r"res_conv1_bn_(s|b|rm|riv)", key):
        return f"trunk.bn1.{_C2_NORM[m[1]]}"
    if m := re.fullmatch(r"res([2-5])_(\d+)_(branch1|branch2[abc])_(w|bn_(s|b|rm|riv))", key):
        base = _block_target(int(m[1]), int(m[2]))
        if m[3] == "branch1":
            return f"{base}.downsample.0.weight" if m[4] == "w" else f"{base}.downsample.1.{_C2_NORM[m[5]]}"
        k = _CONV[m[3]]
        return f"{base}.conv{k}.weight" if m[4] == "w" else f"{base}.bn{k}.{_C2_NORM[m[5]]}"
    if m := re.fullmatch(r"(conv_rpn|rpn_cls_logits|rpn_bbox_pred)_(w|b)", key):
        return f"detector.{_C2_RPN[m[1]]}.{'weight' if m[2] == 'w' else 'bias'}"
    if m := re.fullmatch(r"(cls_score|bbox_pred)_(w|b)", key):
        return (
            f"{'object_head' if m[1] == 'cls_score' else 'detector.box_deltas'}.{'weight' if m[2] == 'w' else 'bias'}"
        )
    return None


def convert(arrays: dict[str, np.ndarray], scheme: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """SRGNet-named tensors (trunk, res5, detector, object head) and the source keys that map to nothing."""
    rename = _detectron2_name if scheme == "detectron2" else _caffe2_name
    mapped, ignored = {}, []
    for key, value in arrays.items():
        target = rename(key)
        if target is None or "?" in target:
            ignored.append(key)
            continue
        tensor = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        if target.startswith("object_head.") and scheme == "detectron2":
            tensor = torch.cat([tensor[-1:], tensor[:-1]])  # background: last in detectron2, first here
        if target.startswith("detector.box_deltas.") and scheme == "caffe2":
            tensor = tensor[4:]  # Detectron's class-specific regression includes a meaningless background block
        mapped[target] = tensor
    return mapped, sorted(ignored)


def num_classes(mapped: dict[str, torch.Tensor], path: Path) -> tuple[int, int]:
    """(object classes without background, anchors per location), read from the classifier and RPN shapes."""
    for key in ("object_head.weight", "detector.rpn_objectness.weight"):
        if key not in mapped:
            raise SRGError(f"{path} has no weights for {key} (is it a Faster R-CNN C4 checkpoint?)")
    return mapped["object_head.weight"].shape[0] - 1, mapped["detector.rpn_objectness.weight"].shape[0]
