"""Text from verdicts and failures, for people: one line per failure, the checklist that `export`, `build-engine
--fp16`, `verify` and `infer --check-every` print, and the gates in words. Nothing here decides anything."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from srg_deploy.validate.compare import RECALL_AT
from srg_deploy.validate.failures import (
    AGREEMENT,
    COSINE,
    DETECTIONS,
    MAX_ABS,
    NONFINITE,
    PAIRS,
    REGION_COSINE,
    SCALE,
    SHAPE,
    STRUCTURAL,
    Failure,
)
from srg_deploy.validate.gates import FP16_MAX, Gates

if TYPE_CHECKING:
    from srg_deploy.validate.verdict import Verdict

AGREEMENT_LABELS = {
    "objects": "object top-1",
    "relations": "relation top-1",
    **{f"triplets@{k}": f"triplet recall@{k}" for k in RECALL_AT},
    "labels": "detection label",
    "detections": "detections matched (label, IoU >= 0.5)",
}


def failure_text(f: Failure, where: bool = True) -> str:
    """One line: `frame 0 (sample frame): relation_logits: max abs error ...` (the frame part when `where`)."""
    prefix = f"frame {f.frame} ({f.source}): " if where and f.frame is not None else ""
    if f.kind == SHAPE:
        text = f"{f.output}: {f.detail}"
    elif f.kind == NONFINITE:
        text = f"{f.output}: the deployed model produced NaN or infinity"
        if f.detail == "fp16":
            text += f" (activations beyond fp16's range, {FP16_MAX:g}, overflow to infinity: keep those layers in fp32)"
    elif f.kind == MAX_ABS:
        text = f"{f.output}: max abs error {f.value:.2e} > {f.bound:.2e} ({f.detail})"
    elif f.kind == COSINE:
        text = f"{f.output}: cosine {f.value:.6f} < {f.bound}"
    elif f.kind == SCALE:
        text = f"{f.output}: scale error {f.value:+.2%} beyond ±{f.bound:.1%}"
    elif f.kind == REGION_COSINE:
        text = f"{f.output}: worst cosine {f.value:.6f} < {f.bound}"
    elif f.kind == DETECTIONS:
        text = f"deployed model detected {f.value:g} objects, reference {f.bound:g}"
    elif f.kind == PAIRS:
        text = "pairs: the deployed model chose other region pairs than the reference"
    elif f.kind == AGREEMENT:
        text = f"{AGREEMENT_LABELS.get(f.output, f.output)} agreement {f.value:.1%} < {f.bound:.0%}"
    else:  # pragma: no cover - Failure refuses unknown kinds
        text = f"{f.output}: {f.kind}"
    return prefix + text


def first_failure(verdict: Verdict) -> str:
    """The first failure, and how many more."""
    more = f" (and {len(verdict.failures) - 1} more)" if len(verdict.failures) > 1 else ""
    return failure_text(verdict.failures[0]) + more


def describe_gates(g: Gates) -> str:
    rules = []
    if g.rtol is not None or g.atol is not None:
        rules.append(f"max abs error <= atol {g.atol or 0:g} + rtol {g.rtol or 0:g} x max|ref|")
    if g.min_cosine is not None:
        rules.append(f"cosine >= {g.min_cosine:g}")
    if g.min_region_cosine is not None:
        rules.append(f"region cosine >= {g.min_region_cosine:g}")
    if g.max_scale_error is not None:
        rules.append(f"|scale error| <= {g.max_scale_error:g}")
    rules.append(f"agreement >= {g.min_agreement:.0%} (near ties excepted)")
    return f"{g.precision} gates: " + ", ".join(rules)


@dataclass
class Check:
    """One line of the checklist."""

    passed: bool
    text: str


def checklist(verdict: Verdict) -> list[Check]:
    """One line per output, the per-region cosine, each agreement (with its near ties), then up to three
    structural failures, in that order."""
    g = verdict.gates
    lines = []
    for name, worst in verdict.outputs.items():
        parts = [f"max abs {worst['max_abs']:.2e}", f"max rel {worst['max_rel']:.2e}"]
        if g.rtol is not None or g.atol is not None:
            extra = g.atol_for(name)
            parts[-1] += f" (rtol {g.rtol or 0:g}" + (f", atol {extra:g})" if extra else ")")
        parts.append(f"cosine {worst['cosine_min']:.7f}" + (f" (>= {g.min_cosine:g})" if g.min_cosine else ""))
        parts.append(
            f"scale error {worst['scale_error']:+.2e}"
            + (f" (±{g.max_scale_error:g})" if g.max_scale_error is not None else "")
        )
        lines.append(Check(not verdict.failed(name), f"{name:<16} " + ", ".join(parts)))
    if verdict.outputs:
        passed = g.min_region_cosine is None or verdict.region_cosine_min >= g.min_region_cosine
        bound = f" (>= {g.min_region_cosine:g})" if g.min_region_cosine is not None else ""
        lines.append(Check(passed, f"{'features/region':<16} worst cosine {verdict.region_cosine_min:.7f}{bound}"))
    for name, a in verdict.agreements.items():
        text = f"{AGREEMENT_LABELS[name]} agreement {a.rate:.1%} ({a.hits}/{a.total}, >= {g.min_agreement:.0%})"
        if a.near_ties:
            text += (
                f"; {a.near_ties} near-tie flip{'s' if a.near_ties > 1 else ''} (worst reference margin"
                f" {a.worst_margin:.3g} <= error band {a.band:.3g})"
            )
        lines.append(Check(a.rate >= g.min_agreement, text))
    structural = [f for f in verdict.failures if f.kind in STRUCTURAL]
    lines.extend(Check(False, failure_text(f)) for f in structural[:3])
    return lines
