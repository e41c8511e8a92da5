"""What `--resume` needs, written atomically after every epoch: the heads, the optimiser's momentum, the sampling
RNG, the epoch, the best validation R@50 and the history. Tensors go to safetensors and everything else to JSON, so
nothing pickled is ever read back.

    OUT/state/heads.safetensors      head weights after the last completed epoch
    OUT/state/optimizer.safetensors  SGD momentum buffers, keyed by parameter position
    OUT/state/state.json             epochs, best, history, RNG state, recipe, images, trunk fingerprint
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from srg_deploy.errors import SRGError

STATE_DIR = "state"
STATE_FORMAT = "srg-deploy-train/2"


@dataclass
class TrainState:
    """Everything a resumed run continues from. `history` holds one record per completed epoch (epoch 0: the
    untrained model), as the JSONL log shows them. The saved heads are those the run trains: on pool5 minus
    `feature_mean`, over `feature_scale` (the checkpoint folder gets them with that folded back in)."""

    epoch: int  # epochs completed
    epochs: int  # epochs asked for
    best_recall: float | None  # best val R@50 (runs with a val split)
    best_loss: float | None  # lowest training-split loss (runs without)
    best_epoch: int | None
    history: list[dict[str, Any]]
    rng: dict[str, Any]  # numpy bit generator state
    recipe: dict[str, Any]
    train_images: str  # hash of the split's image ids
    fingerprint: str  # of the frozen trunk and res5
    feature_mean: list[float]  # mean pool5 vector of the training split (features.measure_normalisation)
    feature_scale: float  # RMS of its centred elements over features.FEATURE_RMS


def save_state(
    output: Path,
    state: TrainState,
    heads: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
) -> None:
    """Write OUT/state as a whole: build it beside, then swap it in."""
    folder = Path(output) / STATE_DIR
    tmp = Path(tempfile.mkdtemp(prefix=f".{STATE_DIR}.", dir=output))
    try:
        save_file({k: v.detach().cpu().contiguous() for k, v in heads.items()}, str(tmp / "heads.safetensors"))
        opt = optimizer.state_dict()
        buffers = {
            f"momentum_buffer.{index}": entry["momentum_buffer"].detach().cpu().contiguous()
            for index, entry in opt["state"].items()
            if entry.get("momentum_buffer") is not None
        }
        save_file(buffers, str(tmp / "optimizer.safetensors"))
        document = {"format": STATE_FORMAT, **state.__dict__, "param_groups": opt["param_groups"]}
        (tmp / "state.json").write_text(json.dumps(document, indent=1) + "\n")
        old = folder.with_name(f".{STATE_DIR}.old")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def has_state(output: Path) -> bool:
    return (Path(output) / STATE_DIR / "state.json").is_file()


def load_state(output: Path) -> tuple[TrainState, dict[str, torch.Tensor], dict[str, Any]]:
    """(state, head weights, optimiser state dict for `Optimizer.load_state_dict`)."""
    folder = Path(output) / STATE_DIR
    try:
        document = json.loads((folder / "state.json").read_text())
        heads = load_file(folder / "heads.safetensors")
        buffers = load_file(folder / "optimizer.safetensors")
    except (OSError, json.JSONDecodeError, UnicodeDecodeError, SafetensorError) as e:
        raise SRGError(f"cannot read the training state in {folder}: {e}") from None
    if document.get("format") != STATE_FORMAT:
        raise SRGError(f"{folder}/state.json has format {document.get('format')!r}; expected {STATE_FORMAT!r}")
    param_groups = document.pop("param_groups")
    document.pop("format")
    try:
        state = TrainState(**document)
    except TypeError as e:
        raise SRGError(f"{folder}/state.json is malformed: {e}") from None
    optimizer = {
        "state": {int(k.split(".")[1]): {"momentum_buffer": v} for k, v in buffers.items()},
        "param_groups": param_groups,
    }
    return state, heads, optimizer
