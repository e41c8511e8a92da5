"""`srg-deploy export-triton`: an exported model as a Triton Inference Server model repository entry.

The work is in `srg_deploy.export.triton_repo` (no torch, no TensorRT); this only reports what was written."""

from __future__ import annotations

from pathlib import Path

from srg_deploy.console import err as console
from srg_deploy.export.triton_repo import describe, entry_for, write_repository


def run_export_triton(
    model: Path, repository: Path, *, name: str | None = None, instances: int = 1, kind: str | None = None
) -> Path:
    """Write `repository/NAME/` for `model`; returns that folder."""
    entry = entry_for(model, name=name, instances=instances, kind=kind)
    target = write_repository(entry, repository)
    for line in describe(entry, target):
        console.print(line, markup=False)
    return target
