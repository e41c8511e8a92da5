"""Scene-graph semantics shared by every backend (numpy only): pairs, triplet scoring, the spatial graph, records.

A backend returns named tensors; this module alone decides which pairs are asked for, how a triplet is scored,
which of GCN-LSTM's 11 spatial classes a pair of boxes falls in, and what a JSON record looks like (docs/DESIGN.md §3).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from srg_deploy.defaults import TOP_K

SPATIAL_CLASSES = ("none", "inside", "covers", "overlaps", *(f"dir_{k}" for k in range(8)))


@dataclass(frozen=True)
class Objects:
    """Regions of one frame in original-frame pixels; `labels` index the classifier (0 = background)."""

    boxes: np.ndarray  # [N,4] float, x1 y1 x2 y2
    scores: np.ndarray  # [N] float
    labels: np.ndarray  # [N] int


def all_pairs(n: int) -> np.ndarray:
    """All unordered pairs i < j, row-major: [n(n-1)/2, 2] int64."""
    i, j = np.triu_indices(n, k=1)
    return np.stack([i, j], axis=1).astype(np.int64)


def select_pairs(scores: np.ndarray, max_pairs: int | None = None) -> np.ndarray:
    """All i < j pairs, or with `max_pairs` the K pairs with the highest product of the two object scores (highest
    first; ties keep row-major order). Both directions of every kept pair are scored by the relation head."""
    pairs = all_pairs(len(scores))
    if max_pairs is None or len(pairs) <= max_pairs:
        return pairs
    product = scores[pairs[:, 0]] * scores[pairs[:, 1]]
    return pairs[np.argsort(-product, kind="stable")[:max_pairs]]


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def objects_from_logits(boxes: np.ndarray, object_logits: np.ndarray) -> Objects:
    """Given boxes: score 1.0 and the foreground label the object head predicts."""
    labels = object_logits[:, 1:].argmax(axis=1) + 1 if len(boxes) else np.zeros(0, np.int64)
    return Objects(np.asarray(boxes, np.float64), np.ones(len(boxes)), labels.astype(np.int64))


def score_triplets(
    scores: np.ndarray, pairs: np.ndarray, relation_logits: np.ndarray, top_k: int | None = None
) -> np.ndarray:
    """Triplets as rows (subject, object, predicate, score), best first.

    Each ordered pair keeps its most probable predicate (no-relation excluded); its score is subject score x
    object score x that predicate's softmax probability. `relation_logits[:, 0]` is i -> j, `[:, 1]` is j -> i.
    """
    if len(pairs) == 0:
        return np.zeros((0, 4))
    probs = softmax(relation_logits.astype(np.float64), axis=-1)[..., 1:]  # [P,2,R]
    subjects = np.concatenate([pairs[:, 0], pairs[:, 1]])
    objects = np.concatenate([pairs[:, 1], pairs[:, 0]])
    probs = np.concatenate([probs[:, 0], probs[:, 1]])  # [2P,R]
    predicate = probs.argmax(axis=1)
    score = scores[subjects] * scores[objects] * probs[np.arange(len(probs)), predicate]
    order = np.argsort(-score, kind="stable")[:top_k]
    return np.stack([subjects[order], objects[order], predicate[order] + 1, score[order]], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """IoU of every box in `a` [N,4] with every box in `b` [M,4] (x1, y1, x2, y2): [N,M] float64, 0 where the
    union is empty. `plus_one` counts pixels inclusively (width = x2 - x1 + 1), the convention of Visual Genome's
    evaluation code (Scene-Graph-Benchmark's `bbox_overlaps`); the default is continuous geometry."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    one = 1.0 if plus_one else 0.0
    iw = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + one, 0, None)
    ih = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + one, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0] + one, 0, None) * np.clip(a[:, 3] - a[:, 1] + one, 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0] + one, 0, None) * np.clip(b[:, 3] - b[:, 1] + one, 0, None)
    inter = iw * ih
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def spatial_classes(boxes: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """GCN-LSTM's spatial class of every ordered pair: [N,N] int, 0 = none (diagonal too). docs/DESIGN.md §3:
    1 inside, 2 covers, 3 IoU >= 0.5, 4..11 direction of centre j seen from centre i (y up) in 45° sectors, if the
    centres are at most half the image diagonal apart; the first rule that holds wins."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = len(b)
    bi, bj = b[:, None, :], b[None, :, :]
    inside = (
        (bi[..., 0] >= bj[..., 0])
        & (bi[..., 1] >= bj[..., 1])
        & (bi[..., 2] <= bj[..., 2])
        & (bi[..., 3] <= bj[..., 3])
    )
    covers = inside.T
    iou = box_iou(b, b)
    centre = np.stack([(b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2], axis=1)
    dx = centre[None, :, 0] - centre[:, None, 0]
    dy = -(centre[None, :, 1] - centre[:, None, 1])
    theta = np.degrees(np.arctan2(dy, dx)) % 360.0
    near = np.hypot(dx, dy) <= 0.5 * math.hypot(*image_size)
    direction = 4 + np.minimum(np.floor(theta / 45.0).astype(np.int64), 7)
    classes = np.select([inside, covers, iou >= 0.5, near], [1, 2, 3, direction], default=0)
    classes[np.arange(n), np.arange(n)] = 0
    return classes


def build_record(
    *,
    frame: int,
    source: str,
    timestamp_ms: float,
    image_size: tuple[int, int],
    objects: Objects,
    pairs: np.ndarray,
    relation_logits: np.ndarray,
    object_names: list[str] | tuple[str, ...],
    predicate_names: list[str] | tuple[str, ...],
    top_k: int | None = TOP_K,
    latency_ms: dict[str, float] | None = None,
) -> dict[str, Any]:
    """One frame's scene graph as the JSON record of docs/DESIGN.md §3. `image_size` is (W, H) of the original frame."""
    triplets = score_triplets(objects.scores, pairs, relation_logits, top_k)
    spatial = spatial_classes(objects.boxes, image_size)
    subj, obj = np.nonzero(spatial)
    return {
        "frame": int(frame),
        "source": str(source),
        "timestamp_ms": round(float(timestamp_ms), 3),
        "image_size": [int(image_size[0]), int(image_size[1])],
        "objects": [
            {
                "id": i,
                "box": [round(float(v), 2) for v in box],
                "label": _name(object_names, int(label)),
                "score": round(float(s), 4),
            }
            for i, (box, s, label) in enumerate(zip(objects.boxes, objects.scores, objects.labels))
        ],
        "relations": [
            {
                "subject": int(s),
                "object": int(o),
                "predicate": _name(predicate_names, int(p)),
                "score": round(float(sc), 6),
            }
            for s, o, p, sc in triplets
        ],
        "spatial": [
            {
                "subject": int(i),
                "object": int(j),
                "relation": SPATIAL_CLASSES[spatial[i, j]],
                "class": int(spatial[i, j]),
            }
            for i, j in zip(subj, obj)
        ],
        "latency_ms": {k: round(float(v), 3) for k, v in (latency_ms or {}).items()},
    }


def _name(names: list[str] | tuple[str, ...], index: int) -> str:
    """Classifier index -> name; index 0 is background / no relation."""
    return names[index - 1] if 1 <= index <= len(names) else "__background__"
