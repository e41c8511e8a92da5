"""R@K, ngR@K and mR@K on hand-made predictions with answers worked out by hand, and a cross-check against a
transcription of Scene-Graph-Benchmark's own evaluation code."""

from __future__ import annotations

from functools import reduce
from pathlib import Path

import numpy as np
import pytest

from srg_deploy.datasets import Prediction, SGGEvaluator, SGGImage, object_scores
from srg_deploy.errors import SRGError

ON, HAS, NEAR = 1, 2, 3
PREDICATES = ("on", "has", "near")


def image(boxes, labels, relations, index: int = 0) -> SGGImage:
    return SGGImage(
        index=index,
        image_id=100 + index,
        path=Path(f"{100 + index}.jpg"),
        width=640,
        height=480,
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        relations=np.asarray(relations, np.int64).reshape(-1, 3),
    )


def prediction(boxes, labels, pairs, probs, scores=None) -> Prediction:
    """`probs[p][d]` = softmax probabilities [no relation, on, has, near, ...] of pair p in direction d (0: i -> j,
    1: j -> i); the logits are their logarithms, so softmax gives these numbers back."""
    return Prediction(
        boxes=np.asarray(boxes, np.float64).reshape(-1, 4),
        labels=np.asarray(labels, np.int64),
        scores=np.ones(len(labels)) if scores is None else np.asarray(scores, np.float64),
        pairs=np.asarray(pairs, np.int64).reshape(-1, 2),
        relation_logits=np.log(np.asarray(probs, np.float64)).reshape(len(pairs), 2, -1),
    )


THREE = [[0, 0, 9, 9], [100, 0, 109, 9], [200, 0, 209, 9]]  # three boxes far apart
A = [0.1, 0.6, 0.2, 0.1]  # best: on 0.6, then has 0.2
B = [0.25, 0.1, 0.4, 0.25]  # best: has 0.4, then near 0.25
C = [0.5, 0.1, 0.1, 0.3]  # best: near 0.3
D = [0.8, 0.1, 0.05, 0.05]  # best: on 0.1


def test_recall_at_k_no_graph_constraint_and_mean_recall_by_hand():
    """Ground truth 0-on-1, 0-has-1 (the same pair annotated twice), 1-has-2, 2-near-0.

    Ordered pairs and their best predicate: 0->1 on .6 (hit), 1->2 has .4 (hit), 0->2 near .3 (miss) and
    2->0 near .3 (hit) tie (identical rows C; the pair listed first ranks first), 1->0 and 2->1 on .1.
    Graph-constrained: 0-has-1 can never be recalled (its pair's best is on): R@1 1/4, R@3 2/4, R@4..6 3/4.
    No graph constraint: .6 hit, .4 hit, .3 miss, .3 hit, .25 (1->2 near) miss, .2 (0->1 has) hit: ngR@6 = 1.
    mR@4: on 1/1, has 1/2 (1-has-2 only), near 1/1 -> (1 + .5 + 1) / 3 = 5/6.
    """
    gt = image(THREE, [1, 2, 3], [[0, 1, ON], [0, 1, HAS], [1, 2, HAS], [2, 0, NEAR]])
    pred = prediction(THREE, [1, 2, 3], [[0, 1], [0, 2], [1, 2]], [[A, D], [C, C], [B, D]])
    evaluator = SGGEvaluator(PREDICATES, ks=(1, 3, 4, 5, 6))
    record = evaluator.add(gt, pred)
    assert record["recall"] == {"1": 0.25, "3": 0.5, "4": 0.75, "5": 0.75, "6": 0.75}
    assert record["no_graph_constraint_recall"] == {"1": 0.25, "3": 0.5, "4": 0.75, "5": 0.75, "6": 1.0}
    result = evaluator.result()
    assert result["images"] == 1 and result["images_without_relations"] == 0
    assert result["recall"] == record["recall"]
    assert result["mean_recall"] == pytest.approx({"1": 1 / 3, "3": 0.5, "4": 5 / 6, "5": 5 / 6, "6": 5 / 6})
    assert result["no_graph_constraint_mean_recall"]["6"] == pytest.approx(1.0)
    assert result["per_predicate"]["has"] == {"1": 0.0, "3": 0.5, "4": 0.5, "5": 0.5, "6": 0.5}
    assert result["predicate_images"] == {"on": 1, "has": 1, "near": 1}


