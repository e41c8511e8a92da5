"""The one judge of a deployed model against its reference: one set of gates per precision, one per-frame
comparison, one pooled verdict printed as one checklist.

Every check in srg-deploy goes through here: `export`'s parity check (ONNX Runtime vs eager), `build-engine
--fp16`'s gate (fp16 vs fp32), `verify` (against the eager checkpoint or a recorded golden file) and `infer
--check-every` (shadow checks while deploying). So two of them cannot disagree about the same pair of models.

Gates by precision (`GATES`):
- fp32: every output within max|got - ref| <= rtol x max|ref| (rtol 1e-4); top-1 and triplet agreement 100%;
  sgdet detections identical, their boxes within 0.25 px more (box coordinates pass through exp() and are scaled
  by anchors up to 512 px, so two fp32 runtimes differ by hundredths of a pixel; 0.25 px is 1/64 of a feature cell).
- fp16: cosine >= 0.999 per output, >= 0.99 per region of `features` (what fp16 itself can do: a faithful
  conversion of a BatchNorm-calibrated random model through PyTorch's `.half()` reaches ~0.994 per region on
  noise frames); |scale error| <= 0.006 per output (the systematic part of the difference, <got,ref>/<ref,ref> - 1:
  fp16 rounding stays below 0.003 on ordinary and noise frames, a conv layer scaled by 1.05 moves it by 0.011 or
  more while its cosine stays above 0.9998); agreement >= 95%; sgdet detections matched by label and IoU >= 0.5.
- int8 (`srg-deploy quantize`): cosine >= 0.95 per output, >= 0.9 per region; agreement >= 70%; no scale gate;
  sgdet detections matched. Set from what a faithful INT8 model measures against eager: a model trained on a
  generated dataset (random ResNet trunk, whose heavy-tailed activations are int8's hardest case), calibrated on 6
  of its images, measured cosine 0.977 (features) to 0.998 (object logits), worst region 0.96, top-1 and triplet
  agreement 0.79-0.81, and a systematic scale of +5% to +11% (rounding of heavy tails, hence no scale gate).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import numpy as np

from srg_deploy.contract import DISCRETE_OUTPUTS
from srg_deploy.errors import SRGError
from srg_deploy.runtime.compare import OutputDiff, diff, row_cosine_min, top1_counts, triplet_hits
from srg_deploy.scene_graph import box_iou, score_triplets

RECALL_AT = (20, 50, 100)
FP16_MAX = 65504.0
AGREEMENT_LABELS = {
    "objects": "object top-1",
    "relations": "relation top-1",
    **{f"triplets@{k}": f"triplet recall@{k}" for k in RECALL_AT},
    "labels": "detection label",
    "detections": "detections matched (label, IoU >= 0.5)",
}


@dataclass(frozen=True)
class Case:
    """The inputs of one model call, and where they came from (a frame, a sample, a golden file)."""

    label: str
    inputs: dict[str, np.ndarray]


@dataclass(frozen=True)
class Gates:
    """Pass/fail thresholds; None turns a gate off. See the module docstring for the defaults and why."""

    precision: str = "fp32"
    rtol: float | None = 1e-4  # max|got - ref| <= atol + rtol x max|ref|, per output
    atol: float | None = None
    min_cosine: float | None = None  # whole output as one vector
    min_region_cosine: float | None = None  # each region (row) of `features`
    max_scale_error: float | None = None  # |<got,ref>/<ref,ref> - 1|, per output
    min_agreement: float = 1.0  # top-1, triplet recall@K, detection labels (pooled over frames)
    match_detections: bool = False  # sgdet: compare detections matched by label and IoU, not identical lists
    box_atol_px: float | None = None  # sgdet `boxes`: pixels allowed on top of the relative bound

    @classmethod
    def for_precision(cls, precision: str, **overrides: float | None) -> Gates:
        """The precision's gates, with any threshold given (not None) replacing its default."""
        if precision not in GATES:
            raise SRGError(f"unknown precision {precision!r}; expected one of {', '.join(GATES)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown gate(s) {sorted(unknown)}")
        return dataclasses.replace(GATES[precision], **given)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def describe(self) -> str:
        rules = []
        if self.rtol is not None or self.atol is not None:
            rules.append(f"max abs error <= atol {self.atol or 0:g} + rtol {self.rtol or 0:g} x max|ref|")
        if self.min_cosine is not None:
            rules.append(f"cosine >= {self.min_cosine:g}")
        if self.min_region_cosine is not None:
            rules.append(f"region cosine >= {self.min_region_cosine:g}")
        if self.max_scale_error is not None:
            rules.append(f"|scale error| <= {self.max_scale_error:g}")
        rules.append(f"agreement >= {self.min_agreement:.0%}")
        return f"{self.precision} gates: " + ", ".join(rules)

    def output_failures(self, d: OutputDiff) -> list[str]:
        """Why output `d` fails the error, cosine and scale gates (empty when it passes)."""
        if not d.same_shape:
            return [f"{d.name}: shape {list(d.shape_got)} != reference {list(d.shape_ref)}"]
        if not math.isfinite(d.max_abs_got):
            return [f"{d.name}: the deployed model produced NaN or infinity" + _overflow_hint(self.precision)]
        failures = []
        if self.rtol is not None or self.atol is not None:
            atol = (self.atol or 0.0) + (self.box_atol_px or 0.0 if d.name == "boxes" else 0.0)
            tolerance = atol + (self.rtol or 0.0) * d.scale
            if not d.max_abs <= tolerance:
                failures.append(
                    f"{d.name}: max abs error {d.max_abs:.2e} > {tolerance:.2e} (atol {atol:g} + rtol"
                    f" {self.rtol or 0:g} x max|ref| {d.scale:.3g})"
                )
        if self.min_cosine is not None and not d.cosine >= self.min_cosine:
            failures.append(f"{d.name}: cosine {d.cosine:.6f} < {self.min_cosine}")
        if self.max_scale_error is not None and not abs(d.scale_error) <= self.max_scale_error:
            failures.append(f"{d.name}: scale error {d.scale_error:+.2%} beyond ±{self.max_scale_error:.1%}")
        return failures


