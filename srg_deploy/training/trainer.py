"""Train the object head and the relation head of a checkpoint on a VG-SGG split, trunk and res5 frozen.

The recipe (`Recipe`) is Scene-Graph-Benchmark's relation training (DESIGN.md §6: `sampling.py`, `loss.py`, the
solver of `e2e_relation_X_101_32_8_FPN_1x.yaml`): per image the sampled ordered pairs of `sampling.py`, cross-entropy
over predicates + 1 (class 0 = no relation) averaged over every sampled pair of the batch, plus cross-entropy on the
ground-truth boxes' labels averaged over every box (the object head serves SGCls); SGD with momentum 0.9, lr 0.01,
weight decay 1e-4 on weights and none on biases (SGB's WEIGHT_DECAY_BIAS = 0), gradients clipped to norm 5, 12 images
per step, constant lr. docs/training.md says why and how it differs from SGB.

Feature normalisation. The heads train on pool5 vectors centred on the training split's mean vector and divided by
one scale (`features.measure_normalisation`: centred elements of RMS 0.5), so they see the same spread whatever the
trunk: a seeded random trunk (norms in the thousands), a pretrained ResNet-101 (tens) or a detector's. Plain SGD on
a linear head is stable only for steps below ~2/λmax, with λmax growing as |f|² (DESIGN.md §8), and pool5's common
direction (every element is positive) alone carries most of |f|²: unnormalised, one recipe cannot fit every trunk.
The normalisation is folded into every layer that reads pool5 when the checkpoint is written (W (x - m) / s + b =
(W / s) x + (b - W m / s)), so the deployed graph, its exports and every backend are unchanged; a checkpoint's own
heads enter training unfolded the other way (the same outputs). SGB's warm-up (factor 0.1 over 500 iterations) and its lr drop on a plateau are not used:
the normalised step does not need the first, and keeping the best epoch replaces the second without state to resume.

Which epoch is kept. Epoch 0 is the untrained model: its loss on the training split (fixed sampling), and its val
R@K when the split has one. The checkpoint is the best epoch by val R@50, or without a val split by that same
training-split loss re-measured after each epoch; the untrained model competes, so the kept one is never worse.
Divergence: an epoch whose loss is not finite, or over DIVERGENCE_FACTOR times the untrained loss, stops the run
with one line (epoch, loss, what to try); the kept checkpoint and the resumable state stay those of earlier epochs.

Relation logits come from `SRGNet.heads` on unordered pairs, both directions, exactly as the deployed graph computes
them; each sampled ordered pair picks its direction. The frozen pool5 vectors come from `features.py`, computed once
per image. Val R@K is PredCls through the datasets' `boxes_prediction` and `SGGEvaluator`, the same computation as
`srg-deploy eval`.

    OUT/checkpoint/      the kept model: config.json + weights (normalisation folded in)
    OUT/train_log.jsonl  one record per epoch (epoch 0: the untrained model)
    OUT/curves.png       loss and val R@K per epoch
    OUT/state/           what --resume continues from (state.py)
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from srg_deploy.atomic import write_text
from srg_deploy.checkpoint import load_model, save_checkpoint
from srg_deploy.config import RUN_CHECKPOINT_DIR, SRGConfig
from srg_deploy.datasets import SGGEvaluator, VGSGGDataset, boxes_prediction
from srg_deploy.defaults import VAL_IMAGES
from srg_deploy.errors import SRGError
from srg_deploy.model import SRGNet
from srg_deploy.scene_graph import all_pairs
from srg_deploy.training.curves import plot_curves
from srg_deploy.training.features import (
    FEATURE_RMS,
    FeatureExtractor,
    Normalisation,
    SplitFeatures,
    frozen_fingerprint,
    measure_normalisation,
    open_cache,
)
from srg_deploy.training.sampling import PAIRS_PER_IMAGE, POSITIVE_FRACTION, sample_pairs, unordered_index
from srg_deploy.training.state import TrainState, has_state, load_state, save_state
from srg_deploy.vocab import vocabulary_difference

READS_POOL5 = ("object_head", "subject_embed", "object_embed", "union_embed")  # where the normalisation folds in
TRAINED = (*READS_POOL5, "relation_head")
REINITIALISED = (*TRAINED, "detector.box_deltas")  # every tensor whose shape follows the vocabulary
CHECKPOINT_DIR, LOG_FILE, CURVES_FILE = RUN_CHECKPOINT_DIR, "train_log.jsonl", "curves.png"
DIVERGENCE_FACTOR = 1.5  # an epoch loss over this many times the untrained model's stops the run
VAL_KEYS = ("images", "recall", "no_graph_constraint_recall", "mean_recall")
DEFAULT_EPOCHS = 10


@dataclass(frozen=True)
class Recipe:
    """What a run is: resuming it with other values would be another run."""

    split: str = "train"
    val_images: int = VAL_IMAGES
    lr: float = 0.01
    batch_size: int = 12
    seed: int = 0
    reinit_heads: bool = False
    momentum: float = 0.9
    weight_decay: float = 1e-4
    grad_clip: float = 5.0
    pairs_per_image: int = PAIRS_PER_IMAGE
    positive_fraction: float = POSITIVE_FRACTION


class Monitor(Protocol):
    """Where a run reports: lines, and a progress bar per stage (an epoch, a validation)."""

    def note(self, line: str) -> None: ...

    def stage(self, name: str, total: int) -> None: ...

    def advance(self, done: int, loss: float | None) -> None: ...


def train(
    checkpoint: Path,
    data: Path,
    output: Path,
    *,
    options: dict[str, Any],
    epochs: int | None,
    device: str = "cpu",
    resume: bool = False,
    feature_cache: Path | None = None,
    monitor: Monitor,
) -> dict[str, Any]:
    """Run (or continue) training; returns a summary: epochs done, best epoch and R@50, checkpoint path.

    `options` are `Recipe` fields the user gave (None: not given): a new run fills the rest with the defaults, a
    resumed one with its saved recipe, and refuses a given value that differs from it. `epochs` may grow."""
    output = Path(output)
    saved = _saved_state(output, resume)
    recipe, epochs = _resolve(options, epochs, saved[0] if saved else None, output)
    if saved and saved[0].epoch >= epochs:
        monitor.note(f"{output} has completed {saved[0].epoch} of {epochs} epochs: nothing to train (raise --epochs)")
        return _summary(output, saved[0])
    torch_device = check_device(device)
    model = load_model(checkpoint)
    fingerprint = frozen_fingerprint(model)
    base = {"checkpoint": str(checkpoint), "provenance": model.config.provenance}
    train_set = VGSGGDataset(data, recipe.split, recipe.val_images)
    val_set = VGSGGDataset(data, "val", recipe.val_images) if recipe.split == "train" and recipe.val_images else None
    monitor.note(train_set.describe())
    if val_set:
        monitor.note(val_set.describe())
    model = _fit_vocabulary(model, checkpoint, train_set, recipe, monitor).to(torch_device)
    optimizer = head_optimizer(model, recipe)
    rng = np.random.default_rng(recipe.seed)
    images = _image_key(train_set)
    extractor = FeatureExtractor(model, device)
    train_features = SplitFeatures(train_set, extractor, open_cache(feature_cache, fingerprint, train_set, "train"))
    val_features = (
        SplitFeatures(val_set, extractor, open_cache(feature_cache, fingerprint, val_set, "val")) if val_set else None
    )
    if saved:
        state, heads, optimizer_state = saved
        if state.fingerprint != fingerprint:
            raise SRGError(f"--resume: the trunk and res5 of {checkpoint} are not the ones {output} was trained from")
        if state.train_images != images:
            raise SRGError(f"--resume: the {recipe.split} split of {data} is not the one {output} was trained on")
        model.load_state_dict({**model.state_dict(), **heads})
        optimizer.load_state_dict(optimizer_state)  # after the model moved: buffers follow their parameters
        rng.bit_generator.state = state.rng
        state.epochs = epochs
        monitor.note(f"resuming {output} after epoch {state.epoch} of {epochs}")
    else:
        output.mkdir(parents=True, exist_ok=True)
        norm = measure_normalisation(train_features)
        fresh = REINITIALISED if recipe.reinit_heads else _restart_random_heads(model, checkpoint, recipe, monitor)
        # the checkpoint's own heads on normalised features: the same outputs
        unfold_normalisation(model, norm, [m for m in READS_POOL5 if m not in fresh])
        monitor.note(
            f"feature normalisation: pool5 minus the {recipe.split} split's mean (norm {float(norm.mean.norm()):.4g}), "
            f"over {norm.scale:.4g} (centred RMS / {FEATURE_RMS:g}); folded into the saved weights"
        )
        recipe_dict = dataclasses.asdict(recipe)
        mean = norm.mean.tolist()
        state = TrainState(0, epochs, None, None, None, [], {}, recipe_dict, images, fingerprint, mean, norm.scale)
    norm = Normalisation(torch.tensor(state.feature_mean, dtype=torch.float32), state.feature_scale)
    train_features.normalisation = norm
    if val_features:
        val_features.normalisation = norm
    context = _Context(output, base, train_set, recipe, torch_device, norm)
    if not state.history:
        record = {"epoch": 0, "fit_loss": fit_loss(model, train_features, recipe, torch_device, monitor, "untrained")}
        if val_features:
            record["val"] = validate(model, val_features, torch_device, monitor, "val, untrained")
        _keep_if_best(record, model, state, context)
        state.history.append(record)
        _save_progress(state, model, optimizer, rng, context, checkpoint, data)  # a run stopped in epoch 1 resumes
        monitor.note(_describe_epoch(record, epochs, output))
    while state.epoch < epochs:
        state.epoch += 1
        name = f"epoch {state.epoch}/{epochs}"
        record = {
            "epoch": state.epoch,
            **_train_epoch(model, optimizer, train_features, rng, recipe, torch_device, monitor, name),
        }
        untrained = state.history[0]["fit_loss"]
        if not np.isfinite(record["loss"]) or record["loss"] > DIVERGENCE_FACTOR * untrained:
            state.history.append({**record, "diverged": True})
            _write_log(state, output, checkpoint, data, len(train_set), recipe)
            raise SRGError(_diverged(record, untrained, state, recipe, output))
        if val_features:
            record["val"] = validate(model, val_features, torch_device, monitor, f"val {state.epoch}/{epochs}")
        else:
            record["fit_loss"] = fit_loss(model, train_features, recipe, torch_device, monitor, f"fit {state.epoch}")
        _keep_if_best(record, model, state, context)
        state.history.append(record)
        _save_progress(state, model, optimizer, rng, context, checkpoint, data)
        monitor.note(_describe_epoch(record, epochs, output))
    return _summary(output, state)


@dataclass(frozen=True)
class _Context:
    """What writing the kept checkpoint needs besides the model and the state."""

    output: Path
    base: dict
    dataset: VGSGGDataset
    recipe: Recipe
    device: torch.device
    normalisation: Normalisation


def _keep_if_best(record: dict, model: SRGNet, state: TrainState, context: _Context) -> None:
    """Mark `record` best and write the checkpoint when it beats the kept epoch: higher val R@50 or, without a val
    split, a lower training-split loss; ties go to the later epoch (as good, after more training)."""
    if "val" in record:
        recall = record["val"]["recall"]["50"]
        record["best"] = state.best_recall is None or recall >= state.best_recall
        if record["best"]:
            state.best_recall = recall
    else:
        record["best"] = state.best_loss is None or record["fit_loss"] <= state.best_loss
        if record["best"]:
            state.best_loss = record["fit_loss"]
    if record["best"]:
        state.best_epoch = record["epoch"]
        _save_model(model, state, context)


def _save_progress(
    state: TrainState,
    model: SRGNet,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
    context: _Context,
    checkpoint: Path,
    data: Path,
) -> None:
    """What --resume continues from, and the log and curves so far."""
    state.rng = rng.bit_generator.state
    save_state(context.output, state, _heads(model), optimizer)
    _write_log(state, context.output, checkpoint, data, len(context.dataset), context.recipe)


def _write_log(state: TrainState, output: Path, checkpoint: Path, data: Path, images: int, recipe: Recipe) -> None:
    write_text(output / LOG_FILE, "".join(json.dumps(r) + "\n" for r in state.history))
    title = f"{Path(checkpoint).name} on {data}: {images} {recipe.split} images"
    plot_curves(state.history, output / CURVES_FILE, title)


def _diverged(record: dict, untrained: float, state: TrainState, recipe: Recipe, output: Path) -> str:
    loss = record["loss"]
    how = "not finite" if not np.isfinite(loss) else f"{loss / untrained:.1f}x the untrained model's {untrained:.4g}"
    return (
        f"training diverged in epoch {record['epoch']}: loss {loss:.4g} ({how}); stopped, keeping epoch "
        f"{state.best_epoch} in {output / CHECKPOINT_DIR}; try a lower --lr than {recipe.lr:g} (e.g. "
        f"{recipe.lr / 10:g}) in a new --output"
    )


def check_device(device: str) -> torch.device:
    """cpu, cuda or cuda:N, refused in one line when PyTorch cannot use it here."""
    if device != "cpu" and device != "cuda" and not (device.startswith("cuda:") and device[5:].isdigit()):
        raise SRGError(f"--device {device!r}: expected cpu, cuda or cuda:N")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SRGError(f"--device {device}: PyTorch sees no CUDA GPU on this machine; use --device cpu")
        index = int(device[5:]) if ":" in device else 0
        if index >= torch.cuda.device_count():
            raise SRGError(f"--device {device}: there are {torch.cuda.device_count()} CUDA GPUs (cuda:0 ...)")
    return torch.device(device)


@torch.no_grad()
def validate(model: SRGNet, features: SplitFeatures, device: torch.device, monitor: Monitor, name: str) -> dict:
    """PredCls on every image of the split, all ordered pairs, through `boxes_prediction` + `SGGEvaluator`."""
    evaluator = SGGEvaluator(features.dataset.predicates)
    monitor.stage(name, len(features))
    for n, (gt, boxes, unions) in enumerate(features.items(range(len(features))), 1):
        pairs = all_pairs(len(gt.boxes))
        _, object_logits, relation_logits = model.heads(
            boxes.to(device), unions.to(device), torch.from_numpy(pairs).to(device)
        )
        evaluator.add(
            gt, boxes_prediction(gt, "predcls", pairs, object_logits.cpu().numpy(), relation_logits.cpu().numpy())
        )
        monitor.advance(n, None)
    result = evaluator.result()
    return {k: result[k] for k in VAL_KEYS}


def _train_epoch(
    model: SRGNet,
    optimizer: torch.optim.Optimizer,
    features: SplitFeatures,
    rng: np.random.Generator,
    recipe: Recipe,
    device: torch.device,
    monitor: Monitor,
    name: str,
) -> dict[str, Any]:
    """One pass over the split in a random order, `batch_size` images per SGD step (cut short by a loss that is
    not finite)."""
    started, computed = time.perf_counter(), features.computed
    order = rng.permutation(len(features))
    totals, steps, batch = np.zeros(3), 0, []
    monitor.stage(name, len(order))
    for n, item in enumerate(features.items(order), 1):
        batch.append(item)
        if len(batch) < recipe.batch_size and n < len(order):
            continue
        losses = train_step(model, optimizer, batch, rng, recipe, device)
        totals, steps, batch = totals + losses, steps + 1, []
        monitor.advance(n, totals[0] / steps)
        if not np.isfinite(losses[0]):
            break  # diverged: the caller stops the run
    seconds = time.perf_counter() - started
    return {
        "loss": totals[0] / steps,
        "relation_loss": totals[1] / steps,
        "object_loss": totals[2] / steps,
        "lr": optimizer.param_groups[0]["lr"],
        "images": len(order),
        "seconds": round(seconds, 3),
        "images_per_s": len(order) / seconds,
        "features_computed": features.computed - computed,
    }


@torch.no_grad()
def fit_loss(
    model: SRGNet, features: SplitFeatures, recipe: Recipe, device: torch.device, monitor: Monitor, name: str
) -> float:
    """The model's loss on the whole split as an epoch sees it (`batch_size` images per batch, the recipe's
    sampling), in image order with a sampling RNG seeded afresh: every epoch is measured on the same pairs, and the
    run's own RNG is untouched (a resumed run stays exact)."""
    rng = np.random.default_rng(recipe.seed)
    total, batches, batch = 0.0, 0, []
    monitor.stage(f"loss, {name}", len(features))
    for n, item in enumerate(features.items(range(len(features))), 1):
        batch.append(item)
        if len(batch) == recipe.batch_size or n == len(features):
            total, batches, batch = total + batch_loss(model, batch, rng, recipe, device)[0].item(), batches + 1, []
            monitor.advance(n, total / batches)
    return total / batches


