"""The one judgement of a deployed model against its reference: each frame judged (`judge_frame`), frames pooled
into a `Verdict` that holds typed `Failure`s and is truthy only when every gate passed.

Every check in srg-deploy goes through here: `export`'s parity check (ONNX Runtime vs eager), `build-engine
--fp16`'s gate (fp16 vs fp32), `quantize`'s int8 models under `verify`, `verify` (against the eager checkpoint or a
recorded golden file) and `infer --check-every` (shadow checks while deploying). So two of them cannot disagree
about the same pair of models. Text is made from the verdict by render.py, at the edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from srg_deploy.contract import DISCRETE_OUTPUTS
from srg_deploy.validate.compare import (
    Agreement,
    OutputDiff,
    align_detections,
    diff,
    row_cosine_min,
    top1_agreement,
    triplet_agreement,
)
from srg_deploy.validate.failures import AGREEMENT, DETECTIONS, PAIRS, REGION_COSINE, Failure
from srg_deploy.validate.gates import Gates


@dataclass
class FrameCheck:
    """One frame judged. `agreement` pools over frames; `failures` are what this frame alone fails (errors,
    cosine, scale, detections); agreement rates are judged on the pooled counts."""

    diffs: dict[str, OutputDiff] = field(default_factory=dict)
    region_cosine_min: float = 1.0
    agreement: dict[str, Agreement] = field(default_factory=dict)
    detections: tuple[int, int] | None = None  # (deployed, reference) in sgdet mode
    failures: list[Failure] = field(default_factory=list)


def judge_frame(
    inputs: dict[str, np.ndarray], ref: dict[str, np.ndarray], got: dict[str, np.ndarray], gates: Gates
) -> FrameCheck:
    """Judge the deployed outputs `got` against the reference `ref` for the same `inputs`."""
    check = FrameCheck()
    sgdet = "scores" in ref
    if sgdet:
        check.detections = (len(got["boxes"]), len(ref["boxes"]))
        if gates.match_detections:
            ref, got, matched = align_detections(ref, got)
            check.agreement["detections"] = Agreement(matched, check.detections[1])
        elif check.detections[0] != check.detections[1]:
            check.failures.append(Failure("boxes", DETECTIONS, check.detections[0], check.detections[1]))
            return check
        elif not np.array_equal(ref["pairs"], got["pairs"]):
            check.failures.append(Failure("pairs", PAIRS))
            return check
        check.agreement["labels"] = Agreement(int((ref["labels"] == got["labels"]).sum()), len(ref["labels"]))
    check.diffs = {n: diff(n, ref[n], got[n]) for n in ref if n not in DISCRETE_OUTPUTS}
    for d in check.diffs.values():
        check.failures.extend(gates.output_failures(d))
    check.region_cosine_min = row_cosine_min(ref["features"], got["features"])
    if gates.min_region_cosine is not None and not check.region_cosine_min >= gates.min_region_cosine:
        check.failures.append(
            Failure("features/region", REGION_COSINE, check.region_cosine_min, gates.min_region_cosine)
        )
    check.agreement["objects"] = top1_agreement(ref["object_logits"], got["object_logits"])
    check.agreement["relations"] = top1_agreement(ref["relation_logits"], got["relation_logits"])
    if ref["relation_logits"].shape == got["relation_logits"].shape:
        pairs = ref["pairs"] if sgdet else inputs["pairs"]
        n = len(ref["features"])
        ref_scores, got_scores = (ref["scores"], got["scores"]) if sgdet else (np.ones(n), np.ones(n))
        if len(ref_scores) == len(got_scores):
            check.agreement |= triplet_agreement(
                pairs, ref_scores, got_scores, ref["relation_logits"], got["relation_logits"]
            )
    return check


def agreement_failures(agreement: dict[str, Agreement], gates: Gates) -> list[Failure]:
    """The pooled agreements below the gate."""
    return [
        Failure(name, AGREEMENT, a.rate, gates.min_agreement, f"{a.hits}/{a.total}")
        for name, a in agreement.items()
        if not a.rate >= gates.min_agreement
    ]


def pool(total: dict[str, Agreement], agreement: dict[str, Agreement]) -> None:
    for name, a in agreement.items():
        total.setdefault(name, Agreement()).add(a)


def rates(agreement: dict[str, Agreement]) -> dict[str, float]:
    """Gated agreement fractions (near ties agree); 1.0 where there was nothing to agree on."""
    return {name: a.rate for name, a in agreement.items()}


@dataclass
class Verdict:
    """Every frame judged, pooled: worst value per output, pooled agreement, failures and per-frame details.
    Truthy only when every gate passed."""

    deployed: str
    reference: str
    gates: Gates
    mode: str
    frames: list[dict] = field(default_factory=list)
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)  # worst over frames
    region_cosine_min: float = 1.0
    agreements: dict[str, Agreement] = field(default_factory=dict)
    failures: list[Failure] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"deployed": [], "reference": []})

    def __bool__(self) -> bool:
        return not self.failures

    def add(self, label: str, check: FrameCheck, latency_ms: dict[str, float] | None = None) -> None:
        """Fold one frame's check in."""
        index = len(self.frames)
        self.failures.extend(f.at(index, label) for f in check.failures)
        pool(self.agreements, check.agreement)
        self.region_cosine_min = min(self.region_cosine_min, check.region_cosine_min)
        for d in check.diffs.values():
            worst = self.outputs.setdefault(
                d.name, {"max_abs": 0.0, "max_rel": 0.0, "cosine_min": 1.0, "scale_error": 0.0}
            )
            worst["max_abs"] = max(worst["max_abs"], d.max_abs)
            worst["max_rel"] = max(worst["max_rel"], d.max_rel)
            worst["cosine_min"] = min(worst["cosine_min"], d.cosine)
            if not abs(d.scale_error) <= abs(worst["scale_error"]):
                worst["scale_error"] = d.scale_error
        for name, ms in (latency_ms or {}).items():
            self.latency_ms[name].append(ms)
        self.frames.append(
            {
                "frame": index,
                "source": label,
                "passed": not check.failures,
                "failures": [f.to_dict() for f in check.failures],
                "detections": check.detections,
                "outputs": {
                    d.name: {
                        "shape": list(d.shape_got),
                        "max_abs": d.max_abs,
                        "max_rel": d.max_rel,
                        "cosine": d.cosine,
                        "scale_error": d.scale_error,
                    }
                    for d in check.diffs.values()
                },
                "region_cosine_min": check.region_cosine_min,
                "near_ties": {n: a.near_ties for n, a in check.agreement.items() if a.near_ties},
                "latency_ms": latency_ms or {},
            }
        )

    def finish(self) -> Verdict:
        """Judge the pooled agreement once every frame is in."""
        self.failures.extend(agreement_failures(self.agreements, self.gates))
        return self

    def failed(self, output: str) -> bool:
        """Whether any failure names `output`."""
        return any(f.output == output for f in self.failures)

    @property
    def counts(self) -> dict[str, tuple[int, int]]:
        """(agreeing including near ties, total) per agreement."""
        return {name: (a.hits, a.total) for name, a in self.agreements.items()}

    @property
    def agreement(self) -> dict[str, float]:
        return rates(self.agreements)

    @property
    def latency(self) -> dict[str, dict[str, float]]:
        out = {name: percentiles(v) for name, v in self.latency_ms.items() if v}
        if len(out) == 2 and out["deployed"]["p50"] > 0:
            out["speedup"] = {"p50": out["reference"]["p50"] / out["deployed"]["p50"]}
        return out

    def to_dict(self) -> dict:
        from srg_deploy.validate.render import failure_text

        return finite(
            {
                "passed": bool(self),
                "failures": [failure_text(f) for f in self.failures],
                "failure_records": [f.to_dict() for f in self.failures],
                "deployed": self.deployed,
                "reference": self.reference,
                "precision": self.gates.precision,
                "mode": self.mode,
                "gates": self.gates.to_dict(),
                "frames": len(self.frames),
                "outputs": self.outputs,
                "region_cosine_min": self.region_cosine_min,
                "agreement": self.agreement,
                "agreement_counts": {k: list(v) for k, v in self.counts.items()},
                "near_ties": {
                    name: {"flips": a.near_ties, "worst_margin": a.worst_margin, "band": a.band}
                    for name, a in self.agreements.items()
                },
                "latency_ms": self.latency,
                "per_frame": self.frames,
            }
        )


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def finite(value: object) -> object:
    """JSON has no NaN or infinity: such values become null (the failure record says what happened)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
