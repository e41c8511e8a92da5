"""What both benchmark scripts share: the model under test, its inputs at an exact size, and Markdown output."""

from __future__ import annotations

import datetime
import os
import tempfile
from pathlib import Path

import numpy as np
import onnx
import torch

from srg_deploy.checkpoint import random_model
from srg_deploy.config import SRGConfig
from srg_deploy.export.onnx_export import onnx_from_model
from srg_deploy.model import SRGNet
from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.bench import Workload, exact_size_predictor, machine


def benchmark_model(folder: Path) -> tuple[SRGNet, Path]:
    """A seeded random SRGNet (VG150/VG50 heads; speed does not depend on the weights) and its boxes-mode ONNX."""
    model = random_model(SRGConfig(), seed=0)
    path = Path(folder) / "model.onnx"
    onnx.save(onnx_from_model(model, "boxes"), str(path))
    return model, path


def scratch() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="srg-bench-")


def inputs_for(backend: Backend, workload: Workload) -> dict[str, np.ndarray]:
    """The model inputs of the workload's frame, preprocessed at exactly its size."""
    return exact_size_predictor(backend, workload).prepare(*workload.frame()).inputs


def header(title: str, note: str) -> str:
    m = machine()
    return (
        f"## {title}\n\n"
        f"- Machine: {m['cpu']}, {m['cores']} cores, torch {m.get('torch', '-')} ({torch.get_num_threads()} threads),"
        f" onnxruntime {m['onnxruntime']}, Python {m['python']}, {m['platform']}\n"
        f"- Date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC;"
        f" load average at start {m['load_average'][0]} (other processes share this machine)\n"
        f"- {note}\n"
    )


def footer() -> str:
    return f"- Load average at the end: {os.getloadavg()[0]:.2f}\n"


def table(headers: list[str], rows: list[list[object]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def median(values: list[float]) -> float:
    return float(np.median(values))
