"""Issue 17's benchmark: naive eager PyTorch, ONNX Runtime fp32, OpenVINO f32 and OpenVINO bf16 side by side in one
run on the exported ONNX of a BatchNorm-calibrated random model, at 480x640 / 24 boxes and 600x1000 / 36 boxes (goal:
OpenVINO bf16 >= 4x ONNX Runtime fp32); then the accuracy price in Recall@K: OpenVINO f32 and bf16 against eager on
the learned demo's held-out frames and on a model trained on a generated dataset.

    .venv/bin/python benchmarks/openvino_bench.py [--iters 3]

Everything runs through the product: the OpenVINO backend (`--backend openvino`: srg::roi_pool inlined, RoI pooling
kept in f32), `srg-deploy demo`, `train`, `export` and `eval` with `[BACKEND[:PRECISION]:]PATH` model specs.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from _common import benchmark_model, footer, header, inputs_for, median, scratch, table
from ort_vs_naive import naive

from srg_deploy.checkpoint import random_model, save_checkpoint
from srg_deploy.config import Preprocessing, SRGConfig
from srg_deploy.datasets.generate import OBJECTS, PREDICATES, write_dataset
from srg_deploy.runtime.bench import Workload, time_interleaved
from srg_deploy.runtime.openvino_backend import OpenVinoBackend
from srg_deploy.runtime.ort_backend import OrtBackend
from srg_deploy.validate.compare import row_cosine_min

WORKLOADS = (Workload(480, 640, boxes=24), Workload(600, 1000, boxes=36))


def cli(*args: object) -> None:
    result = subprocess.run([sys.executable, "-m", "srg_deploy.cli", *map(str, args)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stdout + result.stderr)


@torch.inference_mode()
def eager_bf16(model, image: torch.Tensor, boxes: torch.Tensor, pairs: torch.Tensor) -> np.ndarray:
    """The peer of the bf16 gates: PyTorch's bf16 autocast on the trunk and the heads, RoI pooling on the fp32 cast
    of the bf16 feature map (torchvision's roi_pool takes one dtype for features and boxes); returns `features`."""
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feature_map = model.trunk(image).float()
        return model.relate(feature_map, boxes, pairs)[0].float().numpy()


def speed(iters: int) -> str:
    rows = []
    with scratch() as tmp:
        model, onnx_path = benchmark_model(tmp)
        backends = {
            "ONNX Runtime fp32": OrtBackend(onnx_path),
            "OpenVINO f32": OpenVinoBackend(onnx_path, "fp32"),
            "OpenVINO bf16": OpenVinoBackend(onnx_path, "bf16"),
        }
        for workload in WORKLOADS:
            inputs = inputs_for(backends["ONNX Runtime fp32"], workload)
            tensors = [torch.from_numpy(inputs[k]) for k in ("image", "boxes", "pairs")]
            calls = {"naive eager PyTorch fp32": lambda t=tensors: naive(model, *t)}
            calls["eager PyTorch bf16 autocast"] = lambda t=tensors: eager_bf16(model, *t)
            calls |= {name: (lambda b=b, x=inputs: b.run(x)) for name, b in backends.items()}
            times = time_interleaved(calls, iters, 1)
            reference = backends["ONNX Runtime fp32"].run(inputs)
            base = median(times["ONNX Runtime fp32"])
            for name in calls:
                cosine = "—"
                if name in backends or name.startswith("eager"):
                    got = backends[name].run(inputs)["features"] if name in backends else eager_bf16(model, *tensors)
                    cosine = f"{row_cosine_min(reference['features'], got):.5f}"
                rows.append([
                    f"{workload.height}x{workload.width}, {workload.boxes} boxes ({workload.num_pairs} pairs)", name,
                    f"{median(times[name]):.0f}", f"{base / median(times[name]):.2f}x", cosine,
                ])  # fmt: skip
        for backend in backends.values():
            backend.close()
    return table(["workload", "runtime", "median ms", "vs ONNX Runtime fp32", "worst region cosine vs ORT fp32"], rows)


def recall_rows(label: str, report: Path) -> list[list[str]]:
    rows = []
    for m in json.loads(report.read_text())["models"]:
        delta = m.get("delta")
        cells = []
        for metric in ("recall", "no_graph_constraint_recall", "mean_recall"):
            for k in ("20", "50", "100"):
                cells.append(f"{100 * m[metric][k]:.2f}" + (f" ({100 * delta[metric][k]:+.2f})" if delta else ""))
        rows.append([label, m["backend"].split(",")[0] + ", " + m["precision"] + ")", str(m["images"]), *cells])
    return rows


def accuracy(tmp: Path, epochs: int, images: int) -> tuple[str, str]:
    """R@K of eager, ORT fp32, OpenVINO f32 and bf16 on the same images: the demo's test split, and the val split of
    a model trained on a generated dataset."""
    demo = tmp / "demo"
    cli("demo", "--workdir", demo)
    demo_ckpt = demo / "training" / "checkpoint"
    model = demo / "model.onnx"
    specs = [demo_ckpt, model, f"openvino:{model}", f"openvino:bf16:{model}"]
    cli("eval", *specs, "--data", demo / "scene", "--split", "test", "--report", tmp / "demo.json")
    rows = recall_rows("learned demo, held-out (test) frames", tmp / "demo.json")

    data = tmp / "data"
    write_dataset(data, images, size=(320, 240))
    config = SRGConfig(objects=OBJECTS, predicates=PREDICATES, preprocessing=Preprocessing(min_size=240, max_size=320))
    save_checkpoint(random_model(config, seed=1), tmp / "ckpt")
    val = ("--val-images", str(images // 3))
    cli("train", tmp / "ckpt", "--data", data, "--output", tmp / "run", *val, "--epochs", epochs, "--batch-size", "4",
        "--lr", "0.003")  # fmt: skip
    cli("export", tmp / "run" / "checkpoint", "--output", tmp / "gen.onnx", "--skip-check")
    specs = [
        tmp / "run" / "checkpoint",
        tmp / "gen.onnx",
        f"openvino:{tmp / 'gen.onnx'}",
        f"openvino:bf16:{tmp / 'gen.onnx'}",
    ]
    cli("eval", *specs, "--data", data, "--split", "val", *val, "--report", tmp / "gen.json")
    rows += recall_rows(f"trained {epochs} epochs on {images} generated 320x240 images, val split", tmp / "gen.json")
    headers = ["model, images", "backend (Δ vs eager)", "images"]
    headers += [f"{m}@{k}" for m in ("R", "ngR", "mR") for k in ("20", "50", "100")]
    note = (
        "PredCls, all pairs; `srg-deploy eval EAGER model.onnx openvino:model.onnx openvino:bf16:model.onnx` on the"
        " same images; percent, in brackets the change against eager PyTorch fp32 (the first column)"
    )
    return table(headers, rows), note


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--images", type=int, default=48)
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    from srg_deploy.runtime.openvino_backend import import_openvino

    ov = import_openvino()
    caps = ", ".join(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))
    speed_table = speed(args.iters)
    print(
        header(
            "OpenVINO f32 and bf16 vs ONNX Runtime fp32 vs naive eager (issue 17)",
            f"OpenVINO {ov.__version__} (CPU capabilities: {caps}); BatchNorm-calibrated random ResNet-101 model"
            f" (`random_model(SRGConfig(), 0)`), its exported boxes-mode ONNX run unchanged by ONNX Runtime and"
            f" OpenVINO; model call only, median of {args.iters} runs after 1 warm-up, interleaved; naive eager pools"
            " one union per ordered pair (benchmarks/ort_vs_naive.py)",
        )
    )
    print(speed_table)
    if not args.skip_accuracy:
        with scratch() as tmp:
            accuracy_table, note = accuracy(Path(tmp), args.epochs, args.images)
        print(f"### The accuracy price in Recall@K\n\n- {note}\n")
        print(accuracy_table)
    print(footer())
    np.set_printoptions()


if __name__ == "__main__":
    main()
