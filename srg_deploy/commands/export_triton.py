"""`srg-deploy export-triton`: an exported model as Triton Inference Server model repository entries.

The work is in `srg_deploy.export.triton_repo` and `triton_ensemble` (no torch, no TensorRT); this only reports
what was written."""

from __future__ import annotations

from pathlib import Path

from srg_deploy.console import err as console
from srg_deploy.errors import SRGError
from srg_deploy.export.triton_repo import describe, entry_for, write_repository


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
