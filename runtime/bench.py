"""Per-stage latency and FLOPs of one model on a synthetic workload: how far each stage is from the machine's limit.

Stages: preprocess, trunk (conv1..layer3), roi_pool5 (union boxes, RoI pooling, res5, mean), heads (object and
relation), postprocess (triplets, spatial graph, record), end_to_end (one `Predictor.predict` call). preprocess,
the whole model call and postprocess come from `Predictor.predict`'s own timing; the split of the model call
depends on the backend (see `METHODS`). FLOPs are 2 x the multiply-accumulates of every convolution and linear
layer, from the model's actual shapes; batch norm, ReLU, pooling and additions are not counted.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.defaults import TOP_K
from srg_deploy.errors import SRGError
from srg_deploy.runtime import macs
from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.macs import MacCount
from srg_deploy.runtime.predictor import Predictor
from srg_deploy.synthetic import sample_frame

STAGES = ("preprocess", "trunk", "roi_pool5", "heads", "runtime_overhead", "model", "postprocess", "end_to_end")
METHODS = {
    "torch": "trunk, roi_pool5 and heads: SRGNet.trunk, .pool_regions and .heads called in turn and timed each",
    "onnxruntime": (
        "trunk, roi_pool5 and heads: kernel times from ONNX Runtime's profiler (SessionOptions.enable_profiling) in a"
        " second session of the same file, split by execution order: nodes before the RoI pooling node -> trunk"
        " (the union-box arithmetic, a few microseconds, falls here too), the RoI pooling node through the"
        " ReduceMean after it -> roi_pool5, the rest -> heads; runtime_overhead = run time - kernel sum"
    ),
}
NO_SPLIT = "the model call is timed as one stage (no per-stage split for this backend)"


@dataclass(frozen=True)
class Workload:
    """A synthetic frame of exactly `height` x `width` model pixels (preprocessing resizes nothing), `boxes` seeded
    random boxes and the first `pairs` unordered pairs in row-major order (None: all)."""

    height: int
    width: int
    boxes: int
    pairs: int | None = None

    def __post_init__(self) -> None:
        if self.height < 16 or self.width < 16 or self.boxes < 0:
            raise SRGError(f"workload {self.height}x{self.width} with {self.boxes} boxes: need at least 16x16, 0 boxes")
        if self.pairs is not None and not 0 <= self.pairs <= self.all_pairs:
            raise SRGError(f"--pairs {self.pairs}: {self.boxes} boxes have {self.all_pairs} unordered pairs")

    @property
    def all_pairs(self) -> int:
        return self.boxes * (self.boxes - 1) // 2

    @property
    def num_pairs(self) -> int:
        return self.all_pairs if self.pairs is None else self.pairs

    def frame(self, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
        """(BGR frame, boxes [N,4] in its pixels)."""
        image, _ = sample_frame(self.height, self.width, seed)
        rng = np.random.default_rng(seed)
        size = rng.uniform(0.1, 0.6, (self.boxes, 2)) * [self.width, self.height]
        corner = rng.uniform(0, 1, (self.boxes, 2)) * ([self.width, self.height] - size)
        return image, np.concatenate([corner, corner + size], axis=1)

    def macs(self, config: SRGConfig) -> MacCount:
        """Multiply-accumulates of this workload on a model of `config` (runtime/macs.py)."""
        return macs.count_macs(config, self.height, self.width, self.boxes, self.num_pairs)

    def describe(self) -> str:
        return f"{self.height}x{self.width}, {self.boxes} boxes, {self.num_pairs} pairs ({self.boxes + self.num_pairs} RoIs)"


def matmul_peak_gflops(size: int = 2048, repeats: int = 10) -> float:
    """The machine's practical fp32 peak: the best of `repeats` size^3 matrix products (numpy's BLAS, its threads)."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((size, size), np.float32), rng.standard_normal((size, size), np.float32)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


FP32_PEAK_METHOD = "best of 10 fp32 2048^3 numpy matrix products in the same process"
LOW_PEAK_METHOD = "best of 10 {precision} 2048^3 matrix products by OpenVINO's CPU plugin in the same process"


