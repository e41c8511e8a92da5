"""`srg-deploy train`: the heads of a checkpoint trained on a VG-SGG split (`srg_deploy/training/`), with a Rich
progress bar per epoch (loss, images/s) and one line per epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from srg_deploy.console import err
from srg_deploy.console import out as console


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