def test_means_over_images_skip_images_without_relations_and_count_unseen_predicates_as_zero():
    """Image X: 0-on-1 recalled, 1-has-0 missed -> 1/2. Image Y: 0-on-1 missed -> 0. Image Z: no relation, skipped.
    R@K = (1/2 + 0) / 2 = 1/4. mR@K: on (1 + 0) / 2, has 0, near never in the ground truth 0, wears never 0
    -> 0.5 / 4 = 0.125."""
    predicates = (*PREDICATES, "wears")
    two = [[0, 0, 9, 9], [50, 0, 59, 9]]
    x = image(two, [1, 2], [[0, 1, ON], [1, 0, HAS]], index=0)
    y = image(two, [1, 2], [[0, 1, ON]], index=1)
    z = image(two, [1, 2], np.zeros((0, 3)), index=2)
    x_pred = prediction(two, [1, 2], [[0, 1]], [[[0.1, 0.7, 0.1, 0.05, 0.05], [0.1, 0.1, 0.1, 0.6, 0.1]]])
    y_pred = prediction(two, [1, 2], [[0, 1]], [[[0.1, 0.1, 0.7, 0.05, 0.05], [0.6, 0.1, 0.1, 0.1, 0.1]]])
    evaluator = SGGEvaluator(predicates, ks=(20, 50, 100))
    assert evaluator.add(x, x_pred)["recall"]["50"] == 0.5
    assert evaluator.add(y, y_pred)["recall"]["50"] == 0.0
    assert evaluator.add(z, y_pred) == {"index": 2, "image_id": 102, "relations": 0, "evaluated": False}
    result = evaluator.result()
    assert result["images"] == 2 and result["images_without_relations"] == 1
    assert result["recall"] == {"20": 0.25, "50": 0.25, "100": 0.25}
    assert result["mean_recall"] == {"20": 0.125, "50": 0.125, "100": 0.125}
    assert result["per_predicate"] == {
        "on": {"20": 0.5, "50": 0.5, "100": 0.5},
        "has": {"20": 0.0, "50": 0.0, "100": 0.0},
        "near": {"20": 0.0, "50": 0.0, "100": 0.0},
        "wears": {"20": 0.0, "50": 0.0, "100": 0.0},
    }
    assert result["predicate_images"] == {"on": 2, "has": 1, "near": 0, "wears": 0}
    assert [r["evaluated"] for r in evaluator.per_image] == [True, True, False]


# IoU with the +1-pixel convention: the ground-truth subject [0, 0, 9, 9] covers 10 x 10 = 100 pixels; a predicted
# [0, 0, 9, y2] inside it covers 10 x (y2 + 1), so IoU = (y2 + 1) / 10. Without the +1 it would be y2 / 9.
@pytest.mark.parametrize(
    ("subject_box", "object_box", "recalled"),
    [
        ([0, 0, 9, 3.9], [20, 0, 29, 9], False),  # IoU 0.49
        ([0, 0, 9, 4.0], [20, 0, 29, 9], True),  # IoU exactly 0.5: >= counts (4/9 = 0.44 without the +1)
        ([0, 0, 9, 4.1], [20, 0, 29, 9], True),  # IoU 0.51 (0.46 without the +1)
        ([0, 0, 9, 9], [20, 0, 29, 3.9], False),  # the object's box just below
        ([0, 0, 9, 9], [20, 0, 29, 4.1], True),
    ],
)
def test_iou_threshold_is_inclusive_with_the_plus_one_convention(subject_box, object_box, recalled):
    gt = image([[0, 0, 9, 9], [20, 0, 29, 9]], [1, 2], [[0, 1, ON]])
    pred = prediction([subject_box, object_box], [1, 2], [[0, 1]], [[A, D]])
    evaluator = SGGEvaluator(PREDICATES)
    assert evaluator.add(gt, pred)["recall"] == dict.fromkeys(("20", "50", "100"), 1.0 if recalled else 0.0)


