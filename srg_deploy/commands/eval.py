"""`srg-deploy eval`: the field's Recall@K of one or more models on a VG-SGG split, side by side.

Every model is opened and checked (task, vocabulary) before any image is read; then each image is read once and
run through every model (`runtime/evaluate.py`), so the columns compare the same images. The table shows percent;
`--report` writes fractions in [0, 1]: the first model's results at the top level (the issue's schema), every
model's under "models", each after the first with its deltas against the first.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from srg_deploy.atomic import write_text
from srg_deploy.commands.options import CacheDir, Device
from srg_deploy.console import err
from srg_deploy.console import out as console
from srg_deploy.defaults import VAL_IMAGES
from srg_deploy.errors import SRGError

TASK_NAMES = {"predcls": "PredCls", "sgcls": "SGCls", "sgdet": "SGDet"}
ROWS = (("R", "recall"), ("ngR", "no_graph_constraint_recall"), ("mR", "mean_recall"))

EPILOG = (
    "Examples:\n\n  srg-deploy eval runs/vg/checkpoint --data datasets/vg --report predcls.json\n\n"
    "  srg-deploy eval runs/vg/checkpoint model.onnx model-fp16.onnx model.engine --data datasets/vg\n\n"
    "  srg-deploy eval runs/vg/checkpoint model.onnx openvino:bf16:model.onnx onnxruntime:model-int8.onnx"
    " --data datasets/vg\n\n"
    "  srg-deploy eval sgdet.onnx --data datasets/vg --mode sgdet --max-images 1000\n\n"
    "Metrics as Scene-Graph-Benchmark computes them: graph-constrained R@K, no-graph-constraint ngR@K, mean recall "
    "mR@K (K = 20, 50, 100). Several models are run on the same images; columns after the first show the change. "
    "A model is [BACKEND[:PRECISION]:]PATH: the backend (torch, onnxruntime, openvino, tensorrt; default from the "
    "path) and, for openvino, its inference precision (fp32, bf16, fp16; default fp32)."
)


def eval_(
    models: Annotated[
        list[Path],
        typer.Argument(
            help="Checkpoint folders, .onnx or .engine files, each optionally BACKEND[:PRECISION]:PATH (e.g."
            " openvino:bf16:model.onnx); the first is the baseline."
        ),
    ],
    data: Annotated[Path, typer.Option(help="VG-SGG dataset folder.")],
    split: Annotated[str, typer.Option(help="train, val or test.")] = "test",
    val_images: Annotated[
        int, typer.Option(min=0, help="First N split-0 images are val (as train used).")
    ] = VAL_IMAGES,
    mode: Annotated[
        str, typer.Option(help="predcls (boxes and labels given), sgcls (boxes given) or sgdet (an sgdet model).")
    ] = "predcls",
    max_images: Annotated[Optional[int], typer.Option(min=1, help="Evaluate the first N images of the split.")] = None,
    report: Annotated[
        Optional[Path], typer.Option(help="Write every result here as JSON (fractions in [0, 1]).")
    ] = None,
    device: Device = None,
    cache_dir: CacheDir = None,
) -> None:
    """Recall@K, no-graph-constraint R@K and mean R@K of one or more models on a VG-SGG split."""
    run_eval(
        models,
        data=data,
        split=split,
        val_images=val_images,
        task=mode,
        max_images=max_images,
        report=report,
        device=device,
        cache_dir=cache_dir,
    )


def run_eval(
    models: list[Path],
    *,
    data: Path,
    split: str,
    val_images: int,
    task: str,
    max_images: int | None,
    report: Path | None,
    device: str | None = None,
    cache_dir: Path | None = None,
) -> list[dict]:
    """Evaluate, print the table, write the report; returns one result per model."""
    from srg_deploy.datasets import VGSGGDataset
    from srg_deploy.runtime.evaluate import BACKEND_MODE, TASKS, check_model, evaluate
    from srg_deploy.runtime.loader import ModelSpec, existing_model, open_backend

    if task not in TASKS:
        raise SRGError(f"unknown --mode {task!r}; expected one of {', '.join(TASKS)}")
    if not models:
        raise SRGError("name at least one model to evaluate")
    specs = [ModelSpec.parse(str(m)) for m in models]
    for spec in specs:
        existing_model(spec.path)
    dataset = VGSGGDataset(data, split, val_images, max_images=max_images)
    err.print(dataset.describe(), markup=False)
    with ExitStack() as stack:
        opened = []
        for spec in specs:
            openvino = spec.backend == "openvino"
            backend = stack.enter_context(
                open_backend(
                    spec.path,
                    spec.backend,
                    mode=BACKEND_MODE[task],
                    precision=spec.precision,
                    device=device if openvino else None,
                    cache_dir=cache_dir if openvino else None,
                )
            )
            check_model(backend, spec.text, task, dataset)
            err.print(f"{spec.text}: {backend.describe()}", markup=False)
            opened.append((spec.text, backend))
        progress = Progress(
            TextColumn(f"{TASK_NAMES[task]} {split}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.2f} images/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
        )
        with progress:
            bar = progress.add_task("eval", total=len(dataset), rate=0.0)

            def advance(done: int) -> None:
                elapsed = progress.tasks[bar].elapsed or 0.0
                progress.update(bar, completed=done, rate=done / elapsed if elapsed > 0 else 0.0)

            results = evaluate(dataset, opened, task, on_image=advance)
    console.print(results_table(results, f"{TASK_NAMES[task]} on {data} ({split} split)"))
    if report:
        document = {
            "mode": task,
            "split": split,
            "dataset": str(data),
            "val_images": val_images,
            **{k: v for k, v in results[0].items() if k != "delta"},
            "models": results,
        }
        write_text(report, json.dumps(document, indent=2) + "\n")
        console.print(f"wrote {report}", markup=False)
    return results


def results_table(results: list[dict], title: str) -> Table:
    """Rows: R@K, ngR@K, mR@K (percent), images, ms per image; a column per model, deltas after the first."""
    table = Table(title=title, title_justify="left")
    table.add_column("metric")
    for n, result in enumerate(results):
        table.add_column(result["model"] + ("" if n == 0 else " (Δ vs first)"), justify="right")
    for short, key in ROWS:
        for k in results[0][key]:
            cells = [f"{100 * results[0][key][k]:.2f}"]
            cells += [f"{100 * r[key][k]:.2f} ({100 * r['delta'][key][k]:+.2f})" for r in results[1:]]
            table.add_row(f"{short}@{k}", *cells)
    table.add_row("images", *(str(r["images"]) for r in results))
    table.add_row("ms / image", *(f"{1000 * r['seconds_per_image']:.1f}" for r in results))
    return table
