"""The field's scene-graph metrics, computed as Scene-Graph-Benchmark computes them, so our R@K compare with theirs.

Source: KaihuaTang/Scene-Graph-Benchmark.pytorch `maskrcnn_benchmark/data/datasets/evaluation/vg/sgg_eval.py`
(`SGRecall`, `SGNoGraphConstraintRecall`, `SGMeanRecall`, `SGNGMeanRecall`, `_triplet`, `_compute_pred_matches`),
`vg_eval.py` (`evaluate_relation_of_one_image`), `utils/miscellaneous.py` (`intersect_2d`, `argsort_desc`,
`bbox_overlaps` = `boxlist_iou`) and `modeling/roi_heads/relation_head/inference.py` (`PostProcessor.forward`).

- Graph-constrained R@K (SGRecall): each ordered pair keeps its most probable predicate (no-relation excluded),
  triplets ranked by subject score x object score x that probability, the top K kept. Here the ranking is
  `srg_deploy.scene_graph.score_triplets`, the one the deployed model's JSON uses.
- No graph constraint (SGNoGraphConstraintRecall): every (ordered pair, predicate) is a candidate, scored
  subject score x object score x p(predicate); the top K kept.
- A ground-truth triplet is recalled when some kept prediction has its subject label, predicate and object label and
  both boxes have IoU >= threshold with the ground truth's (`_compute_pred_matches`: `>=`; `boxlist_iou` counts
  pixels inclusively, width = x2 - x1 + 1). Recalled once however many predictions match; recall per image =
  recalled / ground-truth triplets (duplicates included); R@K = the mean over images that have relations.
- mR@K (SGMeanRecall): per image, for each predicate in its ground truth, recalled / present; per predicate the
  mean over the images that contain it; mR@K = the mean over all predicates, one never seen counting 0.
- Images without ground-truth relations are skipped. An image with relations but no predicted pair counts 0: SGB's
  pipeline never hands the evaluator an empty prediction (`RelationSampling.prepare_test_pairs` puts a [0, 0]
  placeholder pair in), so that image gets recall 0 there too.

Not matched: SGB breaks exact score ties by torch.sort / numpy quicksort order over its own pair order (row-major
ordered pairs), which is unspecified; here ties keep `score_triplets`' stable order (the given pairs i -> j, then
j -> i) and, without the graph constraint, that pair order then predicate index. SGB computes IoU in float32 (BoxList);
here float64. SGB's ngR keeps the top 100 candidates whatever K; here the top max(ks), the same for the default ks.
Two differences found by running SGB's own code against this module (DESIGN.md §8), kept on purpose:
- One-box images. SGB scores its [0, 0] placeholder pair, so a ground-truth self-relation (subject = object) on an
  image with one box can be recalled there (always in ngR@K when its predicate ranks within K); here no pair exists
  and that image recalls 0. Effect: R@K / ngR@K lower here by (such images recalled by SGB) / (images with
  relations); images with two or more boxes score no self-pair in either, so their self-relations count 0 in both.
  The deployed graph never scores a box with itself, and the evaluator measures the deployed graph.
- float32 vs float64. SGB's predicate softmax is float32: candidates below ~1e-38 underflow to exactly 0 and tie,
  and SGB keeps them in whatever order its sort leaves. Here (float64) they stay ranked by probability. Effect: only
  when K reaches past every candidate above float32's range (ngR@K on images with few pairs and a very confident
  model); SGB's recall there depends on that arbitrary order, ours does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from srg_deploy.datasets.vg_sgg import SGGImage
from srg_deploy.errors import SRGError
from srg_deploy.scene_graph import box_iou, score_triplets, softmax


@dataclass(frozen=True)
class Prediction:
    """One image's prediction, in original image pixels, as every srg-deploy backend returns it."""

    boxes: np.ndarray  # [N,4] x1, y1, x2, y2
    labels: np.ndarray  # [N] int64 1-based
    scores: np.ndarray  # [N] object scores: 1.0 in PredCls, `object_scores` in SGCls
    pairs: np.ndarray  # [P,2] int64 unordered pairs (i, j), each listed once
    relation_logits: np.ndarray  # [P,2,num_predicates+1]: [:,0] is i -> j, [:,1] is j -> i; class 0 = no relation


