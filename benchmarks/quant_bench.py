"""INT8 side by side (issue 18): ONNX Runtime fp32 / int8 and OpenVINO bf16 / int8 on one model trained on a generated
dataset, latency on a full-size frame and R@K on its val split; then TensorRT int8 vs fp16 on Jetson AGX Orin,
estimated from the model's multiply-accumulates and NVIDIA's published peaks (no Orin here).

    .venv/bin/python benchmarks/quant_bench.py --iters 3

Everything runs through the product: `dataset generate` (write_dataset), `train`, `export`, `quantize --data`, the
project's evaluator, and both runtimes through their srg-deploy backends (OpenVINO's inlines `srg::roi_pool` and
keeps the box coordinates in f32: docs/openvino.md). Training uses the recipe's defaults.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
from _common import footer, header, inputs_for, median, scratch, table

from srg_deploy.checkpoint import random_model, save_checkpoint
from srg_deploy.config import Preprocessing, SRGConfig
from srg_deploy.datasets import VGSGGDataset
from srg_deploy.datasets.generate import OBJECTS, PREDICATES, write_dataset
from srg_deploy.export.quantize import quantization_record
from srg_deploy.runtime.bench import Workload, time_interleaved
from srg_deploy.runtime.evaluate import evaluate
from srg_deploy.runtime.macs import count_macs
from srg_deploy.runtime.openvino_backend import OpenVinoBackend
from srg_deploy.runtime.ort_backend import OrtBackend

# Jetson AGX Orin 64GB, GPU only (NVIDIA's Jetson AGX Orin data sheet / technical brief): 170 INT8 TOPS with 2:4
# sparsity, i.e. 85 dense; Ampere tensor cores run FP16 at half the INT8 rate: 42.5 dense TFLOPS. DLA not counted.
ORIN_DENSE = {"int8": 85e12, "fp16": 42.5e12}


def cli(*args: str) -> None:
    result = subprocess.run([sys.executable, "-m", "srg_deploy.cli", *map(str, args)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stdout + result.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=48, help="generated images (val + train + test)")
    parser.add_argument("--val-images", type=int, default=16)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--size", default="480x640", help="latency frame, model pixels HxW")
    parser.add_argument("--boxes", type=int, default=24)
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))

    with scratch() as tmp:
        root = Path(tmp)
        write_dataset(root / "data", args.images, size=(320, 240))
        config = SRGConfig(
            objects=OBJECTS, predicates=PREDICATES, preprocessing=Preprocessing(min_size=240, max_size=320)
        )
        save_checkpoint(random_model(config, seed=1), root / "ckpt")
        data, val = root / "data", ("--val-images", str(args.val_images))
        cli("train", root / "ckpt", "--data", data, "--output", root / "run", *val, "--epochs", args.epochs)
        cli("export", root / "run" / "checkpoint", "--output", root / "fp32.onnx", "--skip-check")
        cli("quantize", root / "fp32.onnx", "--output", root / "int8.onnx", "--data", data, *val, "--frames", "32")
        record = quantization_record(onnx.load(str(root / "int8.onnx")))

        backends = {
            "ONNX Runtime fp32": OrtBackend(root / "fp32.onnx"),
            "ONNX Runtime int8": OrtBackend(root / "int8.onnx"),
            "OpenVINO bf16": OpenVinoBackend(root / "fp32.onnx", "bf16"),
            "OpenVINO int8": OpenVinoBackend(root / "int8.onnx", "bf16"),
        }
        dataset = VGSGGDataset(data, "val", args.val_images)
        results = evaluate(dataset, list(backends.items()), "predcls")
        workload = Workload(height, width, args.boxes)
        inputs = inputs_for(backends["ONNX Runtime fp32"], workload)
        times = time_interleaved({n: (lambda b=b: b.run(inputs)) for n, b in backends.items()}, args.iters, 1)
        reference = backends["ONNX Runtime fp32"].run(inputs)
        rows = []
        for (name, backend), result in zip(backends.items(), results):
            got = backend.run(inputs)
            cosine = float(
                np.dot(reference["features"].ravel(), got["features"].ravel())
                / np.linalg.norm(reference["features"])
                / np.linalg.norm(got["features"])
            )
            rows.append([
                name, f"{median(times[name]):.0f}", f"{median(times['ONNX Runtime fp32']) / median(times[name]):.2f}x",
                *(f"{100 * result['recall'][k]:.2f}" for k in ("20", "50", "100")), f"{cosine:.4f}",
            ])  # fmt: skip
        for backend in backends.values():
            backend.close()

    macs = count_macs(config, height, width, args.boxes, workload.num_pairs)
    total = macs.total
    note = (
        f"Model: trained {args.epochs} epochs on {args.images} generated 320x240 images (random ResNet-101 trunk, heads"
        f" trained); INT8 by `srg-deploy quantize --data` ({record['calibration']}, {record['method']},"
        f" {len(record['float_layers'])} of {record['layers']} layers kept float). R@K: PredCls on {len(dataset)} val"
        f" images. Latency: {height}x{width} model input, {args.boxes} boxes, {workload.num_pairs} pairs, median of"
        f" {args.iters} after 1 warm-up, interleaved"
    )
    print(header("INT8: ONNX Runtime and OpenVINO side by side (issue 18)", note))
    print(table(["backend", "median ms", "vs ORT fp32", "R@20", "R@50", "R@100", "features cosine vs ORT fp32"], rows))
    orin = [[p, f"{ORIN_DENSE[p] / 1e12:g}", f"{2 * total / ORIN_DENSE[p] * 1e3:.2f}"] for p in ("fp16", "int8")]
    print(f"TensorRT on Jetson AGX Orin 64GB (GPU), estimated: {total / 1e9:.1f} GMAC at {height}x{width}, "
          f"{args.boxes} boxes, {workload.num_pairs} pairs; time at the published dense peak (a lower bound):\n")  # fmt: skip
    print(table(["precision", "dense TOPS", "ms at peak"], orin))
    print(footer())


if __name__ == "__main__":
    main()