def train_step(
    model: SRGNet,
    optimizer: torch.optim.Optimizer,
    batch: list,
    rng: np.random.Generator,
    recipe: Recipe,
    device: torch.device,
) -> np.ndarray:
    """One SGD step on a batch of (ground truth, box features, union features); returns (loss, relation, object).
    A loss that is not finite is returned without a step: the weights stay those before it."""
    loss, relation_loss, object_loss = batch_loss(model, batch, rng, recipe, device)
    optimizer.zero_grad(set_to_none=True)
    if torch.isfinite(loss):
        loss.backward()
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, recipe.grad_clip)
        optimizer.step()
    return np.array([loss.item(), relation_loss.item(), object_loss.item()])


def batch_loss(
    model: SRGNet, batch: list, rng: np.random.Generator, recipe: Recipe, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(loss, relation loss, object loss) of a batch of (ground truth, box features, union features).

    The batch's images go through `heads` as one block-diagonal graph: their regions stacked, each image's pairs
    offset to its own regions, so a step is a few large matrix products instead of a few per image."""
    features, unions, pairs, picks, directions, labels, object_labels = [], [], [], [], [], [], []
    regions = rows = 0
    for gt, boxes, image_unions in batch:
        n = len(gt.boxes)
        ordered, image_labels = sample_pairs(n, gt.relations, rng, recipe.pairs_per_image, recipe.positive_fraction)
        index, direction = unordered_index(ordered, n)
        used, inverse = np.unique(index, return_inverse=True)
        features.append(boxes)
        unions.append(image_unions[torch.from_numpy(used)])
        pairs.append(all_pairs(n)[used] + regions)
        picks.append(inverse.reshape(-1) + rows)
        directions.append(direction)
        labels.append(image_labels)
        object_labels.append(gt.labels)
        regions, rows = regions + n, rows + len(used)
    _, object_logits, relation_logits = model.heads(
        torch.cat(features).to(device),
        torch.cat(unions).to(device),
        torch.from_numpy(np.concatenate(pairs).reshape(-1, 2)).to(device),
    )
    chosen = relation_logits[torch.from_numpy(np.concatenate(picks)), torch.from_numpy(np.concatenate(directions))]
    target = torch.from_numpy(np.concatenate(labels)).to(device)
    relation_loss = F.cross_entropy(chosen, target) if len(target) else torch.zeros((), device=device)
    object_loss = F.cross_entropy(object_logits, torch.from_numpy(np.concatenate(object_labels)).to(device))
    return relation_loss + object_loss, relation_loss, object_loss


def _saved_state(output: Path, resume: bool) -> tuple[TrainState, dict, dict] | None:
    """The state to continue from; a new run needs a new (or empty) folder, a resumed one a state inside."""
    if not output.exists():
        return None
    if not output.is_dir():
        raise SRGError(f"--output {output} is a file; expected a folder for the training run")
    if not resume:
        if any(output.iterdir()):
            raise SRGError(
                f"--output {output} already exists; pass --resume to continue that run, or name a new folder"
            )
        return None
    if not has_state(output):
        raise SRGError(f"--resume: {output} holds no training state ({output}/state/state.json); nothing to continue")
    return load_state(output)


def _resolve(options: dict[str, Any], epochs: int | None, saved: TrainState | None, output: Path) -> tuple[Recipe, int]:
    """The run's recipe and epoch count: given values over the defaults, or over a resumed run's own."""
    if saved is None:
        return Recipe(**{k: v for k, v in options.items() if v is not None}), epochs or DEFAULT_EPOCHS
    for key, value in options.items():
        if value is not None and value != saved.recipe[key]:
            raise SRGError(
                f"--resume: {output} was trained with --{key.replace('_', '-')} {saved.recipe[key]} (now {value}); "
                "resume with the same settings or start a new --output"
            )
    return Recipe(**saved.recipe), epochs or saved.epochs


def _fit_vocabulary(model: SRGNet, checkpoint: Path, dataset: VGSGGDataset, recipe: Recipe, monitor: Monitor) -> SRGNet:
    """The model whose heads will train: the checkpoint's, or with --reinit-heads new ones for the dataset's
    vocabulary (object head, box-delta head, relation head; seeded), trunk, res5 and RPN kept."""
    difference = vocabulary_difference(
        model.config.objects, model.config.predicates, dataset.objects, dataset.predicates
    )
    if not recipe.reinit_heads:
        if difference:
            raise SRGError(
                f"{checkpoint} and {dataset.root} have different vocabularies: {difference}; pass --reinit-heads to "
                "train new heads for the dataset's vocabulary"
            )
        return model
    config = dataclasses.replace(model.config, objects=dataset.objects, predicates=dataset.predicates)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(recipe.seed)
        fresh = SRGNet(config)
    kept = {k: v for k, v in model.state_dict().items() if not k.startswith(tuple(f"{m}." for m in REINITIALISED))}
    fresh.load_state_dict({**fresh.state_dict(), **kept})
    monitor.note(
        f"--reinit-heads: new object, box-delta and relation heads (seed {recipe.seed}) for {len(dataset.objects)} "
        f"objects and {len(dataset.predicates)} predicates; trunk, res5 and RPN from {checkpoint}"
    )
    return fresh.eval()


def random_heads(config: SRGConfig) -> tuple[str, ...]:
    """The trained heads whose weights are seeded noise: every one for a model of `srg-deploy init` (trunk seeded or
    from torchvision), the relation heads for a detectron2 import (its object head is the detector's), none for a
    trained model."""
    if config.trained:
        return ()
    if "detectron2" in config.provenance:
        return tuple(m for m in TRAINED if m != "object_head")
    return TRAINED


def _restart_random_heads(model: SRGNet, checkpoint: Path, recipe: Recipe, monitor: Monitor) -> tuple[str, ...]:
    """Seeded heads start anew at the scale of the normalised features. Their weights carry nothing, but were sized
    for raw pool5: unfolded onto a trunk whose pool5 norms are in the thousands, they would start with logits in the
    hundreds, which steps bounded by the gradient clip take far longer than a run to bring down."""
    restart = random_heads(model.config)
    if not restart:
        return ()
    restart_heads(model, restart, recipe.seed)
    monitor.note(
        f"{checkpoint} is untrained: its {', '.join(restart)} are seeded noise and start anew (seed {recipe.seed}) "
        "for the normalised features"
    )
    return restart


def restart_heads(model: SRGNet, heads: tuple[str, ...], seed: int) -> None:
    """Replace `heads` with PyTorch's default initialisation of a new model seeded with `seed`."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = SRGNet(model.config)
    prefixes = tuple(f"{m}." for m in heads)
    model.load_state_dict(
        {**model.state_dict(), **{k: v for k, v in fresh.state_dict().items() if k.startswith(prefixes)}}
    )


def head_optimizer(model: SRGNet, recipe: Recipe) -> torch.optim.SGD:
    """Freeze everything but the trained heads; SGD over those, weight decay on weights only (SGB's
    WEIGHT_DECAY_BIAS = 0), parameters in a fixed order so that a saved optimiser state fits again."""
    model.requires_grad_(False)
    weights, biases = [], []
    for module in TRAINED:
        for name, p in getattr(model, module).named_parameters():
            p.requires_grad_(True)
            (biases if name == "bias" else weights).append(p)
    return torch.optim.SGD(
        [{"params": weights, "weight_decay": recipe.weight_decay}, {"params": biases, "weight_decay": 0.0}],
        lr=recipe.lr,
        momentum=recipe.momentum,
    )


def _heads(model: SRGNet) -> dict[str, torch.Tensor]:
    prefixes = tuple(f"{m}." for m in REINITIALISED)
    return {k: v for k, v in model.state_dict().items() if k.startswith(prefixes)}


def _image_key(dataset: VGSGGDataset) -> str:
    """Which images a run trains on (ids of the split, after its filters), as a short hash."""
    ids = json.dumps([gt.image_id for gt in dataset])
    return hashlib.sha256(ids.encode()).hexdigest()[:16]


@torch.no_grad()
def unfold_normalisation(
    model: SRGNet, norm: Normalisation, modules: tuple[str, ...] | list[str] = READS_POOL5
) -> None:
    """Heads that read pool5 -> the same heads on normalised features: b + W m, then W s."""
    for name in modules:
        layer = getattr(model, name)
        layer.bias.add_(layer.weight @ norm.mean.to(layer.weight))
        layer.weight.mul_(norm.scale)


@torch.no_grad()
def fold_normalisation(model: SRGNet, norm: Normalisation) -> None:
    """Heads on normalised features -> the same heads on pool5: W / s, then b - (W / s) m."""
    for name in READS_POOL5:
        layer = getattr(model, name)
        layer.weight.div_(norm.scale)
        layer.bias.sub_(layer.weight @ norm.mean.to(layer.weight))


def _save_model(model: SRGNet, state: TrainState, context: _Context) -> None:
    """The model as it is now, normalisation folded in, as a checkpoint folder anyone can load (`trained: true`, provenance
    says how)."""
    provenance = {
        "trained_from": context.base["checkpoint"],
        "base_provenance": context.base["provenance"],
        "dataset": str(context.dataset.root),
        "split": context.dataset.split,
        "train_images": len(context.dataset),
        "epoch": state.epoch,
        "epochs_planned": state.epochs,
        "best_val_recall@50": state.best_recall,
        "best_fit_loss": state.best_loss,
        "feature_scale": context.normalisation.scale,
        "recipe": dataclasses.asdict(context.recipe),
    }
    folded = copy.deepcopy(model).cpu()
    fold_normalisation(folded, context.normalisation)
    folded.config = dataclasses.replace(model.config, trained=True, provenance=provenance)
    save_checkpoint(folded, context.output / CHECKPOINT_DIR)


def _describe_val(val: dict) -> str:
    recall = "/".join(f"{100 * v:.2f}" for v in val["recall"].values())
    return f"val PredCls R@{'/'.join(val['recall'])} {recall}, mR@50 {100 * val['mean_recall']['50']:.2f}"


def _describe_epoch(record: dict, epochs: int, output: Path) -> str:
    if record["epoch"] == 0:
        line = f"epoch 0 (untrained): loss on the training split {record['fit_loss']:.4f}"
    else:
        line = (
            f"epoch {record['epoch']}/{epochs}: loss {record['loss']:.4f} (relation {record['relation_loss']:.4f}, "
            f"object {record['object_loss']:.4f}), {record['images_per_s']:.1f} images/s"
        )
        if "fit_loss" in record:
            line += f"; after it {record['fit_loss']:.4f}"
    if "val" in record:
        line += f"; {_describe_val(record['val'])}"
    if record["best"]:
        line += f"; saved {output / CHECKPOINT_DIR} (best so far)"
    return line


def _summary(output: Path, state: TrainState) -> dict[str, Any]:
    return {
        "train_images": next((r["images"] for r in state.history if "images" in r), None),
        "epochs": state.epoch,
        "best_epoch": state.best_epoch,
        "best_val_recall@50": state.best_recall,
        "best_fit_loss": state.best_loss,
        "checkpoint": str(output / CHECKPOINT_DIR),
        "log": str(output / LOG_FILE),
        "curves": str(output / CURVES_FILE),
    }
