"""Issue 7's benchmarks: eager vs ONNX Runtime (and TensorRT engines when given) on the standard workloads, a
per-stage breakdown, how cost grows with boxes N and pairs P, and what an NVIDIA Jetson AGX Orin's published
fp16 rate would allow at 50% efficiency.

    .venv/bin/python benchmarks/deploy_bench.py [--iters 3] [--warmup 1] [--engine fp32.engine --engine fp16.engine]

Full-size CPU runs take seconds per frame, so iteration counts are small; the tables say how many.
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
from _common import benchmark_model, footer, header, inputs_for, median, scratch, table

from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.bench import Workload, bench, time_interleaved
from srg_deploy.runtime.loader import open_backend
from srg_deploy.runtime.ort_backend import OrtBackend
from srg_deploy.runtime.torch_backend import TorchBackend

STANDARD = [Workload(h, w, 36, p) for h, w in ((480, 640), (600, 1000)) for p in (None, 128)]
BY_BOXES = [Workload(480, 640, n) for n in (6, 12, 24, 36)]
BY_PAIRS = [Workload(480, 640, 36, p) for p in (0, 32, 128, 256, 630)]
# NVIDIA Jetson AGX Orin 64GB (Technical Brief v1.2): GPU 170 *sparse* INT8 TOPS from 64 third-generation Tensor
# Cores at 1.3 GHz. Dense is half the sparse rate and fp16 half the INT8 rate: 42.5 TFLOPS dense fp16 (the often
# quoted 85 TFLOPS fp16 is the 2:4-sparse figure, which a dense model cannot use). DLAs not counted.
ORIN_DENSE_FP16_TFLOPS = 42.5
EFFICIENCY = 0.5


def label(w: Workload) -> str:
    return f"{w.height}x{w.width}, N={w.boxes}, P={w.num_pairs}"


def model_ms(backends: list[tuple[str, Backend]], w: Workload, iters: int, warmup: int) -> list[float]:
    """Median model-call ms of each backend on `w`, the backends taking turns."""
    calls = {}
    for name, backend in backends:
        inputs = inputs_for(backend, w)
        calls[name] = lambda backend=backend, inputs=inputs: backend.run(inputs)
    return [median(t) for t in time_interleaved(calls, iters, warmup).values()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--engine", action="append", default=[], help="TensorRT engine to add (repeatable)")
    args = parser.parse_args()
    it, wu = args.iters, args.warmup
    out = header(
        "Eager vs ONNX Runtime vs TensorRT (issue 7)",
        f"Random weights (speed does not depend on them); sizes are model input sizes (no resize); model call only"
        f" unless stated; median of {it} runs after {wu} warm-up",
    )
    if not args.engine:
        have_trt = importlib.util.find_spec("tensorrt") is not None
        out += (
            "- TensorRT: no engines given"
            + ("" if have_trt else " and TensorRT is not installed here (docs/DESIGN.md §4)")
            + "; its columns are left out. On a machine with TensorRT: `--engine model.engine --engine"
            " model_fp16.engine`.\n"
        )
    with scratch() as tmp:
        model, onnx_path = benchmark_model(tmp)
        backends: list[tuple[str, Backend]] = [("eager", TorchBackend(model)), ("ONNX Runtime", OrtBackend(onnx_path))]
        backends += [(f"TensorRT {b.precision}", b) for b in map(open_backend, args.engine)]

        rows = []
        for w in STANDARD:
            ms = model_ms(backends, w, it, wu)
            macs = w.macs(model.config)
            rows.append(
                [label(w), w.boxes + w.num_pairs, f"{macs.total / 1e9:.0f}"]
                + [f"{t:.0f}" for t in ms]
                + [f"{ms[0] / t:.2f}x" for t in ms[1:]]
            )
        names = [n for n, _ in backends]
        out += "\n### Standard workloads: model call, ms\n\n" + table(
            ["workload", "RoIs", "GMAC", *(f"{n} ms" for n in names), *(f"{n} vs eager" for n in names[1:])], rows
        )

        big = STANDARD[2]
        out += f"\n### Stages at {label(big)} (`srg-deploy bench`), ms\n\n"
        reports = [bench(b, onnx_path if n == "ONNX Runtime" else Path(tmp), big, it, wu) for n, b in backends[:2]]
        stages = [s for s in reports[1].stages() if s != "runtime_overhead"]
        rows = []
        for stage in stages:
            cells = [r.stages().get(stage) for r in reports]
            gmac = next((c["gmac"] for c in cells if c and c["gmac"] is not None), None)
            rows.append(
                [stage, "" if gmac is None else f"{gmac:.1f}"]
                + [f"{c['median_ms']:.0f}" if c else "" for c in cells]
                + [
                    f"{c['gflop_per_s']:.0f} ({c['peak_fraction']:.0%})" if c and c["gflop_per_s"] else ""
                    for c in cells
                ]
            )
        overhead = reports[1].stages().get("runtime_overhead")
        out += table(
            [
                "stage",
                "GMAC",
                "eager ms",
                "ONNX Runtime ms",
                "eager GFLOP/s (of peak)",
                "ONNX Runtime GFLOP/s (of peak)",
            ],
            rows,
        )
        out += (
            f"\nMeasured peak: {reports[0].peak_gflops:.0f} / {reports[1].peak_gflops:.0f} GFLOP/s (fp32 2048^3 torch"
            f" matmul, taken in each run); ONNX Runtime's stage times are its profiler's kernel sums"
            + (f", plus {overhead['median_ms']:.0f} ms of runtime overhead" if overhead else "")
            + "; the eager model stages are SRGNet's submodules timed one by one.\n"
        )

        ort = backends[1:2]
        out += f"\n### How cost grows (ONNX Runtime, 480x640, model call, median of {it})\n\n"
        rows, rois, times = [], [], []
        for w in BY_BOXES + BY_PAIRS:
            (t,) = model_ms(ort, w, it, wu)
            rois.append(w.boxes + w.num_pairs)
            times.append(t)
            rows.append([w.boxes, w.num_pairs, rois[-1], f"{w.macs(model.config).total / 1e9:.0f}", f"{t:.0f}"])
        out += table(["N boxes", "P pairs", "RoIs (N + P)", "GMAC", "ms"], rows)
        slope, intercept = np.polyfit(rois, times, 1)
        out += (
            f"\nLeast-squares fit: ms ≈ {intercept:.0f} + {slope:.2f} × RoIs — the trunk is the constant, every region"
            f" and every pair costs one res5 pass. All pairs grow as N²/2: at N = 36 the {630} unions are"
            f" {630 / 666:.0%} of the RoIs.\n"
        )

    out += f"\n### Edge estimate: Jetson AGX Orin 64GB at {EFFICIENCY:.0%} of {ORIN_DENSE_FP16_TFLOPS} dense fp16 TFLOPS\n\n"
    rows = []
    for w in STANDARD:
        macs = w.macs(model.config)
        gflop = 2 * macs.total / 1e9
        rows.append(
            [label(w), f"{2 * macs.trunk / 1e9:.0f}", f"{2 * macs.roi_pool5 / 1e9:.0f}", f"{gflop:.0f}",
             f"{EFFICIENCY * ORIN_DENSE_FP16_TFLOPS * 1e3 / gflop:.0f}"]
        )  # fmt: skip
    out += table(["workload", "trunk GFLOP", "RoI + pool5 GFLOP", "total GFLOP/frame", "frames/s"], rows)
    out += (
        f"\nRate: NVIDIA Jetson AGX Orin Series Technical Brief v1.2 gives the 64GB module's GPU as 170 sparse INT8"
        f" TOPS (64 Tensor Cores, 1.3 GHz); dense = sparse / 2 and fp16 = INT8 / 2, so {ORIN_DENSE_FP16_TFLOPS} TFLOPS"
        f" dense fp16 — the 85 TFLOPS fp16 sometimes quoted is the 2:4-sparse rate. FLOPs = 2 x conv and linear"
        f" MACs; an upper bound on frames/s: memory traffic, the RoI pooling kernel and pre/post-processing are not"
        f" in it.\n\n" + footer()
    )
    print(out)


if __name__ == "__main__":
    main()
