"""Does the training recipe care where the features sit? Epochs to reach the final loss at three pool5 scales,
with the recipe before issue 16 (raw pool5) and after it (pool5 centred and scaled on the training split).

    .venv/bin/python benchmarks/train_recipe_bench.py [--images 36] [--epochs 30]

One seeded random checkpoint with the generated scene's vocabulary (frames resized to 120..160 px), a dense
generated dataset (8-14 boxes per image, 160x120), its frozen features computed once; each scale multiplies them
so that the boxes' mean pool5 norm is ~4, ~40 or ~400 (for frozen features exactly what a trunk with that scale
gives). Then the default recipe (SGD lr 0.01, batch 12, momentum 0.9, clip 5) trains the checkpoint's heads from
the same start, same sampling. "Target" is the after-recipe's final epoch loss at that scale; a column says in which
epoch each recipe's epoch loss first reaches it (within 5 %).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
from _common import footer, header, table

from srg_deploy.checkpoint import random_model
from srg_deploy.config import Detector, Preprocessing, SRGConfig
from srg_deploy.contract import FEATURE_DIM
from srg_deploy.datasets import VGSGGDataset
from srg_deploy.datasets.generate import OBJECTS, PREDICATES, write_dataset
from srg_deploy.training.features import (
    FeatureExtractor,
    MemoryCache,
    Normalisation,
    SplitFeatures,
    measure_normalisation,
)
from srg_deploy.training.trainer import (
    Recipe,
    head_optimizer,
    random_heads,
    restart_heads,
    train_step,
    unfold_normalisation,
)

NORMS = (4.0, 40.0, 400.0)


def train_losses(
    model, start: dict, items: list, dataset, recipe: Recipe, epochs: int, normalise: bool, scale: float
) -> list:
    """Epoch losses of the default recipe from `start` on features x `scale`: raw (before issue 16), or normalised
    with the checkpoint's seeded heads started anew, as `train` does for an untrained checkpoint."""
    model.load_state_dict(start)
    data = [(gt, boxes * scale, unions * scale) for gt, boxes, unions in items]
    if normalise:
        norm = measure_normalisation(Extracted(data, dataset))
        unfold_normalisation(model, norm)
        restart_heads(model, random_heads(model.config), recipe.seed)
        data = [(gt, norm(boxes), norm(unions)) for gt, boxes, unions in data]
    optimizer = head_optimizer(model, recipe)
    rng, losses = np.random.default_rng(0), []
    for _ in range(epochs):
        order, total, steps = rng.permutation(len(data)), 0.0, 0
        for first in range(0, len(order), recipe.batch_size):
            batch = [data[k] for k in order[first : first + recipe.batch_size]]
            total, steps = total + train_step(model, optimizer, batch, rng, recipe, torch.device("cpu"))[0], steps + 1
        losses.append(total / steps)
    return losses


class Extracted:
    """Features already in memory, served as `SplitFeatures` serves them (raw: identity normalisation)."""

    def __init__(self, data: list, dataset: VGSGGDataset) -> None:
        self.data, self.dataset = data, dataset
        self.normalisation = Normalisation(torch.zeros(FEATURE_DIM), 1.0)

    def __len__(self) -> int:
        return len(self.data)

    def items(self, order):
        return (self.data[k] for k in order)


def reached(losses: list, target: float) -> str:
    epoch = next((k for k, loss in enumerate(losses, 1) if loss <= 1.05 * target), None)
    return str(epoch) if epoch else f"not in {len(losses)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=36, help="dense training images")
    parser.add_argument("--epochs", type=int, default=30)
    args = parser.parse_args()
    out = header(
        "Training recipe vs feature scale (issue 16)",
        f"{args.images} generated images of 160x120 with 8-14 boxes, {args.epochs} epochs of the default recipe "
        "from the same seeded checkpoint (after: its seeded heads start anew, as `train` does); pool5 scaled to the "
        "mean box norm given",
    )
    config = SRGConfig(
        objects=OBJECTS,
        predicates=PREDICATES,
        preprocessing=Preprocessing(min_size=120, max_size=160),
        detector=Detector(pre_nms_top_n=64, post_nms_top_n=16, max_detections=4),
    )
    model = random_model(config, seed=3)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    recipe = Recipe()
    with tempfile.TemporaryDirectory(prefix="srg-recipe-bench-") as tmp:
        write_dataset(Path(tmp), args.images, size=(160, 120), test_fraction=0.0, boxes_per_image=(8, 14))
        dataset = VGSGGDataset(Path(tmp), val_images=0)
        features = SplitFeatures(dataset, FeatureExtractor(model, "cpu"), MemoryCache())
        items = list(features.items(range(len(features))))
    norm = float(torch.cat([boxes for _, boxes, _ in items]).norm(dim=1).mean())
    rows = []
    for target_norm in NORMS:
        scale = target_norm / norm
        before = train_losses(model, start, items, dataset, recipe, args.epochs, False, scale)
        after = train_losses(model, start, items, dataset, recipe, args.epochs, True, scale)
        target = after[-1]
        for name, losses in (("before (raw pool5)", before), ("after (normalised)", after)):
            rows.append(
                [f"~{target_norm:g}", name, f"{losses[0]:.3g}", f"{max(losses) / losses[0]:.2f}", f"{losses[-1]:.3g}",
                 reached(losses, target)]
            )  # fmt: skip
        print(f"norm ~{target_norm:g} done", file=sys.stderr)
    out += "\n" + table(
        ["pool5 norm", "recipe", "epoch 1 loss", "max / epoch 1", f"epoch {args.epochs} loss",
         "first epoch within 5 % of the target"],
        rows,
    )  # fmt: skip
    out += (
        f"\nThe seeded checkpoint's own pool5 norm here is {norm:.0f}. The target is the after-recipe's epoch-"
        f"{args.epochs} loss at that scale.\n"
    )
    out += footer()
    print(out)


if __name__ == "__main__":
    main()
