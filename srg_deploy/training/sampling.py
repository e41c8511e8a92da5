"""Which ordered pairs of an image the relation head trains on, as Scene-Graph-Benchmark samples them with given
boxes (`maskrcnn_benchmark/modeling/roi_heads/relation_head/sampling.py`, `RelationSampling.gtbox_relsample`), and
how each maps onto the deployed graph's unordered pairs. numpy only.

Per image at most `budget` ordered pairs: the ground-truth relations (foreground), at most `budget x
positive_fraction` of them drawn at random when there are more, then ordered pairs (i, j), i != j, that carry no
relation in that direction, drawn at random to fill the budget and labelled 0 ("no relation"). The relation matrix
is built as SGB's `get_groundtruth` builds it: a pair annotated twice keeps the first predicate, or the later one
with probability 1/2 (the train split's reader already keeps one predicate per pair, so this only matters when it
does not). We use budget 256 with 25% foreground (64), DESIGN.md §6; SGB's defaults.py says 64 / 0.25 and its
released configs 1024 / 0.25. A relation of a box with itself is dropped: the deployed graph never scores one.
"""

from __future__ import annotations

import numpy as np

PAIRS_PER_IMAGE = 256
POSITIVE_FRACTION = 0.25


def sample_pairs(
    num_boxes: int,
    relations: np.ndarray,
    rng: np.random.Generator,
    budget: int = PAIRS_PER_IMAGE,
    positive_fraction: float = POSITIVE_FRACTION,
) -> tuple[np.ndarray, np.ndarray]:
    """(ordered pairs [S,2] as (subject, object), labels [S] with 0 = no relation): foreground first."""
    matrix = np.zeros((num_boxes, num_boxes), np.int64)
    for s, o, p in np.asarray(relations, np.int64).reshape(-1, 3):
        if s != o and (matrix[s, o] == 0 or rng.random() > 0.5):
            matrix[s, o] = p
    foreground = np.argwhere(matrix > 0)  # row-major, as torch.nonzero
    most = int(budget * positive_fraction)
    if len(foreground) > most:
        foreground = foreground[rng.permutation(len(foreground))[:most]]
    candidates = np.argwhere((matrix == 0) & ~np.eye(num_boxes, dtype=bool))
    background = candidates[rng.permutation(len(candidates))[: budget - len(foreground)]]
    pairs = np.concatenate([foreground, background]).astype(np.int64).reshape(-1, 2)
    labels = np.concatenate([matrix[foreground[:, 0], foreground[:, 1]], np.zeros(len(background), np.int64)])
    return pairs, labels


def unordered_index(pairs: np.ndarray, num_boxes: int) -> tuple[np.ndarray, np.ndarray]:
    """Ordered pairs (s, o) -> (row of (min, max) in `scene_graph.all_pairs(num_boxes)`, direction): direction 0 is
    the graph's `relation_logits[:, 0]` (i -> j, s < o), 1 is `[:, 1]` (j -> i)."""
    pairs = np.asarray(pairs, np.int64).reshape(-1, 2)
    i, j = pairs.min(axis=1), pairs.max(axis=1)
    # all_pairs is row-major over i < j: row i starts after sum_{r<i} (n - 1 - r) = i * n - i * (i + 1) / 2 pairs
    index = i * num_boxes - i * (i + 1) // 2 + (j - i - 1)
    return index, (pairs[:, 0] > pairs[:, 1]).astype(np.int64)