def test_a_ground_truth_recalled_by_two_predictions_counts_once():
    """Two predicted subjects both cover the ground truth's (IoU 1 and 0.9); both say 0-on-1: recall 1/1, not 2/1.
    Conversely one prediction recalls two identical ground-truth rows (SGB matches every row): 2/2."""
    gt = image([[0, 0, 9, 9], [20, 0, 29, 9]], [1, 2], [[0, 1, ON]])
    boxes = [[0, 0, 9, 9], [0, 0, 9, 8], [20, 0, 29, 9]]
    pred = prediction(boxes, [1, 1, 2], [[0, 2], [1, 2], [0, 1]], [[A, D], [A, D], [D, D]])
    evaluator = SGGEvaluator(PREDICATES, ks=(1, 2, 6))
    assert evaluator.add(gt, pred)["recall"] == {"1": 1.0, "2": 1.0, "6": 1.0}
    twice = image([[0, 0, 9, 9], [20, 0, 29, 9]], [1, 2], [[0, 1, ON], [0, 1, ON]])
    one = prediction([[0, 0, 9, 9], [20, 0, 29, 9]], [1, 2], [[0, 1]], [[A, D]])
    assert SGGEvaluator(PREDICATES, ks=(1,)).add(twice, one)["recall"] == {"1": 1.0}


def test_object_scores_and_labels_rank_and_match_triplets():
    """SGCls: scores 1, .5, .9. 0->1 on: .6 x 1 x .5 = .30; 0->2 near: .3 x 1 x .9 = .27; so at K=1 the ground
    truth 0-on-1 is recalled. Scores .5 -> .4 for object 1 make it .24 < .27: then only K=2 recalls it.
    A wrong subject label is never recalled."""
    gt = image(THREE, [1, 2, 3], [[0, 1, ON]])
    pairs, probs = [[0, 1], [0, 2], [1, 2]], [[A, D], [C, D], [D, D]]
    for scores, expected in (([1.0, 0.5, 0.9], {"1": 1.0, "2": 1.0}), ([1.0, 0.4, 0.9], {"1": 0.0, "2": 1.0})):
        pred = prediction(THREE, [1, 2, 3], pairs, probs, scores=scores)
        assert SGGEvaluator(PREDICATES, ks=(1, 2)).add(gt, pred)["recall"] == expected
    wrong_label = prediction(THREE, [3, 2, 3], pairs, probs)
    assert SGGEvaluator(PREDICATES).add(gt, wrong_label)["recall"]["100"] == 0.0

    labels, scores = object_scores(np.log([[0.2, 0.5, 0.3], [0.7, 0.1, 0.2]]))
    np.testing.assert_array_equal(labels, [1, 2])  # the best foreground class, background excluded
    np.testing.assert_allclose(scores, [0.5, 0.2])  # its probability in the full softmax, not renormalised


def test_no_pairs_counts_zero_and_errors_are_clear():
    gt = image(THREE, [1, 2, 3], [[0, 1, ON]])
    empty = Prediction(
        np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0), np.zeros((0, 2), np.int64), np.zeros((0, 2, 4))
    )
    evaluator = SGGEvaluator(PREDICATES)
    assert evaluator.add(gt, empty)["recall"] == {"20": 0.0, "50": 0.0, "100": 0.0}
    assert evaluator.result()["images"] == 1

    with pytest.raises(SRGError, match="no image with ground-truth relations was evaluated"):
        SGGEvaluator(PREDICATES).result()
    wrong_vocabulary = prediction(THREE, [1, 2, 3], [[0, 1]], [[[0.5, 0.5], [0.5, 0.5]]])
    with pytest.raises(SRGError, match="the model predicts 1 predicates but the dataset has 3"):
        SGGEvaluator(PREDICATES).add(gt, wrong_vocabulary)
    with pytest.raises(SRGError, match="positive integers"):
        SGGEvaluator(PREDICATES, ks=(0, 50))


# --- cross-check against Scene-Graph-Benchmark's algorithm ---------------------------------------------------------


def sgb_bbox_overlaps(boxes1: np.ndarray, boxes2: np.ndarray) -> np.ndarray:
    """maskrcnn_benchmark/structures/boxlist_ops.py boxlist_iou (TO_REMOVE = 1), which miscellaneous.bbox_overlaps calls."""
    area1 = (boxes1[:, 2] - boxes1[:, 0] + 1) * (boxes1[:, 3] - boxes1[:, 1] + 1)
    area2 = (boxes2[:, 2] - boxes2[:, 0] + 1) * (boxes2[:, 3] - boxes2[:, 1] + 1)
    lt = np.maximum(boxes1[:, None, :2], boxes2[:, :2])
    rb = np.minimum(boxes1[:, None, 2:], boxes2[:, 2:])
    wh = (rb - lt + 1).clip(min=0)
    inter = wh[:, :, 0] * wh[:, :, 1]
    return inter / (area1[:, None] + area2 - inter)


