"""`srg-deploy export-triton`: an exported model as a Triton Inference Server model repository entry.

The work is in `srg_deploy.export.triton_repo` (no torch, no TensorRT); this only reports what was written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from srg_deploy.console import err as console

EPILOG = (
    "Examples:\n\n  srg-deploy export-triton model.onnx --repository models/ --name srg --instances 2\n\n"
    "  srg-deploy export-triton model.engine --repository models/ --name srg_trt\n\n"
    "  srg-deploy export-triton model.onnx --repository models/ --kind gpu\n\n"
    "Then: tritonserver --model-repository models/ (docs/triton.md has a client example)."
)


def export_triton(
    model: Annotated[Path, typer.Argument(help=".onnx from `srg-deploy export`, or .engine from `build-engine`.")],
    repository: Annotated[
        Path, typer.Option(help="Triton model repository folder (created if missing; other models are kept).")
    ],
    name: Annotated[Optional[str], typer.Option(help="Model name (its folder); default: the file's stem.")] = None,
    instances: Annotated[int, typer.Option(min=1, help="Model instances (instance_group count).")] = 1,
    kind: Annotated[
        Optional[str], typer.Option(help="cpu | gpu instances (default: cpu for ONNX, gpu for engines).")
    ] = None,
) -> None:
    """Write a Triton Inference Server model repository entry: NAME/config.pbtxt and NAME/1/model.onnx|model.plan."""
    run_export_triton(model, repository, name=name, instances=instances, kind=kind)


def run_export_triton(model: Path, repository: Path, *, name: str | None, instances: int, kind: str | None) -> Path:
    """Write `repository/NAME/` for `model`; returns that folder."""
    from srg_deploy.export.triton_repo import describe, entry_for, write_repository

    entry = entry_for(model, name=name, instances=instances, kind=kind)
    target = write_repository(entry, repository)
    for line in describe(entry, target):
        console.print(line, markup=False)
    return target
