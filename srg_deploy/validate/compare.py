"""Comparing two backends' outputs: the numbers the gates read (per-output error, cosine, scale error), agreement
with the near-tie rule, and sgdet detection matching. numpy only.

**Near ties.** A top-1 choice (an object's class, a relation's predicate) or a top-K triplet that the deployed
model picks differently from the reference counts against agreement only when the reference's own margin between
its choice and the deployed choice exceeds that output's numeric error band on that frame:
band = BAND_FACTOR (10) x median |got - ref| over the output (for triplets, over every candidate's log-score).
The median is the typical rounding error of the conversion, robust to the few large errors a real defect makes (a
swapped class moves two columns of 151, a scaled layer moves the scale error, gated on its own); for roughly
Gaussian errors 10 x median is ~6.7 sigma, and a flip between two choices needs their errors to differ by more than
the margin (sigma x sqrt 2), so a flip with a margin beyond the band is ~4.7 sigma away from noise. fp16 errors are
heavier-tailed than Gaussian, which is why the factor is 10 rather than 3: the 10-seed sweep of
tests/test_near_ties.py passes with it while a swapped class and a dropped RoI still fail. Near-tie flips are
counted and reported (count, worst margin, band) but agree for the gate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srg_deploy.scene_graph import box_iou, score_triplets

BAND_FACTOR = 10.0
RECALL_AT = (20, 50, 100)


@dataclass(frozen=True)
class OutputDiff:
    """How far `got` is from `ref` for one named output. `max_rel` is max|got-ref| / max|ref| (relative to the
    output's scale, so values near zero do not blow it up); `cosine` treats the whole output as one vector;
    `scale_error` is <got,ref>/<ref,ref> - 1, the systematic part of the difference: fp16 rounding is noise and
    leaves it near 0 (|.| < 0.3% measured), while a weight scaled by 5% shifts it by 1% or more even where the
    cosine stays above 0.9999."""

    name: str
    shape_ref: tuple[int, ...]
    shape_got: tuple[int, ...]
    max_abs: float
    max_rel: float
    cosine: float
    scale: float = 0.0  # max|ref|: what a relative tolerance is relative to
    scale_error: float = 0.0
    max_abs_got: float = 0.0  # largest |value| the deployed model produced (inf when any is not finite)

    @property
    def same_shape(self) -> bool:
        return self.shape_ref == self.shape_got


def diff(name: str, ref: np.ndarray, got: np.ndarray) -> OutputDiff:
    ref64, got64 = np.asarray(ref, np.float64), np.asarray(got, np.float64)
    inf, nan = float("inf"), float("nan")
    if ref64.shape != got64.shape:
        return OutputDiff(name, ref64.shape, got64.shape, inf, inf, nan, scale_error=inf)
    if ref64.size == 0:
        return OutputDiff(name, ref64.shape, got64.shape, 0.0, 0.0, 1.0)
    if not np.isfinite(got64).all():
        return OutputDiff(name, ref64.shape, got64.shape, inf, inf, nan, scale_error=inf, max_abs_got=inf)
    err = np.abs(got64 - ref64)
    scale = np.abs(ref64).max()
    max_abs = float(err.max())
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else inf)
    energy = float(np.vdot(ref64, ref64))
    scale_error = float(np.vdot(got64, ref64)) / energy - 1.0 if energy > 0 else (0.0 if max_abs == 0 else inf)
    return OutputDiff(
        name,
        ref64.shape,
        got64.shape,
        max_abs,
        float(max_rel),
        cosine(ref64, got64),
        float(scale),
        scale_error,
        float(np.abs(got64).max()),
    )


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays as flat vectors; 1.0 when both are all zeros."""
    a, b = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 and nb == 0:
        return 1.0
    if na == 0 or nb == 0:
        return 0.0
    return float(a @ b / (na * nb))


def row_cosine_min(ref: np.ndarray, got: np.ndarray) -> float:
    """The smallest cosine over rows (one per region): a single bad region cannot hide in the average."""
    if ref.shape != got.shape:
        return float("nan")
    if ref.shape[0] == 0:
        return 1.0
    return min(cosine(r, g) for r, g in zip(ref.reshape(len(ref), -1), got.reshape(len(got), -1)))


def error_band(ref: np.ndarray, got: np.ndarray) -> float:
    """BAND_FACTOR x median |got - ref| over the finite entries: the margin a flip must exceed to count."""
    ref64, got64 = np.asarray(ref, np.float64).ravel(), np.asarray(got, np.float64).ravel()
    if ref64.shape != got64.shape:
        return 0.0
    err = np.abs(got64 - ref64)
    err = err[np.isfinite(err)]
    return float(BAND_FACTOR * np.median(err)) if err.size else 0.0


@dataclass
class Agreement:
    """How often the deployed model chose what the reference chose, pooled over frames. `near_ties` are flips
    whose reference margin lies within the error band: they agree for the gate and are reported."""

    agree: int = 0  # choices identical to the reference's
    total: int = 0
    near_ties: int = 0
    worst_margin: float = 0.0  # the largest reference margin among the near-tie flips
    band: float = 0.0  # the widest error band seen

    @property
    def hits(self) -> int:
        return self.agree + self.near_ties

    @property
    def rate(self) -> float:
        """The gated fraction: identical choices plus near ties; 1.0 where there was nothing to agree on."""
        return self.hits / self.total if self.total else 1.0

    def add(self, other: Agreement) -> None:
        self.agree += other.agree
        self.total += other.total
        self.near_ties += other.near_ties
        self.worst_margin = max(self.worst_margin, other.worst_margin)
        self.band = max(self.band, other.band)


def top1_agreement(ref_logits: np.ndarray, got_logits: np.ndarray) -> Agreement:
    """Rows (last axis = classes) whose argmax agrees, and the flips that are near ties: the reference's margin
    between its class and the deployed class within the band of this output. A shape mismatch agrees nowhere."""
    rows = int(np.prod(ref_logits.shape[:-1]))
    if ref_logits.shape != got_logits.shape:
        return Agreement(0, rows)
    if rows == 0:
        return Agreement()
    ref = np.asarray(ref_logits, np.float64).reshape(rows, -1)
    got = np.asarray(got_logits, np.float64).reshape(rows, -1)
    band = error_band(ref, got)
    a, b = ref.argmax(-1), got.argmax(-1)
    flips = np.flatnonzero(a != b)
    margins = ref[flips, a[flips]] - ref[flips, b[flips]]
    near = margins[margins <= band]
    return Agreement(rows - len(flips), rows, len(near), float(near.max()) if len(near) else 0.0, band)


def triplet_log_scores(scores: np.ndarray, pairs: np.ndarray, relation_logits: np.ndarray) -> np.ndarray:
    """[P,2,R] log of every candidate triplet's score as `scene_graph.score_triplets` ranks them: log subject
    score + log object score + log softmax of the predicate (no-relation excluded from the candidates)."""
    logits = np.asarray(relation_logits, np.float64)
    if len(pairs) == 0:
        return np.zeros((0, 2, max(logits.shape[-1] - 1, 0)))
    top = logits.max(-1, keepdims=True)
    log_probs = (logits - top - np.log(np.exp(logits - top).sum(-1, keepdims=True)))[..., 1:]
    log_s = np.log(np.maximum(np.asarray(scores, np.float64), 1e-300))
    subject = np.stack([log_s[pairs[:, 0]], log_s[pairs[:, 1]]], 1)
    return log_probs + (subject + subject[:, ::-1])[..., None]


def triplet_hits(ref_triplets: np.ndarray, got_triplets: np.ndarray, k: int) -> tuple[int, int]:
    """(hits, total): how many of the reference's top-k (subject, object, predicate) triplets are among the
    deployed top-k, out of how many the reference has (fewer than k when the frame has fewer ordered pairs).
    Rows are `scene_graph.score_triplets` output, best first; recall@k = hits / total, pooled over frames."""
    ref = {tuple(int(v) for v in row[:3]) for row in ref_triplets[:k]}
    got = {tuple(int(v) for v in row[:3]) for row in got_triplets[:k]}
    return len(ref & got), len(ref)


def triplet_agreement(
    pairs: np.ndarray,
    ref_scores: np.ndarray,
    got_scores: np.ndarray,
    ref_relations: np.ndarray,
    got_relations: np.ndarray,
) -> dict[str, Agreement]:
    """Triplet recall@K of the deployed top-K against the reference's, K in RECALL_AT. A reference triplet missing
    from the deployed top-K is a near tie when the reference ranks it at most the band above the weakest triplet
    that took a place in the deployed top-K instead (if every score moved by less than e, no triplet can displace
    one the reference ranks more than 2e above it); the band is that of every candidate's log-score."""
    ref_ls = triplet_log_scores(ref_scores, pairs, ref_relations)
    got_ls = triplet_log_scores(got_scores, pairs, got_relations)
    band = error_band(ref_ls, got_ls)
    where = {(int(i), int(j)): (k, 0) for k, (i, j) in enumerate(pairs)}
    where |= {(int(j), int(i)): (k, 1) for k, (i, j) in enumerate(pairs)}

    def ref_log_score(t: tuple[int, int, int]) -> float:
        k, d = where[(t[0], t[1])]
        return float(ref_ls[k, d, t[2] - 1])

    ref_top = score_triplets(np.asarray(ref_scores, np.float64), pairs, ref_relations, max(RECALL_AT))
    got_top = score_triplets(np.asarray(got_scores, np.float64), pairs, got_relations, max(RECALL_AT))
    out = {}
    for k in RECALL_AT:
        ref_set = {tuple(int(v) for v in row[:3]) for row in ref_top[:k]}
        got_set = {tuple(int(v) for v in row[:3]) for row in got_top[:k]}
        missed, intruders = ref_set - got_set, got_set - ref_set
        floor = min((ref_log_score(t) for t in intruders), default=float("inf"))
        margins = [ref_log_score(t) - floor for t in missed]
        near = [m for m in margins if m <= band]
        out[f"triplets@{k}"] = Agreement(
            len(ref_set) - len(missed), len(ref_set), len(near), max(near, default=0.0), band
        )
    return out


def align_detections(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], min_iou: float = 0.5
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
    """Restrict two sgdet outputs to detections matched greedily (reference score order, same label, best IoU)
    and to the pairs both of whose ends matched, in the reference's order and direction; returns the number of
    reference detections matched."""
    match: dict[int, int] = {}
    taken: set[int] = set()
    for i in np.argsort(-ref["scores"], kind="stable"):
        ious = box_iou(ref["boxes"][i], got["boxes"])[0]
        ious[(got["labels"] != ref["labels"][i]) | np.isin(np.arange(len(ious)), list(taken))] = -1
        if len(ious) and ious.max() >= min_iou:
            match[int(i)] = int(ious.argmax())
            taken.add(match[int(i)])
    kept = sorted(match)
    rows = [match[i] for i in kept]
    got_pairs = {(int(a), int(b)): k for k, (a, b) in enumerate(got["pairs"])}
    ref_keep, got_index, swap = [], [], []
    for k, (a, b) in enumerate(ref["pairs"]):
        if int(a) in match and int(b) in match:
            x, y = match[int(a)], match[int(b)]
            key = (min(x, y), max(x, y))
            if key in got_pairs:
                ref_keep.append(k)
                got_index.append(got_pairs[key])
                swap.append(x > y)
    rel = got["relation_logits"][got_index] if got_index else got["relation_logits"][:0]
    rel = np.where(np.asarray(swap, bool)[:, None, None], rel[:, ::-1], rel) if got_index else rel
    per_box = ("boxes", "scores", "labels", "features", "object_logits")
    ref_out = {n: ref[n][kept] for n in per_box} | {
        "pairs": ref["pairs"][ref_keep],
        "relation_logits": ref["relation_logits"][ref_keep],
    }
    got_out = {n: got[n][rows] for n in per_box} | {"pairs": ref["pairs"][ref_keep], "relation_logits": rel}
    return ref_out, got_out, len(match)
