"""`srg-deploy export-triton`: an exported model as a Triton Inference Server model repository entry, optionally
with the image-to-scene-graph ensemble around it.

The work is in `srg_deploy.export.triton_repo` / `triton_ensemble` (no torch, no TensorRT); this only reports what
was written."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from srg_deploy.console import err as console
from srg_deploy.errors import SRGError

EPILOG = (
    "Examples:\n\n  srg-deploy export-triton model.onnx --repository models/ --name srg --instances 2\n\n"
    "  srg-deploy export-triton model.engine --repository models/ --name srg_trt\n\n"
    "  srg-deploy export-triton model.onnx --repository models/ --ensemble --model-platform python\n\n"
    "Then: tritonserver --model-repository models/ (docs/triton.md has the client)."
)


def export_triton(
    model: Annotated[Path, typer.Argument(help=".onnx from `srg-deploy export`, or .engine from `build-engine`.")],
    repository: Annotated[
        Path, typer.Option(help="Triton model repository folder (created if missing; other models are kept).")
    ],
    name: Annotated[Optional[str], typer.Option(help="Model name (its folder); default: the file's stem.")] = None,
    instances: Annotated[int, typer.Option(min=1, help="Instances of each model (instance_group count).")] = 1,
    kind: Annotated[
        Optional[str], typer.Option(help="cpu | gpu instances (default: cpu for ONNX, gpu for engines).")
    ] = None,
    model_platform: Annotated[
        Optional[str],
        typer.Option(
            help="onnxruntime | tensorrt | openvino | python: the Triton backend that runs the model (default:"
            " onnxruntime for ONNX, tensorrt for engines; python = srg-deploy's runtime in Triton's python backend)."
        ),
    ] = None,
    ensemble: Annotated[
        bool,
        typer.Option(
            "--ensemble", help="Also write preprocess, postprocess and the scene_graph ensemble (image in, record out)."
        ),
    ] = False,
    dynamic_batching: Annotated[
        bool,
        typer.Option("--dynamic-batching", help="Turn on Triton's dynamic batcher for the ensemble's python steps."),
    ] = False,
) -> None:
    """Write a Triton Inference Server model repository: NAME/config.pbtxt and NAME/1/..., optionally the ensemble."""
    run_export_triton(
        model,
        repository,
        name=name,
        instances=instances,
        kind=kind,
        model_platform=model_platform,
        ensemble=ensemble,
        dynamic_batching=dynamic_batching,
    )


def run_export_triton(
    model: Path,
    repository: Path,
    *,
    name: str | None = None,
    instances: int = 1,
    kind: str | None = None,
    model_platform: str | None = None,
    ensemble: bool = False,
    dynamic_batching: bool = False,
) -> list[Path]:
    """Write `repository/NAME/` for `model` (and with `ensemble`, the scene_graph ensemble and its python steps);
    returns the folders written."""
    from srg_deploy.export.triton_repo import describe, entry_for, write_repository

    if ensemble:
        from srg_deploy.export.triton_ensemble import ensemble_entries

        entries = ensemble_entries(model, name, instances, kind, model_platform, dynamic_batching)
    else:
        if dynamic_batching:
            raise SRGError("--dynamic-batching applies to the ensemble's python steps: add --ensemble")
        entries = [entry_for(model, name=name, instances=instances, kind=kind, platform=model_platform)]
    targets = write_repository(entries, repository)
    for line in describe(entries, targets):
        console.print(line, markup=False)
    return targets
