"""Verification: a deployed model against its reference on the same inputs, judged by srg_deploy.validate.

The reference is either a live backend (the eager checkpoint, or the fp32 ONNX when judging an fp16 conversion)
or a golden file recorded from one (validate/golden.py), which needs no PyTorch. `verify` runs a list of cases
through both; `ShadowChecker` is the same judgement on every Nth frame of a deployment (`infer --check-every`).
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.contract import COMPUTATION_KEYS, config_fingerprint
from srg_deploy.errors import SRGError
from srg_deploy.inputs import BoxesFile
from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.predictor import Predictor, Prepared
from srg_deploy.runtime.sources import open_source
from srg_deploy.validate.cases import Case
from srg_deploy.validate.gates import Gates
from srg_deploy.validate.golden import Golden
from srg_deploy.validate.render import failure_text
from srg_deploy.validate.verdict import Verdict, agreement_failures, finite, judge_frame, pool, rates


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


def cases_from_frames(backend: Backend, frames: list[SourceFrame], boxes: BoxesFile | None) -> list[Case]:
    """Each frame preprocessed once, as `infer` would for `backend` (the same inputs go to both models)."""
    predictor = Predictor(backend)
    return [
        Case(f.label, predictor.prepare(f.image, boxes.for_source(f.name) if boxes else None).inputs) for f in frames
    ]


def same_model_config(deployed: SRGConfig, reference: SRGConfig) -> None:
    """A deployed model is only comparable with the model it was exported from: same architecture,
    preprocessing, detector and vocabularies (seed and provenance may differ)."""
    if config_fingerprint(deployed.to_dict()) != config_fingerprint(reference.to_dict()):
        a, b = deployed.to_dict(), reference.to_dict()
        differ = [k for k in COMPUTATION_KEYS if a[k] != b[k]]
        raise SRGError(
            f"the reference's config differs from the deployed model's in {', '.join(differ)};"
            " verify against the checkpoint the model was exported from"
        )


def timed_runs(backend: Backend, cases: list[Case], warmup: int) -> tuple[list[dict[str, np.ndarray]], list[float]]:
    """Outputs and milliseconds of `backend.run` on each case, after `warmup` untimed runs of the first. One backend
    runs all cases in turn (no alternating), so one runtime's idle worker threads do not slow the other down."""
    for _ in range(warmup):
        backend.run(cases[0].inputs)
    outputs, times = [], []
    for case in cases:
        t0 = time.perf_counter()
        outputs.append(backend.run(case.inputs))
        times.append((time.perf_counter() - t0) * 1e3)
    return outputs, times


def verify(
    deployed: Backend, reference: Backend | Golden, gates: Gates, cases: list[Case] | None = None, warmup: int = 1
) -> Verdict:
    """Judge `deployed` against `reference` on `cases` (a golden file brings its own)."""
    if isinstance(reference, Golden):
        reference.check_fits(deployed)
        return judge_runs(
            deployed, reference.cases, reference.outputs, reference.latency_ms, reference.describe(), gates
        )
    same_model_config(deployed.config, reference.config)
    if not cases:
        raise SRGError("no frames to verify")
    ref_outputs, ref_times = timed_runs(reference, cases, warmup)
    return judge_runs(deployed, cases, ref_outputs, ref_times, reference.describe(), gates, warmup)


def judge_runs(
    deployed: Backend,
    cases: list[Case],
    ref_outputs: list[dict[str, np.ndarray]],
    ref_times: list[float],
    reference: str,
    gates: Gates,
    warmup: int = 1,
) -> Verdict:
    """Run `deployed` on `cases` and judge each against the reference's outputs for the same case."""
    got_outputs, got_times = timed_runs(deployed, cases, warmup)
    verdict = Verdict(deployed.describe(), reference, gates, deployed.mode)
    for k, (case, ref, got) in enumerate(zip(cases, ref_outputs, got_outputs)):
        latency = {"deployed": got_times[k]} | ({"reference": ref_times[k]} if k < len(ref_times) else {})
        verdict.add(case.label, judge_frame(case.inputs, ref, got, gates), latency)
    return verdict.finish()


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
        self.region_cosine_min = 1.0
        self.agreements: dict = {}

    def due(self, frame_index: int) -> bool:
        return frame_index % self.every == 0

    def maybe_check(self, frame_index: int, prepared: Prepared, outputs: dict[str, np.ndarray]) -> dict | None:
        """The drift of this frame (None when it is not due): errors, cosine, agreement, pass/fail."""
        if not self.due(frame_index):
            return None
        t0 = time.perf_counter()
        ref = self.reference.run(prepared.inputs)
        reference_ms = (time.perf_counter() - t0) * 1e3
        check = judge_frame(prepared.inputs, ref, outputs, self.gates)
        failures = [failure_text(f) for f in check.failures + agreement_failures(check.agreement, self.gates)]
        self.checked += 1
        pool(self.agreements, check.agreement)
        self.region_cosine_min = min(self.region_cosine_min, check.region_cosine_min)
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
                "scale_error": {d.name: d.scale_error for d in check.diffs.values()},
                "region_cosine_min": check.region_cosine_min,
                "agreement": rates(check.agreement),
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
            f"shadow check: {summary['checked']} frames re-run through the reference (every {self.every}); worst max"
            f" rel {worst[1]:.2e} ({worst[0]}), relation agreement {summary['agreement'].get('relations', 1.0):.1%}"
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
                "region_cosine_min": self.region_cosine_min,
                "agreement": rates(self.agreements),
                "gates": self.gates.to_dict(),
            }
        )


def open_shadow_checker(deployed: Backend, reference: Path, every: int, max_pairs: int | None = None) -> ShadowChecker:
    """The eager `reference` checkpoint for `deployed`, judged by the gates of the deployed model's precision."""
    from srg_deploy.runtime.loader import open_backend

    if Path(reference).suffix == ".npz":
        raise SRGError(
            "--check-every re-runs live frames through the reference, so it needs the eager checkpoint folder;"
            " a golden file only holds recorded frames (use it with `srg-deploy verify`)"
        )
    eager = open_backend(reference, "torch", mode=deployed.mode, max_pairs=deployed.max_pairs or max_pairs)
    same_model_config(deployed.config, eager.config)
    return ShadowChecker(eager, every, Gates.for_precision(deployed.precision))