def peaks_for(precision: str) -> tuple[dict[str, float], str, str]:
    """(peaks by precision, the precision the floor is measured in, how): numpy's fp32 peak always, and for a bf16
    or int8 model the matrix-product peak in its own precision, which is its floor. Where OpenVINO is missing or
    cannot run that precision here, the floor stays fp32 and says so."""
    peaks = {"fp32": matmul_peak_gflops()}
    if precision in ("bf16", "int8", "fp16"):
        try:
            from srg_deploy.runtime.openvino_backend import matmul_peak_gflops as openvino_peak

            peaks[precision] = openvino_peak(precision)
            return peaks, precision, LOW_PEAK_METHOD.format(precision=precision)
        except Exception as e:  # no OpenVINO, or the CPU cannot run the precision: the fp32 floor, said so
            return peaks, "fp32", f"{FP32_PEAK_METHOD} ({precision} peak not measurable here: {type(e).__name__})"
    return peaks, "fp32", FP32_PEAK_METHOD


def machine() -> dict[str, object]:
    """What the figures were measured on."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        names = [
            line.split(":", 1)[1].strip() for line in cpuinfo.read_text().splitlines() if line.startswith("model name")
        ]
        cpu = names[0] if names else cpu
    versions = {}
    for package in ("numpy", "onnxruntime", "openvino", "torch", "tensorrt"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        **versions,
        "load_average": [round(v, 2) for v in os.getloadavg()],
    }


def ort_stage_times(path: Path, inputs: dict[str, np.ndarray], iters: int, warmup: int) -> dict[str, list[float]]:
    """ONNX Runtime stages from its profiler (see METHODS)."""
    from srg_deploy.runtime.ort_backend import import_onnxruntime, open_session

    with tempfile.TemporaryDirectory() as tmp:
        options = import_onnxruntime().SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        session = open_session(path, options=options)
        for _ in range(warmup + iters):
            session.run(None, inputs)
        events = json.loads(Path(session.end_profiling()).read_text())
    runs = sorted((e for e in events if e.get("cat") == "Session" and e["name"] == "model_run"), key=lambda e: e["ts"])
    nodes = sorted(
        (e for e in events if e.get("cat") == "Node" and e["name"].endswith("_kernel_time")), key=lambda e: e["ts"]
    )
    times: dict[str, list[float]] = {"trunk": [], "roi_pool5": [], "heads": [], "runtime_overhead": []}
    for run in runs[warmup:]:
        inside = [e for e in nodes if run["ts"] <= e["ts"] <= run["ts"] + run["dur"]]
        ops = [e["args"].get("op_name") for e in inside]
        if "MaxRoiPool" not in ops:
            raise SRGError(f"{path}: no RoI pooling node ran, so its time cannot be split into stages")
        roi = ops.index("MaxRoiPool")
        mean = ops.index("ReduceMean", roi) if "ReduceMean" in ops[roi:] else roi
        us = [e["dur"] for e in inside]
        split = {"trunk": sum(us[:roi]), "roi_pool5": sum(us[roi : mean + 1]), "heads": sum(us[mean + 1 :])}
        split["runtime_overhead"] = run["dur"] - sum(us)
        for name, value in split.items():
            times[name].append(value / 1e3)
    return times


@dataclass
class BenchReport:
    model: str
    backend: str
    workload: Workload
    iters: int
    warmup: int
    macs: MacCount
    peak_gflops: float
    method: str
    times: dict[str, list[float]] = field(default_factory=dict)
    peaks: dict[str, float] = field(default_factory=dict)  # matrix-product peak per precision measured
    peak_precision: str = "fp32"  # the precision `peak_gflops` (the floor) is measured in: the model's
    peak_method: str = FP32_PEAK_METHOD
    machine: dict[str, object] = field(default_factory=machine)
    date: str = field(
        default_factory=lambda: datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    )

    def stage_macs(self, stage: str) -> int | None:
        m = self.macs
        return {
            "trunk": m.trunk,
            "roi_pool5": m.roi_pool5,
            "heads": m.heads,
            "model": m.total,
            "end_to_end": m.total,
        }.get(stage)

    def stages(self) -> dict[str, dict[str, float | None]]:
        """Per stage: median and p95 ms, GMAC, achieved GFLOP/s and the fraction of the measured peak."""
        out = {}
        for stage in STAGES:
            if not self.times.get(stage):
                continue
            median = float(np.median(self.times[stage]))
            macs = self.stage_macs(stage)
            gflops = 2 * macs / (median / 1e3) / 1e9 if macs and median > 0 else None
            out[stage] = {
                "median_ms": median,
                "p95_ms": float(np.percentile(self.times[stage], 95)),
                "gmac": macs / 1e9 if macs is not None else None,
                "gflop_per_s": gflops,
                "peak_fraction": gflops / self.peak_gflops if gflops else None,
            }
        return out

    def to_dict(self) -> dict:
        return {
            "model": self.model,
            "backend": self.backend,
            "workload": {**dataclasses.asdict(self.workload), "pairs": self.workload.num_pairs},
            "iters": self.iters,
            "warmup": self.warmup,
            "gmac_per_frame": {
                **{k: v / 1e9 for k, v in dataclasses.asdict(self.macs).items()},
                "total": self.macs.total / 1e9,
            },
            "gflop_per_frame": 2 * self.macs.total / 1e9,
            "peak_gflop_per_s": self.peak_gflops,
            "peak_method": self.peak_method,
            "peak_precision": self.peak_precision,
            "peak_gflop_per_s_by_precision": self.peaks,
            "stages": self.stages(),
            "method": self.method,
            "machine": self.machine,
            "date": self.date,
        }


def exact_size_predictor(backend: Backend, workload: Workload) -> Predictor:
    """A predictor whose preprocessing keeps the workload's frame at its size: the sizes a benchmark names are
    model input sizes. Pairs: the workload's first P."""
    predictor = Predictor(backend, max_pairs=workload.pairs, top_k=TOP_K)
    short, long = sorted((workload.height, workload.width))
    pp = dataclasses.replace(backend.config.preprocessing, min_size=short, max_size=long)
    predictor.config = dataclasses.replace(backend.config, preprocessing=pp)
    return predictor


