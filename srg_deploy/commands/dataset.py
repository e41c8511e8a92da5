"""`srg-deploy dataset generate|info`: write a small VG-SGG dataset of the demo scene, or describe a dataset folder."""

from __future__ import annotations

import time
from pathlib import Path

from srg_deploy.datasets.generate import write_dataset
from srg_deploy.datasets.vg_sgg import VGSGGDataset
from srg_deploy.inputs import parse_size


def generate_dataset(
    output: Path, images: int = 64, *, seed: int = 0, size: str = "320x240", test_fraction: float = 0.25
) -> str:
    """Write the dataset under `output` and return one line saying what was written and how long it took."""
    width, height = parse_size(size, "--size", "320x240")
    started = time.perf_counter()
    info = write_dataset(Path(output), images, seed=seed, size=(width, height), test_fraction=test_fraction)
    return f"wrote {info.describe()} in {time.perf_counter() - started:.1f} s"


def describe_dataset(root: Path, split: str = "train", val_images: int = 5000) -> str:
    """One line for one split, after the field's filters (as `train` and `eval` will read it)."""
    return VGSGGDataset(Path(root), split, val_images).describe()
