"""Checkpoint folders (`config.json` + `model.safetensors`) and the safe ways weights come in.

Nothing pickled is ever executed: native weights are safetensors, torchvision `.pth` files are read with
`torch.load(weights_only=True)`, and detectron2 `.pkl` files go through `safe_pickle`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
import torchvision
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from srg_deploy.config import CONFIG_FILE, WEIGHTS_FILE, SRGConfig, is_checkpoint, resolve_checkpoint
from srg_deploy.errors import SRGError
from srg_deploy.model import SRGNet


def load_model(path: Path) -> SRGNet:
    """Checkpoint folder (or a training run folder: its trained model) -> SRGNet in eval mode; missing, unexpected
    or misshapen tensors are named."""
    path = resolve_checkpoint(path)
    if not path.exists():
        raise SRGError(f"checkpoint {path} does not exist")
    if not is_checkpoint(path):
        raise SRGError(f"{path} is not a checkpoint folder (expected {CONFIG_FILE} and {WEIGHTS_FILE} inside)")
    config = SRGConfig.load(path / CONFIG_FILE)
    weights = path / WEIGHTS_FILE
    if not weights.is_file():
        raise SRGError(f"checkpoint {path} has no {WEIGHTS_FILE}")
    try:
        state = load_file(weights)
    except (SafetensorError, OSError) as e:
        raise SRGError(f"cannot read {weights}: {e}") from None
    model = SRGNet(config)
    load_state(model, state, source=str(weights))
    return model


def load_state(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Strict load with a readable report instead of PyTorch's RuntimeError."""
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [
        f"{k}: {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    problems = []
    if missing:
        problems.append(f"missing {_names(missing)}")
    if unexpected:
        problems.append(f"unexpected {_names(unexpected)}")
    if shapes:
        problems.append(f"shape mismatch {_names(shapes)}")
    if problems:
        raise SRGError(f"weights in {source} do not fit the model: " + "; ".join(problems))
    model.load_state_dict(dict(state), strict=True)


def save_checkpoint(model: SRGNet, path: Path) -> None:
    """Write the folder atomically: build it next to the target, then rename it into place."""
    path = Path(path)
    if path.exists() and not is_checkpoint(path):
        raise SRGError(f"{path} exists and is not a checkpoint folder; refusing to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        model.config.save(tmp / CONFIG_FILE)
        state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "srg-deploy/1"})
        if path.exists():
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def torchvision_backbone_state(path: Path) -> dict[str, torch.Tensor]:
    """A torchvision ResNet-101 state dict file (`conv1.*`, `layer1.*` ... as torchvision names them) mapped onto
    SRGNet's trunk (conv1..layer3) and res5 (layer4). The ImageNet `fc.*` is dropped; anything else is an error."""
    path = Path(path)
    if not path.is_file():
        raise SRGError(f"backbone file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises UnpicklingError, RuntimeError, EOFError... for bad files
        raise SRGError(
            f"cannot read backbone {path} as a weights-only PyTorch file: {str(e).splitlines()[0]}"
        ) from None
    if isinstance(state, Mapping) and "state_dict" in state and isinstance(state["state_dict"], Mapping):
        state = state["state_dict"]
    if not isinstance(state, Mapping):
        raise SRGError(f"backbone {path} holds a {type(state).__name__}; expected a state dict")
    mapped, unknown = {}, []
    for key, value in state.items():
        key = key.removeprefix("module.")
        head = key.split(".", 1)[0]
        if head in ("conv1", "bn1", "layer1", "layer2", "layer3"):
            mapped[f"trunk.{key}"] = value
        elif head == "layer4":
            mapped[f"res5.{key.split('.', 1)[1]}"] = value
        elif head != "fc":
            unknown.append(key)
    if unknown:
        raise SRGError(f"backbone {path} has keys a torchvision ResNet-101 does not: {_names(unknown)}")
    return mapped


def merge_backbone(model: SRGNet, backbone: Mapping[str, torch.Tensor], source: str) -> None:
    """Overwrite trunk and res5 with `backbone`; every trunk/res5 tensor must be given with the right shape."""
    own = model.state_dict()
    needed = [k for k in own if k.startswith(("trunk.", "res5."))]
    merged = dict(own)
    missing = [k for k in needed if k not in backbone]
    if missing:
        raise SRGError(f"backbone {source} lacks {_names(missing)}")
    for k in needed:
        if backbone[k].shape != own[k].shape:
            raise SRGError(
                f"backbone {source}: {k} has shape {tuple(backbone[k].shape)}, expected {tuple(own[k].shape)}"
            )
        merged[k] = backbone[k].to(own[k].dtype)
    model.load_state_dict(merged)


def _names(items: list[str], limit: int = 8) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f" (and {len(items) - limit} more)" if len(items) > limit else "")


def random_model(config: SRGConfig, seed: int) -> SRGNet:
    """Every weight from a seeded generator: the same seed gives the same checkpoint on any machine.

    BatchNorm statistics are then calibrated on seeded noise (see `calibrate_batchnorm`): with torchvision's
    default init (mean 0, variance 1) activations grow ~100x per stage and an fp16 engine would overflow, which
    would make the random model useless for testing precision."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SRGNet(config)
        calibrate_batchnorm(model, seed)
    return model


@torch.no_grad()
def calibrate_batchnorm(model: SRGNet, seed: int, size: int = 192) -> None:
    """Set every BatchNorm's running statistics to its batch statistics on two seeded noise images (trunk) and
    their RoIs (res5), so each normalised activation has roughly unit scale in eval mode."""
    g = torch.Generator().manual_seed(seed)
    # Noise at several scales, roughly the 1/f spectrum of photographs: i.i.d. pixel noise alone calibrates the
    # stem for texture no camera produces, and smooth real frames then drive activations far out of range.
    images = (
        sum(
            torch.nn.functional.interpolate(torch.randn(2, 3, n, n, generator=g), size=(size, size), mode="bilinear")
            for n in (3, 12, 48, size)
        )
        / 2.0
    )
    corners = torch.rand(16, 2, generator=g) * size * 0.6
    extents = 16 + torch.rand(16, 2, generator=g) * size * 0.4
    rois = torch.cat([torch.arange(16)[:, None] % 2, corners, corners + extents], dim=1).float()
    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: one batch gives exactly that batch's statistics
    model.train()
    arch = model.config.architecture
    size_out = (arch.roi_output_size, arch.roi_output_size)
    model.res5(torchvision.ops.roi_pool(model.trunk(images), rois, size_out, arch.spatial_scale))
    for m in norms:
        m.momentum = 0.1
    model.eval()
