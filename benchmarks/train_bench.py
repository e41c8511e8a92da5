"""What an epoch of `srg-deploy train` over Visual Genome costs: measured per image on this CPU at VG-like sizes,
and estimated for a GPU from the model's FLOPs.

    .venv/bin/python benchmarks/train_bench.py [--images 3] [--batch-size 12]

An image's cost has two parts. Feature extraction (decode, preprocess, trunk, RoI pooling + res5 for its boxes and
the unions of all its unordered pairs) runs once per image for the whole run: in the first epoch, then the cache
serves it. Head training (sampled pairs through the object and relation heads, backward, SGD step) runs every epoch.
The workload is a VG-like image: 600x1000 model input, 12 boxes (66 unordered pairs, 132 ordered), 6 relations;
Visual Genome's VG150 split averages about 12 boxes and 6 relations per image.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from _common import footer, header, median, table

from srg_deploy.checkpoint import random_model
from srg_deploy.config import SRGConfig
from srg_deploy.contract import FEATURE_DIM
from srg_deploy.datasets import SGGImage
from srg_deploy.runtime.macs import count_macs
from srg_deploy.training.features import DiskCache, FeatureExtractor, loader_threads, rows_per_image
from srg_deploy.training.trainer import Recipe, head_optimizer, train_step

HEIGHT, WIDTH, BOXES, RELATIONS = 600, 1000, 12, 6
# The size usually reported for Scene-Graph-Benchmark's VG150 train split (split-0 images with relations, minus the
# first 5,000 for val); not counted here: Visual Genome cannot be downloaded on this machine.
VG_TRAIN_IMAGES = 57_723
# NVIDIA H100 SXM5 (datasheet): TF32 Tensor Core 989 TFLOPS *with sparsity*, so 494.7 dense. PyTorch runs cuDNN
# convolutions in TF32 by default (torch.backends.cudnn.allow_tf32), which is most of these FLOPs. Batch-1 images of
# varying size with a few dozen RoIs use a GPU poorly; we assume 20% of that dense peak.
GPU_NAME, GPU_TFLOPS, GPU_EFFICIENCY = "H100 SXM5, TF32 dense", 494.7, 0.2
GPU_HOST_CORES = 16  # a typical one-GPU cloud machine; `train` decodes and preprocesses on loader_threads() of them


def vg_like_image(k: int, rng: np.random.Generator) -> tuple[np.ndarray, SGGImage]:
    """A textured 600x1000 frame (the model input size as is) with 12 boxes and 6 relations, seeded."""
    frame = cv2.resize(rng.integers(0, 256, (30, 50, 3), dtype=np.uint8), (WIDTH, HEIGHT))
    frame = np.clip(frame + rng.normal(0, 10, frame.shape), 0, 255).astype(np.uint8)
    corner = rng.uniform(0, 1, (BOXES, 2)) * [WIDTH * 0.7, HEIGHT * 0.7]
    boxes = np.concatenate([corner, corner + 40 + rng.uniform(0, 1, (BOXES, 2)) * [WIDTH * 0.3, HEIGHT * 0.3]], 1)
    ordered = np.array([(s, o) for s in range(BOXES) for o in range(BOXES) if s != o])
    chosen = ordered[rng.choice(len(ordered), RELATIONS, replace=False)]
    relations = np.column_stack([chosen, rng.integers(1, 51, RELATIONS)])
    labels = rng.integers(1, 151, BOXES)
    return frame, SGGImage(k, k, Path(f"{k}.jpg"), WIDTH, HEIGHT, boxes, labels, relations)


def seconds(call, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return times


def epoch(seconds_per_image: float) -> str:
    """What `seconds_per_image` comes to over the VG150 train split, in a readable unit."""
    total = seconds_per_image * VG_TRAIN_IMAGES
    return f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.1f} min" if total >= 60 else f"{total:.1f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=3, help="images timed for feature extraction (after 1 warm-up)")
    parser.add_argument("--batch-size", type=int, default=12, help="images per SGD step (the recipe's 12)")
    args = parser.parse_args()
    out = header(
        "Training cost per image and per Visual Genome epoch (issue 10)",
        f"Random weights, VG150/VG50 heads; {HEIGHT}x{WIDTH} model input, {BOXES} boxes, "
        f"{BOXES * (BOXES - 1) // 2} unions, {RELATIONS} relations per image; extraction: median of {args.images} "
        f"images after 1 warm-up; heads: median of 5 SGD steps of {args.batch_size} images after 1 warm-up",
    )
    model = random_model(SRGConfig(), seed=0)
    extractor = FeatureExtractor(model, "cpu")
    rng = np.random.default_rng(0)
    images = [vg_like_image(k, rng) for k in range(max(args.images + 1, args.batch_size))]

    # Extraction, split into its stages with the same inputs the extractor prepares.
    stage = {"decode (JPEG)": [], "preprocess": [], "trunk": [], "RoI pooling + res5": []}
    cached = []
    for k, (frame, gt) in enumerate(images):
        if k <= args.images:
            jpeg = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]
            decode = seconds(lambda jpeg=jpeg: cv2.imdecode(jpeg, cv2.IMREAD_COLOR), 1)[0]
            started = time.perf_counter()
            inputs = extractor.predictor.prepare(frame, gt.boxes).inputs
            prepared = time.perf_counter()
            with torch.no_grad():
                feature_map = model.trunk(torch.from_numpy(inputs["image"]))
                trunk = time.perf_counter()
                features, unions = model.pool_regions(
                    feature_map, torch.from_numpy(inputs["boxes"]), torch.from_numpy(inputs["pairs"])
                )
            done = time.perf_counter()
            if k > 0:  # the first is the warm-up
                for key, value in zip(stage, (decode, prepared - started, trunk - prepared, done - trunk)):
                    stage[key].append(value)
        else:
            features, unions = extractor(frame, gt.boxes)
        cached.append((gt, features, unions))
    extraction = {key: median(v) for key, v in stage.items()}

    # Head training on cached features: the recipe's sampling, loss, SGD step.
    recipe = Recipe(batch_size=args.batch_size)
    optimizer = head_optimizer(model, recipe)
    batch = cached[: args.batch_size]
    step_rng = np.random.default_rng(0)
    step = median(seconds(lambda: train_step(model, optimizer, batch, step_rng, recipe, torch.device("cpu")), 6)[1:])
    heads = step / args.batch_size

    # Reading the features back from the float16 disk cache (page cache warm: a lower bound for a cold disk).
    with tempfile.TemporaryDirectory(prefix="srg-train-bench-") as tmp:
        cache = DiskCache(tmp, "bench", len(cached))
        for k, (_, features, unions) in enumerate(cached):
            cache.put(k, features, unions)
        cache.flush()
        read = median(seconds(lambda: [cache.get(k) for k in range(len(cached))], 3)) / len(cached)
    row_bytes = rows_per_image(BOXES) * FEATURE_DIM * 2

    first = sum(extraction.values()) + heads
    later = read + heads
    rows = [[f"extraction: {key}", f"{1000 * value:.0f}", ""] for key, value in extraction.items()]
    rows += [
        ["extraction, all", f"{1000 * sum(extraction.values()):.0f}", epoch(sum(extraction.values()))],
        [f"heads: forward, backward, SGD step (per image of a {args.batch_size}-image step)", f"{1000 * heads:.1f}",
         epoch(heads)],
        ["cache read (float16, page cache warm)", f"{1000 * read:.2f}", epoch(read)],
        ["**first epoch** (extraction + heads)", f"{1000 * first:.0f}", f"**{epoch(first)}**"],
        ["**each later epoch** (cache + heads)", f"{1000 * later:.1f}", f"**{epoch(later)}**"],
    ]  # fmt: skip
    out += "\n### This CPU, per image and per epoch of VG150 train\n\n"
    out += table(["stage", "ms / image", f"epoch ({VG_TRAIN_IMAGES:,} images)"], rows)
    out += (
        f"\nDisk cache: {rows_per_image(BOXES)} rows x {FEATURE_DIM} x 2 bytes = {row_bytes / 1024:.0f} KiB per image "
        f"at this workload, {row_bytes * VG_TRAIN_IMAGES / 2**30:.1f} GiB for the split (more in practice: images with"
        " many boxes have many more unions).\n"
    )

    macs = count_macs(model.config, HEIGHT, WIDTH, BOXES, BOXES * (BOXES - 1) // 2)
    flops = 2 * (macs.trunk + macs.roi_pool5)
    head_flops = 3 * 2 * macs.heads  # forward + backward (about twice the forward) on at most this many pairs
    effective = GPU_TFLOPS * GPU_EFFICIENCY * 1e12
    threads = loader_threads(GPU_HOST_CORES)
    decode = (extraction["decode (JPEG)"] + extraction["preprocess"]) / threads
    gpu_rows = [
        ["extraction (trunk + RoI pooling + res5), forward", f"{flops / 1e9:.0f}", f"{1000 * flops / effective:.2f}",
         epoch(flops / effective)],
        ["heads, forward + backward", f"{head_flops / 1e9:.2f}", f"{1000 * head_flops / effective:.4f}",
         epoch(head_flops / effective)],
        [f"CPU side: JPEG decode + preprocess (measured above) on {threads} loader threads of {GPU_HOST_CORES} cores",
         "", f"{1000 * decode:.1f}", epoch(decode)],
    ]  # fmt: skip
    out += f"\n### A GPU by FLOPs ({GPU_NAME}: {GPU_TFLOPS:g} TFLOPS at {GPU_EFFICIENCY:.0%} = "
    out += f"{GPU_TFLOPS * GPU_EFFICIENCY:g} TFLOPS)\n\n"
    out += table(["stage", "GFLOP / image", "ms / image", f"epoch ({VG_TRAIN_IMAGES:,} images)"], gpu_rows)
    out += (
        "\nThe first epoch on such a GPU takes about the longer of the extraction row and the CPU side (loader "
        "threads decode and preprocess ahead of the model, assuming they scale with cores). "
        "Later epochs are bound by per-step overheads (kernel launches, the optimiser over 3.2 M parameters) and by "
        "reading the cache, not by arithmetic. FLOPs are multiply-accumulates x 2 from `runtime/macs.py` "
        "(convolutions and linear layers; RoI pooling, batch norm and the like are not counted).\n"
    )
    out += footer()
    print(out)


if __name__ == "__main__":
    main()