GATES = {
    "fp32": Gates(box_atol_px=0.25),
    "fp16": Gates(
        precision="fp16",
        rtol=None,
        min_cosine=0.999,
        min_region_cosine=0.99,
        max_scale_error=0.006,
        min_agreement=0.95,
        match_detections=True,
    ),
    "int8": Gates(
        precision="int8",
        rtol=None,
        min_cosine=0.95,
        min_region_cosine=0.9,
        max_scale_error=None,
        min_agreement=0.7,
        match_detections=True,
    ),
}


def _overflow_hint(precision: str) -> str:
    if precision == "fp16":
        return f" (activations beyond fp16's range, {FP16_MAX:g}, overflow to infinity: keep those layers in fp32)"
    return ""


@dataclass
class FrameCheck:
    """One frame judged. `counts` are (agreeing, total) pairs that pool over frames; `failures` are what this frame
    alone fails (errors, cosine, scale, detections); agreement rates are judged on the pooled counts."""

    diffs: dict[str, OutputDiff] = field(default_factory=dict)
    region_cosine_min: float = 1.0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    detections: tuple[int, int] | None = None  # (deployed, reference) in sgdet mode
    failures: list[str] = field(default_factory=list)


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
            check.counts["detections"] = (matched, check.detections[1])
        elif check.detections[0] != check.detections[1]:
            check.failures.append(
                f"deployed model detected {check.detections[0]} objects, reference {check.detections[1]}"
            )
            return check
        elif not np.array_equal(ref["pairs"], got["pairs"]):
            check.failures.append("pairs: the deployed model chose other region pairs than the reference")
            return check
        check.counts["labels"] = (int((ref["labels"] == got["labels"]).sum()), len(ref["labels"]))
    check.diffs = {n: diff(n, ref[n], got[n]) for n in ref if n not in DISCRETE_OUTPUTS}
    for d in check.diffs.values():
        check.failures.extend(gates.output_failures(d))
    check.region_cosine_min = row_cosine_min(ref["features"], got["features"])
    if gates.min_region_cosine is not None and not check.region_cosine_min >= gates.min_region_cosine:
        check.failures.append(
            f"features/region: worst cosine {check.region_cosine_min:.6f} < {gates.min_region_cosine}"
        )
    check.counts["objects"] = top1_counts(ref["object_logits"], got["object_logits"])
    check.counts["relations"] = top1_counts(ref["relation_logits"], got["relation_logits"])
    pairs = ref["pairs"] if sgdet else inputs["pairs"]
    n = len(ref["features"])
    ref_scores, got_scores = (ref["scores"], got["scores"]) if sgdet else (np.ones(n), np.ones(n))
    ref_triplets = score_triplets(ref_scores.astype(np.float64), pairs, ref["relation_logits"], max(RECALL_AT))
    got_triplets = score_triplets(got_scores.astype(np.float64), pairs, got["relation_logits"], max(RECALL_AT))
    for k in RECALL_AT:
        check.counts[f"triplets@{k}"] = triplet_hits(ref_triplets, got_triplets, k)
    return check


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