def sgb_triplet(relations, classes, boxes):
    """sgg_eval.py _triplet (scores left out: SGRecall does not use them)."""
    sub_id, ob_id, pred_label = relations[:, 0], relations[:, 1], relations[:, 2]
    return np.column_stack((classes[sub_id], pred_label, classes[ob_id])), np.column_stack(
        (boxes[sub_id], boxes[ob_id])
    )


def sgb_compute_pred_matches(gt_triplets, pred_triplets, gt_boxes, pred_boxes, iou_thres):
    """sgg_eval.py _compute_pred_matches with miscellaneous.intersect_2d, phrdet=False."""
    keeps = (gt_triplets[..., None] == pred_triplets.T[None, ...]).all(1)
    gt_has_match = keeps.any(1)
    pred_to_gt = [[] for _ in range(pred_boxes.shape[0])]
    for gt_ind, gt_box, keep_inds in zip(np.where(gt_has_match)[0], gt_boxes[gt_has_match], keeps[gt_has_match]):
        boxes = pred_boxes[keep_inds]
        sub_iou = sgb_bbox_overlaps(gt_box[None, :4], boxes[:, :4])[0]
        obj_iou = sgb_bbox_overlaps(gt_box[None, 4:], boxes[:, 4:])[0]
        inds = (sub_iou >= iou_thres) & (obj_iou >= iou_thres)
        for i in np.where(keep_inds)[0][inds]:
            pred_to_gt[i].append(int(gt_ind))
    return pred_to_gt


def sgb_evaluate(gt: SGGImage, pred: Prediction, ks, num_rel: int, collect: dict) -> None:
    """One image through inference.py PostProcessor.forward (sorting) and vg_eval.py evaluate_relation_of_one_image
    with SGRecall, SGNoGraphConstraintRecall, SGMeanRecall and SGNGMeanRecall, appending to `collect`."""
    n = len(pred.boxes)
    # sampling.py prepare_test_pairs: every ordered pair i != j, row-major (torch.nonzero of ones - eye)
    pred_rel_inds = np.argwhere(np.ones((n, n)) - np.eye(n))
    logits = {}
    for (i, j), row in zip(pred.pairs.tolist(), pred.relation_logits):
        logits[i, j], logits[j, i] = row[0], row[1]
    rel_logit = np.stack([logits[i, j] for i, j in pred_rel_inds.tolist()])
    rel_class_prob = np.exp(rel_logit - rel_logit.max(1, keepdims=True))
    rel_class_prob /= rel_class_prob.sum(1, keepdims=True)
    obj_scores = pred.scores
    triple_scores = rel_class_prob[:, 1:].max(1) * obj_scores[pred_rel_inds[:, 0]] * obj_scores[pred_rel_inds[:, 1]]
    order = np.argsort(-triple_scores, kind="stable")
    pred_rel_inds, rel_scores = pred_rel_inds[order], rel_class_prob[order]

    gt_rels = gt.relations
    gt_triplets, gt_triplet_boxes = sgb_triplet(gt_rels, gt.labels, gt.boxes)
    # SGRecall.calculate_recall
    pred_rels = np.column_stack((pred_rel_inds, 1 + rel_scores[:, 1:].argmax(1)))
    pred_triplets, pred_triplet_boxes = sgb_triplet(pred_rels, pred.labels, pred.boxes)
    pred_to_gt = sgb_compute_pred_matches(gt_triplets, pred_triplets, gt_triplet_boxes, pred_triplet_boxes, 0.5)
    # SGNoGraphConstraintRecall.calculate_recall, argsort_desc(scores)[:100]
    obj_scores_per_rel = obj_scores[pred_rel_inds].prod(1)
    nogc_overall_scores = obj_scores_per_rel[:, None] * rel_scores[:, 1:]
    nogc_score_inds = np.column_stack(
        np.unravel_index(np.argsort(-nogc_overall_scores.ravel(), kind="stable"), nogc_overall_scores.shape)
    )[:100]
    nogc_pred_rels = np.column_stack((pred_rel_inds[nogc_score_inds[:, 0]], nogc_score_inds[:, 1] + 1))
    nogc_triplets, nogc_boxes = sgb_triplet(nogc_pred_rels, pred.labels, pred.boxes)
    nogc_pred_to_gt = sgb_compute_pred_matches(gt_triplets, nogc_triplets, gt_triplet_boxes, nogc_boxes, 0.5)

    for name, matches in (("recall", pred_to_gt), ("ng", nogc_pred_to_gt)):
        for k in ks:
            match = reduce(np.union1d, matches[:k])
            collect[name][k].append(float(len(match)) / float(gt_rels.shape[0]))
            # SGMeanRecall.collect_mean_recall_items
            recall_hit, recall_count = [0] * num_rel, [0] * num_rel
            for idx in range(gt_rels.shape[0]):
                recall_count[int(gt_rels[idx, 2])] += 1
                recall_count[0] += 1
            for idx in range(len(match)):
                recall_hit[int(gt_rels[int(match[idx]), 2])] += 1
                recall_hit[0] += 1
            for r in range(num_rel):
                if recall_count[r] > 0:
                    collect[f"{name}_mean"][k][r].append(float(recall_hit[r] / recall_count[r]))


