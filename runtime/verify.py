"""Verification: a deployed model against the eager checkpoint it came from, on the same preprocessed frames.

`verify_model` is what `srg-deploy verify` runs over a few frames; `ShadowChecker` is the same comparison on every
Nth frame of a deployment (`infer --check-every`). Both judge a frame with `compare_frame` by `Gates`, which
default to the deployed model's precision (fp32: tight error bounds; fp16: cosine and agreement).
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.errors import SRGError
from srg_deploy.inputs import BoxesFile
from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.compare import OutputDiff, diff, row_cosine_min, top1_counts, triplet_hits
from srg_deploy.runtime.parity import Gates
from srg_deploy.runtime.predictor import Predictor, Prepared
from srg_deploy.runtime.sources import open_source
from srg_deploy.scene_graph import score_triplets

RECALL_AT = (20, 50, 100)
DISCRETE_OUTPUTS = ("labels", "pairs")  # sgdet outputs compared for equality, not by tolerance
AGREEMENT_LABELS = {
    "objects": "object top-1",
    "relations": "relation top-1",
    **{f"triplets@{k}": f"triplet recall@{k}" for k in RECALL_AT},
    "labels": "detection label",
}


@dataclass(frozen=True)
class SourceFrame:
    name: str  # what a boxes.json dict is keyed by: the image or video file name
    label: str  # where the frame came from, for the report
    image: np.ndarray  # BGR uint8


def read_frames(source: str | Path, limit: int) -> list[SourceFrame]:
    """The first `limit` frames of any `--source` that `infer` takes (images, a directory, a glob, a video, a
    camera or a stream), read through the same sources."""
    src = open_source(str(source), reconnect=0, notify=lambda line: None)
    frames: list[SourceFrame] = []
    try:
        with contextlib.closing(src.frames(1, threading.Event())) as stream:
            for frame in stream:
                label = frame.source if src.kind == "images" else f"{frame.source}#{frame.index}"
                frames.append(SourceFrame(frame.name, label, frame.image))
                if len(frames) >= limit:
                    break
    finally:
        src.close()
    if not frames:
        raise SRGError(f"source {source} gave no frames")
    return frames


@dataclass
class FrameCheck:
    """One frame compared. `counts` are (agreeing, total) pairs, pooled over frames by `verify_model`; `failures`
    hold what this frame alone fails (errors, cosine, detection counts); agreement is judged by the caller."""

    diffs: dict[str, OutputDiff] = field(default_factory=dict)
    feature_cosine_min: float = 1.0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    detections: tuple[int, int] | None = None  # (deployed, reference) in sgdet mode
    failures: list[str] = field(default_factory=list)


def compare_frame(
    inputs: dict[str, np.ndarray], ref: dict[str, np.ndarray], got: dict[str, np.ndarray], gates: Gates
) -> FrameCheck:
    """Judge the deployed outputs `got` against the eager `ref` for the same `inputs`."""
    check = FrameCheck()
    sgdet = "scores" in ref
    if sgdet:
        check.detections = (len(got["boxes"]), len(ref["boxes"]))
        if check.detections[0] != check.detections[1]:
            check.failures.append(f"deployed model detected {check.detections[0]} objects, eager {check.detections[1]}")
            return check
        if not np.array_equal(ref["pairs"], got["pairs"]):
            check.failures.append("pairs: the deployed model chose other region pairs than eager")
            return check
        check.counts["labels"] = (int((ref["labels"] == got["labels"]).sum()), len(ref["labels"]))
    check.diffs = {n: diff(n, ref[n], got[n]) for n in ref if n not in DISCRETE_OUTPUTS}
    check.failures.extend(f for f in map(gates.output_failure, check.diffs.values()) if f)
    check.feature_cosine_min = row_cosine_min(ref["features"], got["features"])
    if gates.min_cosine is not None:
        if not check.feature_cosine_min >= gates.min_cosine:
            check.failures.append(
                f"features: min per-region cosine {check.feature_cosine_min:.6f} < {gates.min_cosine}"
            )
        for d in check.diffs.values():
            if d.name != "features" and not d.cosine >= gates.min_cosine:
                check.failures.append(f"{d.name}: cosine {d.cosine:.6f} < {gates.min_cosine}")
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


def gates_dict(gates: Gates) -> dict[str, float | None]:
    return {
        "atol": gates.atol,
        "rtol": gates.max_rel,
        "min_cosine": gates.min_cosine,
        "min_agreement": gates.min_agreement,
    }


def same_model_config(deployed: SRGConfig, reference: SRGConfig) -> None:
    """A deployed model is only comparable with the checkpoint it was exported from: same architecture,
    preprocessing, detector and vocabularies (seed and provenance may differ)."""
    a, b = deployed.to_dict(), reference.to_dict()
    differ = [k for k in ("architecture", "preprocessing", "detector", "objects", "predicates") if a[k] != b[k]]
    if differ:
        raise SRGError(
            f"the reference checkpoint's config differs from the deployed model's in {', '.join(differ)};"
            " verify against the checkpoint the model was exported from"
        )


def percentiles(values: list[float]) -> dict[str, float]:
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95))}


@dataclass
class VerifyReport:
    """Everything `verify` found; `to_dict` is the JSON report."""

    deployed: str
    reference: str
    precision: str
    mode: str
    gates: Gates
    frames: list[dict] = field(default_factory=list)
    outputs: dict[str, dict[str, float]] = field(default_factory=dict)  # worst over frames
    feature_cosine_min: float = 1.0
    counts: dict[str, tuple[int, int]] = field(default_factory=dict)
    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {"deployed": [], "reference": []})
    failures: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return not self.failures

    @property
    def agreement(self) -> dict[str, float]:
        return rates(self.counts)

    @property
    def latency(self) -> dict[str, dict[str, float]]:
        out = {name: percentiles(v) for name, v in self.latency_ms.items() if v}
        if len(out) == 2 and out["deployed"]["p50"] > 0:
            out["speedup"] = {"p50": out["reference"]["p50"] / out["deployed"]["p50"]}
        return out

    def to_dict(self) -> dict:
        return finite(
            {
                "passed": bool(self),
                "failures": self.failures,
                "deployed": self.deployed,
                "reference": self.reference,
                "precision": self.precision,
                "mode": self.mode,
                "gates": gates_dict(self.gates),
                "frames": len(self.frames),
                "outputs": self.outputs,
                "feature_cosine_min": self.feature_cosine_min,
                "agreement": self.agreement,
                "agreement_counts": {k: list(v) for k, v in self.counts.items()},
                "latency_ms": self.latency,
                "per_frame": self.frames,
            }
        )


def finite(value: object) -> object:
    """JSON has no NaN or infinity: such values become null (the failure message says what happened)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def verify_model(
    deployed: Backend,
    reference: Backend,
    frames: list[SourceFrame],
    boxes: BoxesFile | None,
    gates: Gates,
    warmup: int = 1,
) -> VerifyReport:
    """Preprocess each frame once, run both backends on the same inputs, and judge the deployed one.

    Latency is each backend's `run` alone, after `warmup` untimed runs of the first frame. Each backend runs all
    frames in turn rather than alternating, so one runtime's idle worker threads (ONNX Runtime spins after a run)
    do not slow the other down."""
    if not frames:
        raise SRGError("no frames to verify")
    same_model_config(deployed.config, reference.config)
    report = VerifyReport(deployed.describe(), reference.describe(), deployed.precision, deployed.mode, gates)
    predictor = Predictor(deployed)
    prepared = [predictor.prepare(f.image, boxes.for_source(f.name) if boxes else None) for f in frames]
    results: dict[str, list[dict[str, np.ndarray]]] = {}
    for name, backend in (("deployed", deployed), ("reference", reference)):
        for _ in range(warmup):
            backend.run(prepared[0].inputs)
        results[name] = []
        for p in prepared:
            t0 = time.perf_counter()
            results[name].append(backend.run(p.inputs))
            report.latency_ms[name].append((time.perf_counter() - t0) * 1e3)
    for index, (frame, p, got, ref) in enumerate(zip(frames, prepared, results["deployed"], results["reference"])):
        check = compare_frame(p.inputs, ref, got, gates)
        report.failures.extend(f"frame {index} ({frame.label}): {f}" for f in check.failures)
        pool(report.counts, check.counts)
        report.feature_cosine_min = min(report.feature_cosine_min, check.feature_cosine_min)
        for d in check.diffs.values():
            worst = report.outputs.setdefault(d.name, {"max_abs": 0.0, "max_rel": 0.0, "cosine_min": 1.0})
            worst["max_abs"] = max(worst["max_abs"], d.max_abs)
            worst["max_rel"] = max(worst["max_rel"], d.max_rel)
            worst["cosine_min"] = min(worst["cosine_min"], d.cosine)
        report.frames.append(
            {
                "frame": index,
                "source": frame.label,
                "passed": not check.failures,
                "failures": check.failures,
                "detections": check.detections,
                "outputs": {
                    d.name: {"shape": list(d.shape_got), "max_abs": d.max_abs, "max_rel": d.max_rel, "cosine": d.cosine}
                    for d in check.diffs.values()
                },
                "latency_ms": {name: report.latency_ms[name][index] for name in ("deployed", "reference")},
            }
        )
    report.failures.extend(agreement_failures(report.counts, gates))
    return report


