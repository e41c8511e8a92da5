"""`srg-deploy export`: checkpoint -> ONNX, then the checklist that decides whether the file is good.

(a) onnx.checker full check, (b) op coverage against TensorRT's ONNX parser, (c) parity: ONNX Runtime vs eager
on a sample frame. The file is written only when every check passes (`--skip-check` skips the third).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from srg_deploy.atomic import atomic_path
from srg_deploy.console import out as console
from srg_deploy.defaults import ONNX_OPSET
from srg_deploy.errors import SRGError

EPILOG = (
    "Examples:\n\n  srg-deploy export ckpt/ --output model.onnx\n\n"
    "  srg-deploy export ckpt/ --output sgdet.onnx --mode sgdet --max-pairs 128\n\n"
    "  srg-deploy export ckpt/ -o model.onnx --opset 18 --skip-check"
)


def export(
    checkpoint: Annotated[Path, typer.Argument(help="Checkpoint folder.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="ONNX file to write.")],
    mode: Annotated[str, typer.Option(help="boxes: image+boxes+pairs in; sgdet: image in, detector inside.")] = "boxes",
    opset: Annotated[int, typer.Option(help="ONNX opset (17..20).")] = ONNX_OPSET,
    max_pairs: Annotated[
        Optional[int], typer.Option(min=1, help="sgdet only: keep the K pairs with the highest score product.")
    ] = None,
    skip_check: Annotated[
        bool, typer.Option("--skip-check", help="Skip the ONNX Runtime vs eager parity check.")
    ] = False,
) -> None:
    """Export to ONNX with RoI pooling as the srg::roi_pool plugin node; check it; write it only if it passes."""
    run_export(checkpoint, output, mode=mode, opset=opset, max_pairs=max_pairs, skip_check=skip_check)


def run_export(
    checkpoint: Path,
    output: Path,
    *,
    mode: str,
    opset: int,
    max_pairs: int | None,
    skip_check: bool,
) -> None:
    from srg_deploy.checkpoint import load_model
    from srg_deploy.commands.report import OK, print_checklist
    from srg_deploy.export import steps
    from srg_deploy.export.checks import trt_op_list
    from srg_deploy.validate.render import failure_text

    model = load_model(checkpoint)
    with console.status(f"exporting {checkpoint} ({mode} mode, opset {opset})"):
        step = steps.onnx_from_checkpoint(model, mode, opset, max_pairs, check=False)
    proto, coverage = step.artifact, step.notes["coverage"]
    console.print(f"{OK} onnx.checker full check (opset {opset}, IR {proto.ir_version})")
    console.print(
        f"{OK} op coverage: {len(coverage.op_counts)} op types, all supported by TensorRT"
        f" {trt_op_list().tensorrt_version}'s ONNX parser ({coverage.plugin_nodes} srg::roi_pool plugin nodes)"
    )
    if skip_check:
        console.print("[yellow]\\[-][/] parity check skipped (--skip-check)")
    else:
        verdict = steps.parity_with_eager(model, proto, mode, max_pairs)
        print_checklist(verdict, f"parity: {verdict.deployed} vs eager torch")
        if not verdict:
            raise SRGError(f"{output}: ONNX Runtime disagrees with eager PyTorch: {failure_text(verdict.failures[0])}")
    with atomic_path(output, suffix=".onnx") as tmp:
        tmp.write_bytes(proto.SerializeToString())
    console.print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB)")
