"""The inputs a check runs on: a `Case` (one model call's inputs and where they came from), and the sample cases
that `export`, `build-engine --fp16` and the tests use when there is no user data: the synthetic scene of
`srg_deploy.synthetic` (boxes covering the awkward cases: nested, full-frame, tiny) and its pixel-noise twin."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.preprocess import prepare
from srg_deploy.synthetic import noise_frame, sample_frame


@dataclass(frozen=True)
class Case:
    """The inputs of one model call, and where they came from (a frame, a sample, a golden file)."""

    label: str
    inputs: dict[str, np.ndarray]


def sample_cases(config: SRGConfig, mode: str, noise: bool = False) -> list[Case]:
    """The sample frame prepared for a model of `config` and `mode`, and with `noise` also a frame of pixel noise
    of the same size (fp16's hardest input: every activation busy)."""
    frame, boxes = sample_frame()
    frames = [("sample frame", frame)] + ([("noise frame", noise_frame(*frame.shape[:2]))] if noise else [])
    return [
        Case(label, prepare(config, mode, image, boxes if mode == "boxes" else None).inputs) for label, image in frames
    ]


def half_resolution(case: Case) -> Case:
    """`case` at half the image size (boxes halved too): a cheap input for scanning every intermediate tensor,
    which for a ResNet-101 at full size takes gigabytes."""
    inputs = dict(case.inputs)
    inputs["image"] = np.ascontiguousarray(inputs["image"][:, :, ::2, ::2])
    if "boxes" in inputs:
        inputs["boxes"] = inputs["boxes"] / np.float32(2)
    return Case(case.label, inputs)
