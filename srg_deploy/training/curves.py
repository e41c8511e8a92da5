"""The training run as a picture: loss per epoch and, when there is a validation split, PredCls R@K per epoch with
the epoch whose model was kept. The loss panel also shows the training-split loss measured after each epoch (epoch 0:
the untrained model), the loss that picks the kept epoch when there is no val split.

matplotlib draws on an Agg canvas of its own (no pyplot, no display, no global backend switch).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from srg_deploy.atomic import atomic_path
from srg_deploy.errors import SRGError


def plot_curves(history: list[dict[str, Any]], path: Path, title: str) -> None:
    """Write `path` (PNG) from the epoch records of the training log."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise SRGError("drawing the training curves needs matplotlib: pip install matplotlib") from None
    trained = [r for r in history if "loss" in r]
    validated = [r for r in history if "val" in r]
    figure = Figure(figsize=(10 if validated else 5, 4), dpi=100, layout="constrained")
    axes = figure.subplots(1, 2 if validated else 1, squeeze=False)[0]
    epochs = [r["epoch"] for r in trained]
    for key, label in (("loss", "total"), ("relation_loss", "relation"), ("object_loss", "object")):
        axes[0].plot(epochs, [r[key] for r in trained], marker="o", label=label)
    fitted = [r for r in history if "fit_loss" in r]
    axes[0].plot(
        [r["epoch"] for r in fitted], [r["fit_loss"] for r in fitted], marker="s", linestyle="--", label="after epoch"
    )
    axes[0].set(xlabel="epoch", ylabel="cross-entropy (mean per pair / per box)", title="training loss")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    if validated:
        epochs = [r["epoch"] for r in validated]
        for k in validated[0]["val"]["recall"]:
            axes[1].plot(epochs, [100 * r["val"]["recall"][k] for r in validated], marker="o", label=f"R@{k}")
        axes[1].plot(
            epochs, [100 * r["val"]["mean_recall"]["50"] for r in validated], marker="s", linestyle="--", label="mR@50"
        )
        best = [r["epoch"] for r in history if r.get("best")]
        if best:
            axes[1].axvline(best[-1], color="grey", linestyle=":", label=f"kept: epoch {best[-1]}")
        axes[1].set(xlabel="epoch (0 = before training)", ylabel="%", title="PredCls on val", ylim=(0, 100))
        axes[1].legend()
        axes[1].grid(alpha=0.3)
    figure.suptitle(title)
    with atomic_path(path, suffix=".png") as tmp:
        figure.savefig(tmp, format="png")