def object_scores(object_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(labels, scores) of given boxes (SGCls) from object logits [N, C+1], as inference.py's PostProcessor.forward
    with use_gt_box: softmax over all classes, background set to 0, the max over the foreground. The score is that
    class's probability in the full softmax (background still in the denominator), not renormalised."""
    probs = softmax(np.asarray(object_logits, np.float64).reshape(len(object_logits), -1), axis=1)[:, 1:]
    best = probs.argmax(axis=1)
    return best.astype(np.int64) + 1, probs[np.arange(len(probs)), best]


def boxes_prediction(
    gt: SGGImage, task: str, pairs: np.ndarray, object_logits: np.ndarray, relation_logits: np.ndarray
) -> Prediction:
    """PredCls / SGCls: a boxes-mode model's outputs on the ground-truth boxes -> the evaluator's Prediction."""
    if task == "predcls":
        labels, scores = gt.labels, np.ones(len(gt.labels))
    else:
        labels, scores = object_scores(object_logits)
    return Prediction(gt.boxes, labels, scores, np.asarray(pairs, np.int64).reshape(-1, 2), relation_logits)


class SGGEvaluator:
    """Accumulates R@K, ngR@K and mR@K over images; `add` one image at a time, `result` at the end.

    `per_image` keeps every image's record (the dict `add` returns); a caller may add its own keys to it, e.g. the
    seconds the model took on that image.
    """

    def __init__(self, predicates: Sequence[str], ks: Sequence[int] = (20, 50, 100), iou_threshold: float = 0.5):
        if not ks or any(int(k) < 1 for k in ks):
            raise SRGError(f"K of Recall@K must be positive integers; got {list(ks)}")
        self.predicates = tuple(predicates)
        self.ks = tuple(int(k) for k in ks)
        self.iou_threshold = float(iou_threshold)
        self.per_image: list[dict] = []
        # "graph": SGRecall / SGMeanRecall, "ng": SGNoGraphConstraintRecall / SGNGMeanRecall
        self._recall = {m: {k: [] for k in self.ks} for m in ("graph", "ng")}
        n = len(self.predicates)
        self._per_predicate = {m: {k: [[] for _ in range(n)] for k in self.ks} for m in ("graph", "ng")}

    def add(self, gt: SGGImage, pred: Prediction) -> dict:
        """Score one image; returns its record: recall and no-graph-constraint recall at each K, or
        `evaluated: False` for an image without ground-truth relations (skipped, as SGB)."""
        record: dict = {"index": gt.index, "image_id": gt.image_id, "relations": len(gt.relations)}
        self.per_image.append(record)
        if len(gt.relations) == 0:
            record["evaluated"] = False
            return record
        self._check(pred)
        record["evaluated"] = True
        iou = box_iou(gt.boxes, pred.boxes, plus_one=True)
        top = max(self.ks)
        graph = score_triplets(np.asarray(pred.scores, np.float64), pred.pairs, pred.relation_logits, top)
        ranked = {"graph": graph[:, :3].astype(np.int64), "ng": self._no_graph_constraint(pred, top)}
        for mode, key in (("graph", "recall"), ("ng", "no_graph_constraint_recall")):
            hits = self._matches(gt, iou, ranked[mode], np.asarray(pred.labels))
            record[key] = {}
            for k in self.ks:
                recalled = hits[:, :k].any(axis=1)  # a ground truth matched by several predictions counts once
                record[key][str(k)] = float(recalled.mean())
                self._recall[mode][k].append(record[key][str(k)])
                for p in np.unique(gt.relations[:, 2]):
                    present = gt.relations[:, 2] == p
                    self._per_predicate[mode][k][p - 1].append(float(recalled[present].mean()))
        return record

    def result(self) -> dict:
        """Means over the evaluated images, fractions in [0, 1]; per_predicate is the mR@K's per-predicate recall
        (0.0 for a predicate no evaluated image contains; `predicate_images` says how many contain each)."""
        evaluated = sum(1 for r in self.per_image if r["evaluated"])
        if not evaluated:
            raise SRGError(
                f"no image with ground-truth relations was evaluated ({len(self.per_image)} images added); "
                "Recall@K is undefined"
            )

        # SGMeanRecall.calculate_mean_recall: per predicate the mean over the images containing it, else 0.0
        per_predicate = {
            m: {k: [float(np.mean(v)) if v else 0.0 for v in self._per_predicate[m][k]] for k in self.ks}
            for m in ("graph", "ng")
        }
        return {
            "images": evaluated,
            "images_without_relations": len(self.per_image) - evaluated,
            "recall": {str(k): float(np.mean(self._recall["graph"][k])) for k in self.ks},
            "no_graph_constraint_recall": {str(k): float(np.mean(self._recall["ng"][k])) for k in self.ks},
            "mean_recall": {str(k): float(np.mean(per_predicate["graph"][k])) for k in self.ks},
            "no_graph_constraint_mean_recall": {str(k): float(np.mean(per_predicate["ng"][k])) for k in self.ks},
            "per_predicate": {
                name: {str(k): per_predicate["graph"][k][n] for k in self.ks} for n, name in enumerate(self.predicates)
            },
            "predicate_images": {
                name: len(self._per_predicate["graph"][self.ks[0]][n]) for n, name in enumerate(self.predicates)
            },
        }

    def _check(self, pred: Prediction) -> None:
        classes = len(self.predicates) + 1
        logits = np.asarray(pred.relation_logits)
        if logits.ndim == 3 and logits.shape[1] == 2 and logits.shape[2] != classes:
            raise SRGError(
                f"the model predicts {logits.shape[2] - 1} predicates but the dataset has {len(self.predicates)}"
            )
        n, p = len(pred.boxes), len(pred.pairs)
        if logits.shape != (p, 2, classes) or np.shape(pred.pairs) != (p, 2):
            raise ValueError(f"pairs {np.shape(pred.pairs)} and relation_logits {logits.shape} do not agree")
        if np.shape(pred.boxes) != (n, 4) or len(pred.labels) != n or len(pred.scores) != n:
            raise ValueError(f"boxes {np.shape(pred.boxes)}, labels and scores must describe the same objects")
        if p and (np.min(pred.pairs) < 0 or np.max(pred.pairs) >= n):
            raise ValueError(f"pairs index objects outside 0..{n - 1}")

    def _no_graph_constraint(self, pred: Prediction, top: int) -> np.ndarray:
        """SGNoGraphConstraintRecall's candidates, best first: [top, 3] (subject, object, predicate 1-based)."""
        pairs = np.asarray(pred.pairs, np.int64).reshape(-1, 2)
        probs = softmax(np.asarray(pred.relation_logits, np.float64), axis=-1)[..., 1:]
        subjects = np.concatenate([pairs[:, 0], pairs[:, 1]])
        objects = np.concatenate([pairs[:, 1], pairs[:, 0]])
        probs = np.concatenate([probs[:, 0], probs[:, 1]])  # [2P, R], rows in score_triplets' order
        scores = np.asarray(pred.scores, np.float64)
        overall = (scores[subjects] * scores[objects])[:, None] * probs
        order = np.argsort(-overall.ravel(), kind="stable")[:top]
        rows, predicate = np.divmod(order, probs.shape[1])
        return np.stack([subjects[rows], objects[rows], predicate + 1], axis=1)

    def _matches(self, gt: SGGImage, iou: np.ndarray, ranked: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """[ground-truth triplet, ranked prediction] True where they match: _triplet + _compute_pred_matches."""
        s, o, p = gt.relations[:, 0], gt.relations[:, 1], gt.relations[:, 2]
        ps, po, pp = ranked[:, 0], ranked[:, 1], ranked[:, 2]
        same = (gt.labels[s, None] == labels[None, ps]) & (p[:, None] == pp[None, :])
        same &= gt.labels[o, None] == labels[None, po]
        return (
            same
            & (iou[s[:, None], ps[None, :]] >= self.iou_threshold)
            & (iou[o[:, None], po[None, :]] >= self.iou_threshold)
        )
