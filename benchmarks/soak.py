"""Soak: N frames of the synthetic source through the real pipeline (capture thread, model, writer thread, JSONL +
video + graph PNG sinks), with resident memory (VmRSS) sampled at regular intervals. Fails (exit 1) if memory
grows by more than --max-growth-mib between the end of warm-up and the end of the run.

The model is the real architecture (ResNet-101 trunk, RoI pooling, pool5, relation head) with seeded weights and
frames resized to 32..48 px, so the run measures the pipeline's memory behaviour, not the trunk's speed.

    python benchmarks/soak.py --frames 10000 --backend onnxruntime      # the figure in benchmarks/RESULTS.md
    python benchmarks/soak.py --frames 2000 --backend torch --json-out soak.json

tests/test_soak.py runs `soak()` at 1,000 frames on the same model through ONNX Runtime on every test run.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from srg_deploy.checkpoint import random_model, save_checkpoint
from srg_deploy.config import Preprocessing, SRGConfig
from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.loader import open_backend
from srg_deploy.runtime.pipeline import Options, Pipeline
from srg_deploy.runtime.predictor import Predictor
from srg_deploy.runtime.sinks import GraphSink, JsonlSink, VideoSink
from srg_deploy.runtime.sources import open_source
from srg_deploy.runtime.stats import rss_mib

WARM_UP = 0.2  # the first 20% of frames fill allocator pools, caches and encoder buffers


class RssProbe:
    """A sink that records (frames written, VmRSS MiB) every `every` frames: it sees exactly what the writer
    thread has finished, so the samples line up with the work done."""

    def __init__(self, every: int) -> None:
        self.every, self.seen = every, 0
        self.samples: list[tuple[int, float]] = []

    def write(self, record: dict, image: np.ndarray | None = None) -> None:
        self.seen += 1
        if self.seen % self.every == 0:
            self.samples.append((self.seen, rss_mib() or 0.0))

    def close(self, ok: bool = True) -> None:
        """Nothing to finalise."""

    def describe(self) -> str:
        return f"{len(self.samples)} RSS samples"


def build_model(workdir: Path, backend: str) -> Path:
    config = dataclasses.replace(SRGConfig(), preprocessing=Preprocessing(min_size=32, max_size=48))
    model = random_model(config, seed=0)
    if backend == "torch":
        save_checkpoint(model, workdir / "ckpt")
        return workdir / "ckpt"
    from srg_deploy.export.onnx_export import onnx_from_model

    path = workdir / "model.onnx"
    path.write_bytes(onnx_from_model(model, "boxes").SerializeToString())
    return path


def soak(frames: int, size: str, runner: Backend, samples: int, workdir: Path) -> dict:
    """Run `frames` synthetic frames through the pipeline on `runner`; RSS samples and their growth."""
    source = open_source(f"synthetic:{size}")
    boxes = np.asarray(source.scene.regions()[:2])  # two objects: one pair, both directions through the relation head
    probe = RssProbe(max(1, frames // samples))
    sinks = [
        JsonlSink(workdir / "out.jsonl"),
        VideoSink(workdir / "out.mp4", fps=30.0),
        GraphSink(workdir / "graphs", every=500),
        probe,
    ]
    pipeline = Pipeline(
        source, Predictor(runner), sinks, boxes_for=lambda frame: boxes, options=Options(max_frames=frames)
    )
    stats = pipeline.run()
    settled = [s for s in probe.samples if s[0] >= WARM_UP * frames]
    counts, rss = np.array([s[0] for s in settled], float), np.array([s[1] for s in settled])
    quarter = max(1, len(rss) // 4)
    # Medians of the first and last quarter of the settled samples: a leak moves the whole curve up, while a
    # sample that happens to land on a transient allocation (a frame in flight, an encoder buffer) does not count.
    growth = float(np.median(rss[-quarter:]) - np.median(rss[:quarter]))
    slope = float(np.polyfit(counts, rss, 1)[0]) * 1000 if len(settled) >= 2 else 0.0
    return {
        "frames": stats.processed,
        "size": size,
        "backend": stats.backend,
        "fps": round(stats.fps, 2),
        "seconds": round(stats.elapsed_s, 1),
        "model_p50_ms": round(stats.stages["model"].percentile(50) or 0.0, 2),
        "samples": [{"frames": n, "rss_mib": round(m, 1)} for n, m in probe.samples],
        "rss_after_warm_up_mib": round(float(rss[0]), 1),
        "rss_end_mib": round(float(rss[-1]), 1),
        "growth_mib": round(growth, 2),
        "max_minus_min_mib": round(float(rss.max() - rss.min()), 1),
        "slope_mib_per_1000_frames": round(slope, 3),
        "outputs": [sink.describe() for sink in sinks[:3]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=10_000)
    parser.add_argument("--size", default="160x120", help="synthetic frame size, WxH")
    parser.add_argument("--backend", choices=("torch", "onnxruntime"), default="torch")
    parser.add_argument("--samples", type=int, default=20, help="RSS samples over the run")
    parser.add_argument("--max-growth-mib", type=float, default=16.0)
    parser.add_argument("--json-out", type=Path, help="also write the result as JSON here")
    args = parser.parse_args(argv)
    if args.frames < 10 or args.samples < 5:
        parser.error("need at least 10 frames and 5 samples")
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="srg-soak-") as tmp:
        workdir = Path(tmp)
        runner = open_backend(build_model(workdir, args.backend), args.backend)
        try:
            result = soak(args.frames, args.size, runner, args.samples, workdir)
        finally:
            runner.close()
    result["passed"] = result["growth_mib"] <= args.max_growth_mib
    result["max_growth_mib"] = args.max_growth_mib
    print(f"soak: {result['frames']} frames of synthetic:{args.size} on {result['backend']}")
    print(f"      {result['fps']} fps end to end, model p50 {result['model_p50_ms']} ms, {result['seconds']} s")
    print(f"{'frames':>8} {'VmRSS MiB':>10}")
    for sample in result["samples"]:
        print(f"{sample['frames']:>8} {sample['rss_mib']:>10.1f}")
    print(
        f"after warm-up ({WARM_UP:.0%}): {result['rss_after_warm_up_mib']} MiB -> end {result['rss_end_mib']} MiB; "
        f"growth (median of last quarter - median of first quarter) {result['growth_mib']} MiB "
        f"(limit {args.max_growth_mib}); spread {result['max_minus_min_mib']} MiB; "
        f"linear fit {result['slope_mib_per_1000_frames']} MiB per 1000 frames"
    )
    print(f"outputs: {'; '.join(result['outputs'])}; total {time.perf_counter() - started:.0f} s")
    print("PASS" if result["passed"] else "FAIL: memory grows")
    if args.json_out:
        args.json_out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if result["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
