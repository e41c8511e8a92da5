"""`srg-deploy train`: the heads of a checkpoint trained on a VG-SGG split (`srg_deploy/training/`), with a Rich
progress bar per epoch (loss, images/s) and one line per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from srg_deploy.console import err
from srg_deploy.console import out as console

EPILOG = (
    "Examples:\n\n  srg-deploy train ckpt/ --data datasets/vg --output runs/vg --device cuda"
    " --feature-cache /scratch/vg-features\n\n"
    "  srg-deploy train ckpt/ --data datasets/vg --output runs/vg --resume\n\n"
    "  srg-deploy train ckpt/ --data scene/ --output runs/scene --val-images 8 --epochs 20 --reinit-heads\n\n"
    "Recipe (Scene-Graph-Benchmark's relation training): per image at most 256 ordered pairs, up to 64 of them "
    "ground-truth relations, the rest random pairs without one (label 0); cross-entropy over predicates + 1 and "
    "over the boxes' object labels; SGD momentum 0.9, weight decay 1e-4 (none on biases), gradient norm clipped to "
    "5, constant learning rate (the best epoch by val R@50 is kept instead of a schedule). Trunk and res5 stay "
    "frozen: their features are computed once per image and cached.\n\n"
    "Writes OUTPUT/checkpoint (a normal checkpoint folder, trained: true), OUTPUT/train_log.jsonl, "
    "OUTPUT/curves.png and OUTPUT/state (for --resume)."
)


def train(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder whose heads to train (trunk and res5 frozen).")],
    data: Annotated[Path, typer.Option(help="VG-SGG dataset folder (VG_100K/, image_data.json, VG-SGG*.h5, dicts).")],
    output: Annotated[Path, typer.Option("--output", "-o", help="New folder for this training run.")],
    split: Annotated[Optional[str], typer.Option(help="Split to train on (default train).")] = None,
    val_images: Annotated[
        Optional[int],
        typer.Option(min=0, help="First N split-0 images are val, scored after each epoch (default 5000; 0: no val)."),
    ] = None,
    epochs: Annotated[
        Optional[int], typer.Option(min=1, help="Epochs in all, resumed ones included (default 10).")
    ] = None,
    lr: Annotated[Optional[float], typer.Option(min=0.0, help="SGD learning rate (default 0.01).")] = None,
    batch_size: Annotated[Optional[int], typer.Option(min=1, help="Images per SGD step (default 12).")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or cuda:N.")] = "cpu",
    seed: Annotated[
        Optional[int], typer.Option(help="Seed of the image order, the pair sampling and new heads (default 0).")
    ] = None,
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the run in OUTPUT after its last completed epoch.")
    ] = False,
    reinit_heads: Annotated[
        bool,
        typer.Option(
            "--reinit-heads", help="New object, box-delta and relation heads for the dataset's vocabulary (seeded)."
        ),
    ] = False,
    feature_cache: Annotated[
        Optional[Path],
        typer.Option(help="Keep the frozen features on disk here (float16; needed for full Visual Genome)."),
    ] = None,
) -> None:
    """Train the object and relation heads on a VG-SGG split; keep the best epoch by val PredCls R@50."""
    options = {
        "split": split,
        "val_images": val_images,
        "lr": lr,
        "batch_size": batch_size,
        "seed": seed,
        "reinit_heads": reinit_heads or None,
    }
    run_train(
        checkpoint,
        data=data,
        output=output,
        options=options,
        epochs=epochs,
        device=device,
        resume=resume,
        feature_cache=feature_cache,
    )


class RichMonitor:
    """The trainer's `Monitor`: a bar per stage and the notes above them, on stderr (as `infer`'s progress)."""

    def __init__(self) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<16}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[loss]}"),
            TextColumn("{task.fields[rate]:.1f} images/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        )
        self.task: int | None = None

    def __enter__(self) -> RichMonitor:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def note(self, line: str) -> None:
        self.progress.console.print(line, markup=False)  # above the live bars

    def stage(self, name: str, total: int) -> None:
        self.task = self.progress.add_task(name, total=total, loss="", rate=0.0)

    def advance(self, done: int, loss: float | None) -> None:
        elapsed = self.progress.tasks[self.task].elapsed or 0.0
        self.progress.update(
            self.task,
            completed=done,
            loss="" if loss is None else f"loss {loss:.4f}",
            rate=done / elapsed if elapsed > 0 else 0.0,
        )


def run_train(
    checkpoint: Path,
    *,
    data: Path,
    output: Path,
    options: dict[str, Any],
    epochs: int | None,
    device: str,
    resume: bool,
    feature_cache: Path | None,
) -> dict[str, Any]:
    """Train (torch imported only here), then say where the model, the log and the curves are."""
    from srg_deploy.training.trainer import train

    with RichMonitor() as monitor:
        summary = train(
            checkpoint,
            data,
            output,
            options=options,
            epochs=epochs,
            device=device,
            resume=resume,
            feature_cache=feature_cache,
            monitor=monitor,
        )
    best = summary["best_val_recall@50"]
    which = (
        f"epoch {summary['best_epoch']}, val PredCls R@50 {100 * best:.2f}"
        if best is not None
        else f"epoch {summary['best_epoch']}, the lowest loss on the training split (no val split)"
    )
    console.print(f"trained model: {summary['checkpoint']} ({which})", markup=False)
    console.print(f"training log: {summary['log']}; curves: {summary['curves']}", markup=False)
    console.print(
        f"next: srg-deploy eval {summary['checkpoint']} --data {data}, then srg-deploy export {summary['checkpoint']}"
        " --output model.onnx",
        markup=False,
    )
    return summary
