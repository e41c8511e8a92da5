"""`srg-deploy batch` throughput with 1 and 2 workers beside `infer` on the same images, through the real CLI, and
what a cluster would do at the same per-image cost (issue 12).

Every run is the command a user types, in a subprocess, timed from start to exit (wall) and, from the command's own
summary, over its processing only (after Python, Ray and the model have started). The rounds interleave the three
runs, so a change of load on this shared machine touches them alike; the table gives the median.

    python benchmarks/batch_bench.py                          # the figures in benchmarks/RESULTS.md
    python benchmarks/batch_bench.py --images 48 --repeats 3 --size 480x640 --model-size 240x320 --boxes 12

The scaling estimate assumes what batch's design gives: units are independent (no shared state but the driver's
shard writes), so a cluster's throughput is its cores divided by the core-seconds one image costs here, after a
fixed start-up (Ray, then every worker loading the model).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from _common import footer, header, median, scratch, table

from srg_deploy.checkpoint import random_model
from srg_deploy.config import Preprocessing, SRGConfig
from srg_deploy.export.onnx_export import onnx_from_model
from srg_deploy.inputs import parse_size
from srg_deploy.synthetic import SyntheticScene

CLUSTER_CORES = (16, 64, 256)
ARCHIVE = 1_000_000  # images, for the "how long would an archive take" column


@dataclasses.dataclass
class Run:
    label: str
    workers: str
    wall_s: list[float] = dataclasses.field(default_factory=list)
    processing_s: list[float] = dataclasses.field(default_factory=list)


def make_inputs(folder: Path, images: int, size: tuple[int, int], model_size: tuple[int, int], boxes: int) -> Path:
    """A seeded random model (speed does not depend on weights) resizing frames to `model_size`, `images` synthetic
    frames and one seeded boxes list for every frame."""
    config = dataclasses.replace(
        SRGConfig(), preprocessing=Preprocessing(min_size=min(model_size), max_size=max(model_size))
    )
    (folder / "model.onnx").write_bytes(onnx_from_model(random_model(config, seed=0), "boxes").SerializeToString())
    height, width = size
    scene = SyntheticScene(width, height)
    (folder / "images").mkdir()
    for k in range(images):
        assert cv2.imwrite(str(folder / "images" / f"frame_{k:05d}.png"), scene.render(k * 7))
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.7, (boxes, 2)) * (width, height)
    wh = rng.uniform(0.1, 0.3, (boxes, 2)) * (width, height)
    (folder / "boxes.json").write_text(json.dumps(np.concatenate([xy, xy + wh], 1).round(1).tolist()))
    return folder / "model.onnx"


def cli(*args: object) -> tuple[float, str]:
    t0 = time.perf_counter()
    result = subprocess.run(
        [sys.executable, "-m", "srg_deploy.cli", *map(str, args)], capture_output=True, text=True, check=False
    )
    wall = time.perf_counter() - t0
    if result.returncode != 0:
        raise SystemExit(f"{' '.join(map(str, args[:2]))} failed:\n{result.stderr[-2000:]}")
    return wall, result.stderr


def infer_once(folder: Path) -> tuple[float, float]:
    out = folder / "infer.jsonl"
    wall, log = cli("infer", folder / "model.onnx", "--source", folder / "images", "--boxes", folder / "boxes.json",
                    "--json", out)  # fmt: skip
    processing = float(re.search(r"end-to-end: \d+ frames in ([\d.]+) s", log).group(1))
    out.unlink()
    return wall, processing


def batch_once(folder: Path, workers: int, cpus: int, batch_size: int, round_: int) -> tuple[float, float]:
    out = folder / f"batch_{workers}_{round_}"
    wall, log = cli("batch", folder / "model.onnx", "--source", folder / "images", "--boxes", folder / "boxes.json",
                    "--output", out, "--workers", workers, "--cpus-per-worker", cpus, "--batch-size", batch_size)  # fmt: skip
    processing = float(re.search(r"in \d+ shards, ([\d.]+) s:", log).group(1))
    return wall, processing


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--size", default="480x640", help="frame size HxW (synthetic frames)")
    parser.add_argument("--model-size", default="240x320", help="model input HxW (the preprocessing's min/max)")
    parser.add_argument("--boxes", type=int, default=12, help="regions per image (all pairs)")
    parser.add_argument("--batch-size", type=int, default=4, help="images per unit of work")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    size, model_size = parse_size(args.size, "--size"), parse_size(args.model_size, "--model-size")
    runs = [
        Run("infer (ONNX Runtime, one process)", f"1 x {cores} threads"),
        Run("batch, 1 worker", f"1 x {cores} threads"),
        Run("batch, 2 workers", f"2 x {max(1, cores // 2)} threads"),
    ]
    with scratch() as tmp:
        folder = Path(tmp)
        make_inputs(folder, args.images, size, model_size, args.boxes)
        load_start = os.getloadavg()[0]
        for round_ in range(args.repeats):
            for run, once in zip(
                runs,
                (
                    lambda: infer_once(folder),
                    lambda r=round_: batch_once(folder, 1, cores, args.batch_size, r),
                    lambda r=round_: batch_once(folder, 2, max(1, cores // 2), args.batch_size, r),
                ),
            ):
                wall, processing = once()
                run.wall_s.append(wall)
                run.processing_s.append(processing)
        record_kib = np.mean([p.stat().st_size for p in (folder / "batch_2_0" / "records").glob("*.jsonl")]) / 1024
    n = args.images
    rows = []
    for run in runs:
        wall, processing = median(run.wall_s), median(run.processing_s)
        rows.append([run.label, run.workers, f"{wall:.1f}", f"{wall - processing:.1f}", f"{processing:.1f}",
                     f"{n / processing:.2f}", f"{n / wall:.2f}", f"{cores * processing / n:.2f}"])  # fmt: skip
    best = min(median(r.processing_s) for r in runs[1:])
    core_s = cores * best / n
    startup = median(runs[2].wall_s) - median(runs[2].processing_s)
    print(
        header(
            "srg-deploy batch on Ray Data vs infer (issue 12)",
            f"{n} synthetic {args.size} frames resized to {args.model_size}, {args.boxes} boxes each (all "
            f"{args.boxes * (args.boxes - 1) // 2} pairs), ONNX Runtime CPU, seeded random weights; batch units of "
            f"{args.batch_size} images, local Ray; median of {args.repeats} rounds, the three runs interleaved; "
            f"load average at start of the runs {load_start:.2f}",
        )
    )
    print(table(["run", "workers x ORT threads", "wall s", "start-up s", "processing s", "images/s (processing)",
                 "images/s (wall)", "core-s per image"], rows))  # fmt: skip
    print(
        f"**Per-image cost: {core_s:.2f} core-seconds** (the faster batch run: {cores} cores x {best:.1f} s / {n} "
        f"images); batch's fixed start-up here {startup:.1f} s (Python, local Ray, every worker loading the model); "
        f"shards hold {record_kib / args.batch_size:.1f} KiB per record.\n"
    )
    estimate = [
        [f"{k} cores ({k // cores} machines like this one)", f"{k / core_s:.1f}",
         f"{ARCHIVE * core_s / k / 3600:.1f}"]
        for k in CLUSTER_CORES
    ]  # fmt: skip
    print("Cluster estimate at the same per-image cost (CPU nodes, this model input and box count):\n")
    print(table(["cluster", "images/s", f"hours for {ARCHIVE:,} images"], estimate))
    print(footer())


if __name__ == "__main__":
    main()
