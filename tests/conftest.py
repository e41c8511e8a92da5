"""Shared fixtures: one seeded model and checkpoint per session, small frames, and a CLI runner."""

from __future__ import annotations

import dataclasses
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