def sgb_mean_recall(per_predicate: list[list[float]], num_rel: int) -> float:
    """SGMeanRecall.calculate_mean_recall."""
    return sum(
        0.0 if not per_predicate[r + 1] else float(np.mean(per_predicate[r + 1])) for r in range(num_rel - 1)
    ) / (num_rel - 1)


def test_matches_a_transcription_of_scene_graph_benchmark_on_random_sgdet_like_images():
    rng = np.random.default_rng(42)
    predicates = tuple(f"p{k}" for k in range(1, 8))
    num_rel, ks = len(predicates) + 1, (5, 10, 20)
    ours = SGGEvaluator(predicates, ks=ks)
    collect = {
        name: {k: [] for k in ks} if "mean" not in name else {k: [[] for _ in range(num_rel)] for k in ks}
        for name in ("recall", "ng", "recall_mean", "ng_mean")
    }
    for index in range(25):
        g = int(rng.integers(2, 6))
        corner = rng.uniform(0, 400, (g, 2))
        gt_boxes = np.column_stack([corner, corner + rng.uniform(10, 80, (g, 2))]).round()
        ordered = np.argwhere(np.ones((g, g)) - np.eye(g))
        rels = ordered[rng.choice(len(ordered), int(rng.integers(1, len(ordered) + 1)))]  # repeats: duplicate triplets
        relations = np.column_stack([rels, rng.integers(1, 4, len(rels))])  # predicates 1..3 only: 4..7 never seen
        gt = image(gt_boxes, rng.integers(1, 4, g), relations, index=index)
        # detections: the ground truth jittered (IoU around 0.5) plus clutter, noisy labels and scores
        n = g + int(rng.integers(0, 3))
        boxes = np.vstack([gt_boxes + rng.normal(0, 3, gt_boxes.shape), rng.uniform(0, 400, (n - g, 4))])
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 5)
        labels = np.where(rng.random(n) < 0.8, np.append(gt.labels, rng.integers(1, 4, n - g)), rng.integers(1, 4, n))
        pairs = np.argwhere(np.triu(np.ones((n, n)), 1))
        logits = rng.normal(0, 2, (len(pairs), 2, num_rel))
        for s, o, p in relations[rng.random(len(relations)) < 0.7]:  # a head that knows most of the answers
            logits[pairs.tolist().index([min(s, o), max(s, o)]), int(s > o), p] += 3.0
        pred = Prediction(boxes, labels, rng.uniform(0.2, 1.0, n), pairs, logits)
        ours.add(gt, pred)
        sgb_evaluate(gt, pred, ks, num_rel, collect)
    result = ours.result()
    assert 0.05 < result["recall"]["20"] < 0.95  # the case exercises both hits and misses
    for k in ks:
        assert result["recall"][str(k)] == pytest.approx(np.mean(collect["recall"][k]), abs=1e-12)
        assert result["no_graph_constraint_recall"][str(k)] == pytest.approx(np.mean(collect["ng"][k]), abs=1e-12)
        assert result["mean_recall"][str(k)] == pytest.approx(
            sgb_mean_recall(collect["recall_mean"][k], num_rel), abs=1e-12
        )
        assert result["no_graph_constraint_mean_recall"][str(k)] == pytest.approx(
            sgb_mean_recall(collect["ng_mean"][k], num_rel), abs=1e-12
        )