def rates(counts: dict[str, tuple[int, int]]) -> dict[str, float]:
    """Agreement fractions; 1.0 where there was nothing to agree on."""
    return {name: (hit / total if total else 1.0) for name, (hit, total) in counts.items()}


def agreement_failures(counts: dict[str, tuple[int, int]], gates: Gates) -> list[str]:
    return [
        f"{AGREEMENT_LABELS[name]} agreement {rate:.1%} < {gates.min_agreement:.0%}"
        for name, rate in rates(counts).items()
        if not rate >= gates.min_agreement
    ]


def pool(total: dict[str, tuple[int, int]], counts: dict[str, tuple[int, int]]) -> None:
    for name, (hit, n) in counts.items():
        h0, n0 = total.get(name, (0, 0))
        total[name] = (h0 + hit, n0 + n)


@dataclass
class Check:
    """One line of the checklist."""

    passed: bool
    text: str


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
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"deployed": [], "reference": []})
    _output_failed: set[str] = field(default_factory=set)

    def __bool__(self) -> bool:
        return not self.failures

    def add(self, label: str, check: FrameCheck, latency_ms: dict[str, float] | None = None) -> None:
        """Fold one frame's check in."""
        index = len(self.frames)
        self.failures.extend(f"frame {index} ({label}): {f}" for f in check.failures)
        self._output_failed.update(f.split(":", 1)[0] for f in check.failures)
        pool(self.counts, check.counts)
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
                "failures": check.failures,
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
                "latency_ms": latency_ms or {},
            }
        )

    def finish(self) -> Verdict:
        """Judge the pooled agreement once every frame is in."""
        self.failures.extend(agreement_failures(self.counts, self.gates))
        return self

    @property
    def agreement(self) -> dict[str, float]:
        return rates(self.counts)

    @property
    def latency(self) -> dict[str, dict[str, float]]:
        out = {name: percentiles(v) for name, v in self.latency_ms.items() if v}
        if len(out) == 2 and out["deployed"]["p50"] > 0:
            out["speedup"] = {"p50": out["reference"]["p50"] / out["deployed"]["p50"]}
        return out

    def checklist(self) -> list[Check]:
        """One line per output, the per-region cosine, each agreement, in that order."""
        g = self.gates
        lines = []
        for name, worst in self.outputs.items():
            parts = [f"max abs {worst['max_abs']:.2e}", f"max rel {worst['max_rel']:.2e}"]
            if g.rtol is not None or g.atol is not None:
                extra = (g.atol or 0.0) + (g.box_atol_px or 0.0 if name == "boxes" else 0.0)
                parts[-1] += f" (rtol {g.rtol or 0:g}" + (f", atol {extra:g})" if extra else ")")
            parts.append(f"cosine {worst['cosine_min']:.7f}" + (f" (>= {g.min_cosine:g})" if g.min_cosine else ""))
            parts.append(
                f"scale error {worst['scale_error']:+.2e}"
                + (f" (±{g.max_scale_error:g})" if g.max_scale_error is not None else "")
            )
            lines.append(Check(name not in self._output_failed, f"{name:<16} " + ", ".join(parts)))
        if self.outputs:
            passed = g.min_region_cosine is None or self.region_cosine_min >= g.min_region_cosine
            bound = f" (>= {g.min_region_cosine:g})" if g.min_region_cosine is not None else ""
            lines.append(Check(passed, f"{'features/region':<16} worst cosine {self.region_cosine_min:.7f}{bound}"))
        for name, (hit, total) in self.counts.items():
            rate = hit / total if total else 1.0
            lines.append(
                Check(
                    rate >= g.min_agreement,
                    f"{AGREEMENT_LABELS[name]} agreement {rate:.1%} ({hit}/{total}, >= {g.min_agreement:.0%})",
                )
            )
        structural = [f for f in self.failures if "detected" in f or "pairs:" in f or "shape" in f]
        lines.extend(Check(False, f) for f in structural[:3])
        return lines

    def to_dict(self) -> dict:
        return finite(
            {
                "passed": bool(self),
                "failures": self.failures,
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
                "latency_ms": self.latency,
                "per_frame": self.frames,
            }
        )


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


def finite(value: object) -> object:
    """JSON has no NaN or infinity: such values become null (the failure message says what happened)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value