class ShadowChecker:
    """Shadow verification while deploying: every `every`-th frame is re-run through the eager `reference` on the
    inputs the deployed model got, and judged by `gates`. `maybe_check` returns the drift to put in that frame's
    record; `summary` is the run's account. It keeps counters and worst values only, so it is bounded for a
    camera that runs for weeks."""

    def __init__(self, reference: Backend, every: int, gates: Gates) -> None:
        if every < 1:
            raise SRGError(f"--check-every must be >= 1; got {every}")
        self.reference, self.every, self.gates = reference, every, gates
        self.checked = 0
        self.failed = 0
        self.failed_frames: list[int] = []  # the first ten, for the summary
        self.first_failure: str | None = None
        self.worst_max_rel: dict[str, float] = {}
        self.feature_cosine_min = 1.0
        self.counts: dict[str, tuple[int, int]] = {}

    def due(self, frame_index: int) -> bool:
        return frame_index % self.every == 0

    def maybe_check(self, frame_index: int, prepared: Prepared, outputs: dict[str, np.ndarray]) -> dict | None:
        """The drift of this frame (None when it is not due): errors, cosine, agreement, pass/fail."""
        if not self.due(frame_index):
            return None
        t0 = time.perf_counter()
        ref = self.reference.run(prepared.inputs)
        reference_ms = (time.perf_counter() - t0) * 1e3
        check = compare_frame(prepared.inputs, ref, outputs, self.gates)
        failures = check.failures + agreement_failures(check.counts, self.gates)
        self.checked += 1
        pool(self.counts, check.counts)
        self.feature_cosine_min = min(self.feature_cosine_min, check.feature_cosine_min)
        for d in check.diffs.values():
            self.worst_max_rel[d.name] = max(self.worst_max_rel.get(d.name, 0.0), d.max_rel)
        if failures:
            self.failed += 1
            if len(self.failed_frames) < 10:
                self.failed_frames.append(frame_index)
            self.first_failure = self.first_failure or f"frame {frame_index}: {failures[0]}"
        return finite(
            {
                "passed": not failures,
                "failures": failures,
                "max_rel": {d.name: d.max_rel for d in check.diffs.values()},
                "cosine": {d.name: d.cosine for d in check.diffs.values()},
                "feature_cosine_min": check.feature_cosine_min,
                "agreement": rates(check.counts),
                "reference_ms": round(reference_ms, 3),
            }
        )

    def finish(self) -> str:
        """Release the reference and account for the run: one line when every checked frame was within the gates,
        else `SRGError` (the caller's records stay written)."""
        self.reference.close()
        summary = self.summary()
        if summary["failed"]:
            raise SRGError(
                f"shadow check: {summary['failed']} of {summary['checked']} checked frames drift beyond the gates"
                f" (first: {summary['first_failure']})"
            )
        worst = max(summary["worst_max_rel"].items(), key=lambda kv: kv[1], default=("-", 0.0))
        return (
            f"shadow check: {summary['checked']} frames re-run through eager (every {self.every}); worst max rel"
            f" {worst[1]:.2e} ({worst[0]}), relation agreement {summary['agreement'].get('relations', 1.0):.1%}"
        )

    def summary(self) -> dict:
        return finite(
            {
                "every": self.every,
                "checked": self.checked,
                "failed": self.failed,
                "failed_frames": self.failed_frames,
                "first_failure": self.first_failure,
                "worst_max_rel": self.worst_max_rel,
                "feature_cosine_min": self.feature_cosine_min,
                "agreement": rates(self.counts),
                "gates": gates_dict(self.gates),
            }
        )


def open_shadow_checker(deployed: Backend, reference: Path, every: int, max_pairs: int | None = None) -> ShadowChecker:
    """The eager `reference` checkpoint for `deployed`, judged by the gates of the deployed model's precision."""
    from srg_deploy.runtime.loader import open_backend

    eager = open_backend(reference, "torch", mode=deployed.mode, max_pairs=deployed.max_pairs or max_pairs)
    same_model_config(deployed.config, eager.config)
    return ShadowChecker(eager, every, Gates.for_precision(deployed.precision))


def gates_from_options(
    precision: str,
    atol: float | None = None,
    rtol: float | None = None,
    min_cosine: float | None = None,
    min_agreement: float | None = None,
) -> Gates:
    """The precision's default gates with any threshold the user set replacing its default."""
    base = asdict(Gates.for_precision(precision))
    given = {"atol": atol, "max_rel": rtol, "min_cosine": min_cosine, "min_agreement": min_agreement}
    return Gates(**{**base, **{k: v for k, v in given.items() if v is not None}})
