"""Parity of a deployed model against the eager reference on one sample input: the check `export` and
`build-engine --fp16` run before they call a file good."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.compare import OutputDiff, compare_outputs, row_cosine_min, top1_agreement


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
    feature_cosine_min: float
    gates: Gates
    failures: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.failures


def check_parity(reference: Backend, deployed: Backend, inputs: dict[str, np.ndarray], gates: Gates) -> ParityResult:
    """Run both backends on `inputs` and judge the deployed one by `gates`."""
    ref, got = reference.run(inputs), deployed.run(inputs)
    diffs = compare_outputs(ref, got)
    result = ParityResult(
        diffs=diffs,
        object_agreement=top1_agreement(ref["object_logits"], got["object_logits"]),
        relation_agreement=top1_agreement(ref["relation_logits"], got["relation_logits"]),
        feature_cosine_min=row_cosine_min(ref["features"], got["features"]),
        gates=gates,
    )
    result.failures.extend(f for f in map(gates.output_failure, diffs.values()) if f)
    if gates.min_cosine is not None and not result.feature_cosine_min >= gates.min_cosine:
        result.failures.append(f"features: min cosine {result.feature_cosine_min:.6f} < {gates.min_cosine}")
    if not result.relation_agreement >= gates.min_agreement:
        result.failures.append(f"relation top-1 agreement {result.relation_agreement:.1%} < {gates.min_agreement:.0%}")
    return result


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
