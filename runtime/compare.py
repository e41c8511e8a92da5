"""Comparing two backends' outputs: the numbers the judge (runtime/judge.py) reads. numpy only."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


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


def top1_counts(ref_logits: np.ndarray, got_logits: np.ndarray) -> tuple[int, int]:
    """(rows whose argmax agrees, rows), last axis = classes; counts pool over frames, a mismatch agrees nowhere."""
    rows = int(np.prod(ref_logits.shape[:-1]))
    if ref_logits.shape != got_logits.shape:
        return 0, rows
    return int((ref_logits.argmax(-1) == got_logits.argmax(-1)).sum()), rows


def top1_agreement(ref_logits: np.ndarray, got_logits: np.ndarray) -> float:
    """Fraction of rows (last axis = classes) whose argmax agrees; 1.0 for no rows, 0.0 for a shape mismatch."""
    if ref_logits.shape != got_logits.shape:
        return 0.0
    agree, rows = top1_counts(ref_logits, got_logits)
    return agree / rows if rows else 1.0


def triplet_hits(ref_triplets: np.ndarray, got_triplets: np.ndarray, k: int) -> tuple[int, int]:
    """(hits, total): how many of the reference's top-k (subject, object, predicate) triplets are among the
    deployed top-k, out of how many the reference has (fewer than k when the frame has fewer ordered pairs).
    Rows are `scene_graph.score_triplets` output, best first; recall@k = hits / total, pooled over frames."""
    ref = {tuple(int(v) for v in row[:3]) for row in ref_triplets[:k]}
    got = {tuple(int(v) for v in row[:3]) for row in got_triplets[:k]}
    return len(ref & got), len(ref)


def compare_outputs(ref: dict[str, np.ndarray], got: dict[str, np.ndarray]) -> dict[str, OutputDiff]:
    return {name: diff(name, ref[name], got[name]) for name in ref}
