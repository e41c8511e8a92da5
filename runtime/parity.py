"""Parity of a deployed model against the eager reference on one sample input: the check `export` and
`build-engine --fp16` run before they call a file good."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.compare import OutputDiff, compare_outputs, row_cosine_min, top1_agreement
from srg_deploy.scene_graph import box_iou


@dataclass(frozen=True)
class Gates:
    """Pass/fail thresholds. fp32: every output within `max_rel`; fp16: pool5 cosine and top-1 agreement.

    `max_rel` is relative to the output's scale (max|ref|). With `atol` set, an output passes when
    max|got - ref| <= atol + max_rel x max|ref| (numpy's allclose with a scale-relative rtol)."""

    max_rel: float | None = 1e-4
    min_cosine: float | None = None
    min_agreement: float = 1.0
    atol: float | None = None

    @classmethod
    def for_precision(cls, precision: str) -> Gates:
        return cls() if precision == "fp32" else cls(max_rel=None, min_cosine=0.999, min_agreement=0.95)

    def output_failure(self, d: OutputDiff) -> str | None:
        """Why output `d` fails the error gate, or None."""
        if not d.same_shape:
            return f"{d.name}: shape {d.shape_got} != reference {d.shape_ref}"
        if self.atol is None:
            if self.max_rel is not None and not d.max_rel <= self.max_rel:
                return f"{d.name}: max relative error {d.max_rel:.2e} > {self.max_rel:.0e}"
            return None
        tolerance = self.atol + (self.max_rel or 0.0) * d.scale
        if not d.max_abs <= tolerance:
            return (
                f"{d.name}: max abs error {d.max_abs:.2e} > atol {self.atol:g} + rtol {self.max_rel or 0.0:g}"
                f" x max|ref| {d.scale:.3g} = {tolerance:.2e}"
            )
        return None


@dataclass
class ParityResult:
    diffs: dict[str, OutputDiff]
    object_agreement: float
    relation_agreement: float
    feature_cosine: float
    feature_cosine_min: float
    gates: Gates
    detection_recall: float | None = None  # sgdet with unequal detections: matched fraction of the reference's
    failures: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.failures


def check_parity(reference: Backend, deployed: Backend, inputs: dict[str, np.ndarray], gates: Gates) -> ParityResult:
    """Run both backends on `inputs` and judge the deployed one by `gates`.

    In sgdet mode a lower precision may detect slightly different or reordered boxes, so under fp16 gates the
    detections are matched first (same label, IoU >= 0.5) and matched detections and pairs are compared, with the
    matched fraction as one more gate. Under fp32 gates the detections must be the same, in the same order."""
    ref, got = reference.run(inputs), deployed.run(inputs)
    recall = None
    if "boxes" in ref and gates.max_rel is None:
        ref, got, recall = align_detections(ref, got)
    diffs = compare_outputs(ref, got)
    result = ParityResult(
        diffs=diffs,
        object_agreement=top1_agreement(ref["object_logits"], got["object_logits"]),
        relation_agreement=top1_agreement(ref["relation_logits"], got["relation_logits"]),
        feature_cosine=diffs["features"].cosine,
        feature_cosine_min=row_cosine_min(ref["features"], got["features"]),
        gates=gates,
        detection_recall=recall,
    )
    result.failures.extend(f for f in map(gates.output_failure, diffs.values()) if f)
    if gates.min_cosine is not None and not result.feature_cosine >= gates.min_cosine:
        result.failures.append(f"features: cosine {result.feature_cosine:.6f} < {gates.min_cosine}")
    if recall is not None and not recall >= gates.min_agreement:
        result.failures.append(f"detections: {recall:.1%} of the reference's matched < {gates.min_agreement:.0%}")
    if not result.relation_agreement >= gates.min_agreement:
        result.failures.append(f"relation top-1 agreement {result.relation_agreement:.1%} < {gates.min_agreement:.0%}")
    return result


def align_detections(
    ref: dict[str, np.ndarray], got: dict[str, np.ndarray], min_iou: float = 0.5
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], float]:
    """Restrict two sgdet outputs to detections matched greedily (reference score order, same label, best IoU)
    and to the pairs both of whose ends matched, in the reference's order and direction."""
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
    return ref_out, got_out, len(match) / max(len(ref["boxes"]), 1)


def sample_frame(height: int = 300, width: int = 420, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded synthetic BGR frame (smooth gradients, shapes, noise) and boxes covering ordinary and awkward
    cases (overlapping, nested, touching the border, tiny), in frame pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) % 128 * 2], -1)
    frame = frame + rng.normal(0, 12, frame.shape)
    frame[40:160, 60:200] = (30, 90, 220)
    frame[120:280, 220:400] = (200, 160, 40)
    boxes = np.array(
        [
            [60, 40, 200, 160],
            [220, 120, 400, 280],
            [90, 70, 140, 120],
            [0, 0, width - 1, height - 1],
            [180, 100, 260, 200],
            [300, 10, 304, 14],
        ],
        dtype=np.float64,
    )
    return np.clip(frame, 0, 255).astype(np.uint8), boxes
