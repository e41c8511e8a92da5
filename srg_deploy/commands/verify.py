"""`srg-deploy verify`: a deployed model (ONNX Runtime or TensorRT, chosen by file) against its reference on the
same preprocessed inputs; the judge's checklist and latency on screen, the full report as JSON, exit 1 when a gate
fails.

The reference is the eager checkpoint folder (needs PyTorch; `--save-reference` records what it computed) or a
golden `.npz` recorded that way (needs no PyTorch: this is how a device verifies its own deployment).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from srg_deploy.atomic import write_text
from srg_deploy.commands.options import Backend, CacheDir, Device, Precision
from srg_deploy.config import is_checkpoint, resolve_checkpoint
from srg_deploy.console import out as console
from srg_deploy.errors import SRGError

if TYPE_CHECKING:
    from srg_deploy.validate.verdict import Verdict

EPILOG = (
    "Examples:\n\n  srg-deploy verify model.onnx --reference ckpt/ --source images/ --boxes boxes.json\n\n"
    "  srg-deploy verify model.engine --reference ckpt/ --source video.mp4 --frames 16 --report report.json\n\n"
    "  srg-deploy verify model.onnx --reference ckpt/ --source images/ --boxes boxes.json --save-reference golden.npz\n\n"
    "  srg-deploy verify model.engine --reference golden.npz     (on the device: no PyTorch needed)\n\n"
    "  srg-deploy verify model.onnx --backend openvino --precision bf16 --reference ckpt/ --source images/"
    " --boxes boxes.json     (judged by the bf16 gates)\n\n"
    "  srg-deploy verify model_fp16.onnx --reference ckpt/ --source images/ --boxes boxes.json --min-cosine 0.9995"
)


def verify(
    model: Annotated[
        Path, typer.Argument(help="Deployed model: .onnx (ONNX Runtime, or OpenVINO) or .engine (TensorRT).")
    ],
    reference: Annotated[
        Path,
        typer.Option(
            help="The eager checkpoint folder the model was exported from, or a golden .npz recorded from it."
        ),
    ],
    source: Annotated[
        Optional[str], typer.Option(help="Image, directory of images, glob or video (not with a golden reference).")
    ] = None,
    boxes: Annotated[
        Optional[Path], typer.Option(help="boxes.json for boxes-mode models: a list, or {file name: list}.")
    ] = None,
    frames: Annotated[int, typer.Option(min=1, help="Verify at most this many frames (the first ones).")] = 8,
    report: Annotated[Optional[Path], typer.Option(help="Write the full report here as JSON.")] = None,
    save_reference: Annotated[
        Optional[Path],
        typer.Option(help="Record the inputs and the eager outputs as a golden .npz, for verifying without PyTorch."),
    ] = None,
    atol: Annotated[Optional[float], typer.Option(help="Absolute error allowed (default: fp32 0, fp16 off).")] = None,
    rtol: Annotated[
        Optional[float], typer.Option(help="Error allowed relative to max|ref| (default: fp32 1e-4, fp16 off).")
    ] = None,
    min_cosine: Annotated[
        Optional[float], typer.Option(help="Least cosine per output and per region (default: fp32 off, fp16 0.999).")
    ] = None,
    min_agreement: Annotated[
        Optional[float],
        typer.Option(help="Least top-1 and triplet recall agreement (default: fp32 1.0, fp16 0.95)."),
    ] = None,
    backend: Backend = None,
    precision: Precision = None,
    device: Device = None,
    cache_dir: CacheDir = None,
) -> None:
    """Check a deployed model against the eager checkpoint: errors, agreement, triplet recall, latency."""
    run_verify(
        model,
        reference=reference,
        source=source,
        boxes=boxes,
        frames=frames,
        report_path=report,
        save_reference=save_reference,
        atol=atol,
        rtol=rtol,
        min_cosine=min_cosine,
        min_agreement=min_agreement,
        backend=backend,
        precision=precision,
        device=device,
        cache_dir=cache_dir,
    )


def run_verify(
    model: Path,
    *,
    reference: Path,
    source: str | None,
    boxes: Path | None,
    frames: int,
    report_path: Path | None,
    save_reference: Path | None = None,
    atol: float | None = None,
    rtol: float | None = None,
    min_cosine: float | None = None,
    min_agreement: float | None = None,
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    cache_dir: Path | None = None,
) -> None:
    from srg_deploy.inputs import BoxesFile
    from srg_deploy.runtime.loader import existing_model, open_backend
    from srg_deploy.runtime.verify import (
        cases_from_frames,
        judge_runs,
        read_frames,
        same_model_config,
        timed_runs,
        verify,
    )
    from srg_deploy.validate.gates import Gates
    from srg_deploy.validate.golden import load_golden, save_golden
    from srg_deploy.validate.render import first_failure

    existing_model(model)
    golden_reference = Path(reference).suffix == ".npz"
    if golden_reference:
        if source or boxes:
            raise SRGError("a golden reference brings its own inputs: drop --source and --boxes")
        if save_reference:
            raise SRGError(
                "--save-reference records an eager checkpoint's outputs; --reference is already a golden file"
            )
        golden = load_golden(reference)
    elif not is_checkpoint(reference := resolve_checkpoint(reference)):
        raise SRGError(
            f"--reference {reference} is neither a checkpoint folder (config.json + model.safetensors) nor a golden"
            " .npz file"
        )
    elif not source:
        raise SRGError("--source is required with a checkpoint reference (images, a directory, a glob or a video)")
    boxes_file = BoxesFile(boxes) if boxes else None
    source_frames = read_frames(source, frames) if not golden_reference else []
    if boxes_file:
        for frame in source_frames:
            boxes_file.for_source(frame.name)  # fail before loading any model
    mode = golden.mode if golden_reference else "boxes" if boxes_file else "sgdet"
    opened = open_backend(model, backend, mode=mode, precision=precision, device=device, cache_dir=cache_dir)
    with opened as deployed:
        gates = Gates.for_precision(
            deployed.precision, atol=atol, rtol=rtol, min_cosine=min_cosine, min_agreement=min_agreement
        )
        if golden_reference:
            with console.status(f"verifying {model} against {reference} ({len(golden.cases)} recorded frames)"):
                verdict = verify(deployed, golden, gates)
        else:
            status = console.status(f"verifying {model} against {reference} on {len(source_frames)} frames")
            with open_backend(reference, "torch", mode=deployed.mode, max_pairs=deployed.max_pairs) as eager, status:
                cases = cases_from_frames(deployed, source_frames, boxes_file)
                if save_reference:
                    same_model_config(deployed.config, eager.config)
                    outputs, times = timed_runs(eager, cases, warmup=1)
                    save_golden(save_reference, eager, cases, outputs, times)
                    verdict = judge_runs(deployed, cases, outputs, times, eager.describe(), gates)
                else:
                    verdict = verify(deployed, eager, gates, cases)
    print_report(verdict)
    if save_reference:
        console.print(f"wrote {save_reference} (golden reference: {len(cases)} frames, inputs and eager outputs)")
    if report_path:
        write_text(report_path, json.dumps(verdict.to_dict(), indent=2) + "\n")
        console.print(f"wrote {report_path}")
    if not verdict:
        raise SRGError(f"{model} fails verification against {reference}: {first_failure(verdict)}")


def print_report(verdict: Verdict) -> None:
    from srg_deploy.commands.report import print_checklist

    console.print(f"deployed:  {verdict.deployed}\nreference: {verdict.reference}", markup=False)
    print_checklist(verdict, f"{verdict.deployed} vs {verdict.reference}")
    latency = verdict.latency
    timing = Table(title="latency of the model call (ms)", title_justify="left")
    for column in ("backend", "p50", "p95"):
        timing.add_column(column, justify="left" if column == "backend" else "right")
    for name in ("deployed", "reference"):
        if name in latency:
            timing.add_row(name, f"{latency[name]['p50']:.1f}", f"{latency[name]['p95']:.1f}")
    console.print(timing)
    if "speedup" in latency:
        console.print(f"speed-up (p50, reference / deployed): {latency['speedup']['p50']:.2f}x")
