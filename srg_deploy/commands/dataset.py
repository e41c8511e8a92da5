"""`srg-deploy dataset generate|info`: write a small VG-SGG dataset of the demo scene, or describe a dataset folder."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer

from srg_deploy.console import err, out
from srg_deploy.defaults import VAL_IMAGES

app = typer.Typer(
    help="Datasets in the VG-SGG layout: generate a small one of the demo scene, or describe one.",
    no_args_is_help=True,
)


@app.command("generate", epilog="Example:\n\n  srg-deploy dataset generate scene/ --images 64 --size 320x240")
def generate(
    output: Annotated[Path, typer.Argument(help="Folder to write (VG_100K/, image_data.json, h5, dicts).")],
    images: Annotated[int, typer.Option(min=1, help="Images in all.")] = 64,
    seed: Annotated[int, typer.Option(help="Seed of every image's background and frame.")] = 0,
    size: Annotated[str, typer.Option(help="Image size WxH.")] = "320x240",
    test_fraction: Annotated[float, typer.Option(help="Share of the images in the test split (the last ones).")] = 0.25,
) -> None:
    """Write a learnable VG-SGG dataset of the demo's scene: 3 shapes, 6 directional predicates by a fixed rule."""
    err.print(
        generate_dataset(output, images, seed=seed, size=size, test_fraction=test_fraction),
        markup=False,
        highlight=False,
    )


@app.command("info", epilog="Example:\n\n  srg-deploy dataset info datasets/vg --split test")
def info(
    root: Annotated[Path, typer.Argument(help="VG-SGG dataset folder.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "train",
    val_images: Annotated[int, typer.Option(min=0, help="First N split-0 images are val.")] = VAL_IMAGES,
) -> None:
    """One line for a split after the field's filters: images, boxes, relations, vocabulary sizes."""
    out.print(describe_dataset(root, split, val_images), markup=False, highlight=False)


def generate_dataset(output: Path, images: int, *, seed: int, size: str, test_fraction: float) -> str:
    """Write the dataset under `output` and return one line saying what was written and how long it took."""
    from srg_deploy.datasets.generate import write_dataset
    from srg_deploy.inputs import parse_size

    width, height = parse_size(size, "--size", "320x240")
    started = time.perf_counter()
    info = write_dataset(Path(output), images, seed=seed, size=(width, height), test_fraction=test_fraction)
    return f"wrote {info.describe()} in {time.perf_counter() - started:.1f} s"


def describe_dataset(root: Path, split: str, val_images: int) -> str:
    """One line for one split, after the field's filters (as `train` and `eval` will read it)."""
    from srg_deploy.datasets.vg_sgg import VGSGGDataset

    return VGSGGDataset(Path(root), split, val_images).describe()
