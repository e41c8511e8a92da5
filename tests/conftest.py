"""Shared fixtures: one seeded model and checkpoint per session, small frames, and a CLI runner."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

# The Triton kernel runs in Triton's interpreter on machines without a GPU; the variable must be set before the
# kernel module is imported (triton.jit reads it at decoration time).
if not torch.cuda.is_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")

from srg_deploy.checkpoint import random_model, save_checkpoint
from srg_deploy.config import SRGConfig

ROOT = Path(__file__).resolve().parent.parent


def randomize_batchnorm(model: torch.nn.Module, seed: int) -> None:
    """Non-trivial BatchNorm statistics and affine parameters, kept in a range where activations stay finite."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(0.5 + torch.rand(n, generator=g))
            m.weight.data.copy_(0.5 + 0.5 * torch.rand(n, generator=g))
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def seeded_model(config: SRGConfig, seed: int):
    """A seeded random model with non-trivial BatchNorm statistics, in eval mode."""
    m = random_model(config, seed)
    randomize_batchnorm(m, seed)
    return m.eval()


def saved(tmp_path_factory, model, name: str) -> Path:
    path = tmp_path_factory.mktemp(name) / "ckpt"
    save_checkpoint(model, path)
    return path


@pytest.fixture(scope="session")
def model():
    return seeded_model(SRGConfig(), 7)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory, model) -> Path:
    return saved(tmp_path_factory, model, "ckpt")


def small_config(**detector) -> SRGConfig:
    """Default architecture and vocabularies, frames resized to 160..256 px so CPU tests stay fast."""
    config = SRGConfig()
    return dataclasses.replace(
        config,
        preprocessing=dataclasses.replace(config.preprocessing, min_size=160, max_size=256),
        detector=dataclasses.replace(config.detector, **detector),
    )


@pytest.fixture(scope="session")
def small_model():
    return seeded_model(small_config(), 11)


@pytest.fixture(scope="session")
def small_checkpoint(tmp_path_factory, small_model) -> Path:
    return saved(tmp_path_factory, small_model, "small")


@pytest.fixture(scope="session")
def small_onnx(tmp_path_factory, small_model) -> Path:
    from srg_deploy.export.onnx_export import onnx_from_model

    path = tmp_path_factory.mktemp("small_onnx") / "model.onnx"
    path.write_bytes(onnx_from_model(small_model, "boxes").SerializeToString())
    return path


@pytest.fixture(scope="session")
def onnx_boxes(tmp_path_factory, model) -> Path:
    from srg_deploy.export.onnx_export import onnx_from_model

    path = tmp_path_factory.mktemp("onnx") / "model.onnx"
    path.write_bytes(onnx_from_model(model, "boxes").SerializeToString())
    return path


def gate_failures(inputs: dict, ref: dict, got: dict, precision: str = "fp32", **overrides):
    """The product's judgement of one model call: every typed `Failure` of `precision`'s gates (per-output errors,
    cosine, scale, regions and, judged on this call alone, agreement with its near-tie rule). Tests assert with this
    rather than with thresholds of their own."""
    from srg_deploy.validate.gates import Gates
    from srg_deploy.validate.verdict import agreement_failures, judge_frame

    gates = Gates.for_precision(precision, **overrides)
    check = judge_frame(inputs, ref, got, gates)
    return check.failures + agreement_failures(check.agreement, gates)


def make_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A BGR frame with gradients, two solid shapes and noise: not flat, so features are not degenerate."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack([xx * 255 / width, yy * 255 / height, (xx * yy) % 200], -1) + rng.normal(0, 10, (height, width, 3))
    frame[height // 5 : height // 2, width // 6 : width // 2] = (40, 80, 220)
    frame[height // 2 : height - 2, width // 2 : width - 3] = (210, 170, 30)
    return np.clip(frame, 0, 255).astype(np.uint8)


@pytest.fixture
def write_image(tmp_path):
    import cv2

    def write(name: str = "frame.png", height: int = 120, width: int = 160, seed: int = 0) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        assert cv2.imwrite(str(path), make_frame(height, width, seed))
        return path

    return write


@pytest.fixture
def write_json(tmp_path):
    def write(name: str, data: object) -> Path:
        path = tmp_path / name
        path.write_text(json.dumps(data))
        return path

    return write


def run_cli(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    """The real console entry point in a subprocess, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "srg_deploy.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=ROOT,
    )


def assert_clean_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    """Non-zero exit, no traceback, and the error as one line (the last on stderr) naming the problem."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and lines[-1] == errors[0], result.stderr
    for fragment in fragments:
        assert fragment in errors[0], errors[0]


# --- a learnable generated dataset, a checkpoint for its vocabulary, and a training run on it ------------------------

SCENE_TRAIN_ARGS = ("--val-images", "4")  # 14 train, 4 val images; the recipe's defaults


def scene_config() -> SRGConfig:
    """The generated scene's vocabulary, frames resized to 120..160 px and a detector kept to a few regions, so that
    training and SGDet evaluation take seconds on a CPU."""
    from srg_deploy.config import Detector, Preprocessing
    from srg_deploy.datasets.generate import OBJECTS, PREDICATES

    return SRGConfig(
        objects=OBJECTS,
        predicates=PREDICATES,
        preprocessing=Preprocessing(min_size=120, max_size=160),
        detector=Detector(pre_nms_top_n=64, post_nms_top_n=16, max_detections=4),
    )


@pytest.fixture(scope="session")
def scene_data(tmp_path_factory) -> Path:
    """24 images of 160x120: 18 of split 0 (with --val-images 4: 14 train, 4 val) and 6 test."""
    from srg_deploy.datasets.generate import write_dataset

    root = tmp_path_factory.mktemp("scene") / "data"
    write_dataset(root, 24, size=(160, 120))
    return root


@pytest.fixture(scope="session")
def scene_checkpoint(tmp_path_factory) -> Path:
    return saved(tmp_path_factory, random_model(scene_config(), seed=1), "scene_ckpt")


@pytest.fixture(scope="session")
def scene_run(tmp_path_factory, scene_data, scene_checkpoint) -> tuple[Path, subprocess.CompletedProcess]:
    """`srg-deploy train` of the scene checkpoint for 12 epochs: (run folder, the finished process)."""
    run = tmp_path_factory.mktemp("scene_run") / "run"
    result = run_cli(
        "train", scene_checkpoint, "--data", scene_data, "--output", run, *SCENE_TRAIN_ARGS, "--epochs", "12"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return run, result


def installed(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # the parent package is missing
        return False


HAS_TENSORRT = installed("tensorrt")
# What the `trt` tests need and this machine lacks, named in every skip reason.
MISSING = [
    what
    for what, present in (
        ("TensorRT", HAS_TENSORRT),
        ("cuda-python", installed("cuda.bindings") or installed("cuda.cudart")),
        ("an NVIDIA GPU", torch.cuda.is_available()),
    )
    if not present
]
needs_tensorrt = pytest.mark.skipif(
    bool(MISSING), reason=f"needs TensorRT >= 10.9, cuda-python and an NVIDIA GPU; missing: {', '.join(MISSING)}"
)