def time_interleaved(calls: dict[str, Callable[[], object]], iters: int, warmup: int) -> dict[str, list[float]]:
    """Milliseconds of `iters` calls of each, after `warmup` untimed rounds. The calls take turns within each
    round, so a change in machine load during the measurement falls on all of them alike."""
    times: dict[str, list[float]] = {name: [] for name in calls}
    for round_ in range(warmup + iters):
        for name, call in calls.items():
            t0 = time.perf_counter()
            call()
            if round_ >= warmup:
                times[name].append((time.perf_counter() - t0) * 1e3)
    return times


def bench(backend: Backend, model_path: Path, workload: Workload, iters: int, warmup: int) -> BenchReport:
    """Time `backend` on `workload`: `iters` measured runs after `warmup`, end to end and split into stages."""
    if backend.mode != "boxes":
        raise SRGError(f"bench times boxes-mode models; {model_path} is an {backend.mode} graph (export --mode boxes)")
    if iters < 1 or warmup < 0:
        raise SRGError(f"--iters must be >= 1 and --warmup >= 0; got {iters} and {warmup}")
    predictor = exact_size_predictor(backend, workload)
    frame, boxes = workload.frame()
    times: dict[str, list[float]] = {s: [] for s in ("preprocess", "model", "postprocess", "end_to_end")}
    for it in range(warmup + iters):
        t0 = time.perf_counter()
        record, _ = predictor.predict(frame, boxes)
        wall = (time.perf_counter() - t0) * 1e3
        if it >= warmup:
            for stage in ("preprocess", "model", "postprocess"):
                times[stage].append(record["latency_ms"][stage])
            times["end_to_end"].append(wall)
    inputs = predictor.prepare(frame, boxes).inputs
    if backend.name == "torch":
        times.update(backend.stage_times(inputs, iters, warmup))
    elif backend.name == "onnxruntime":
        times.update(ort_stage_times(model_path, inputs, iters, warmup))
    peaks, peak_precision, peak_method = peaks_for(backend.precision)
    return BenchReport(
        model=str(model_path),
        backend=backend.describe(),
        workload=workload,
        iters=iters,
        warmup=warmup,
        macs=workload.macs(backend.config),
        peak_gflops=peaks[peak_precision],
        method=METHODS.get(backend.name, NO_SPLIT),
        times=times,
        peaks=peaks,
        peak_precision=peak_precision,
        peak_method=peak_method,
    )
