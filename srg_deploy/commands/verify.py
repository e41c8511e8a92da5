"""`srg-deploy verify`: a deployed model (ONNX Runtime or TensorRT, chosen by file) against its eager checkpoint
on the same preprocessed frames; a table on screen, the full report as JSON, exit 1 when a gate fails."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from srg_deploy.atomic import write_text
from srg_deploy.checkpoint import is_checkpoint
from srg_deploy.console import out as console
from srg_deploy.errors import SRGError
from srg_deploy.inputs import BoxesFile
from srg_deploy.runtime.loader import open_backend
from srg_deploy.runtime.verify import AGREEMENT_LABELS, VerifyReport, gates_from_options, read_frames, verify_model

OK, FAIL = "[green][✓][/]", "[red]\\[x][/]"  # [x] escaped: Rich would read it as a style tag


def run_verify(
    model: Path,
    *,
    reference: Path,
    source: str,
    boxes: Path | None,
    frames: int,
    report_path: Path | None,
    atol: float | None,
    rtol: float | None,
    min_cosine: float | None,
    min_agreement: float | None,
) -> None:
    if not Path(model).exists():
        raise SRGError(f"model {model} does not exist")
    if not is_checkpoint(reference):
        raise SRGError(f"--reference {reference} is not a checkpoint folder (config.json + model.safetensors)")
    boxes_file = BoxesFile(boxes) if boxes else None
    source_frames = read_frames(source, frames)
    if boxes_file:
        for frame in source_frames:
            boxes_file.for_source(frame.name)  # fail before loading any model
    with open_backend(model, mode="boxes" if boxes_file else "sgdet") as deployed:
        gates = gates_from_options(deployed.precision, atol, rtol, min_cosine, min_agreement)
        status = console.status(f"verifying {model} against {reference} on {len(source_frames)} frames")
        with open_backend(reference, "torch", mode=deployed.mode, max_pairs=deployed.max_pairs) as eager, status:
            report = verify_model(deployed, eager, source_frames, boxes_file, gates)
    print_report(report)
    if report_path:
        write_text(report_path, json.dumps(report.to_dict(), indent=2) + "\n")
        console.print(f"wrote {report_path}")
    if not report:
        more = f" (and {len(report.failures) - 1} more)" if len(report.failures) > 1 else ""
        raise SRGError(f"{model} fails verification against {reference}: {report.failures[0]}{more}")


def print_report(report: VerifyReport) -> None:
    g = report.gates
    console.print(f"deployed:  {report.deployed}\nreference: {report.reference}")
    outputs = Table(title=f"outputs over {len(report.frames)} frames (worst frame)", title_justify="left")
    for column in ("output", "max abs", "max rel", "cosine (min)"):
        outputs.add_column(column, justify="left" if column == "output" else "right")
    for name, worst in report.outputs.items():
        outputs.add_row(name, f"{worst['max_abs']:.2e}", f"{worst['max_rel']:.2e}", f"{worst['cosine_min']:.7f}")
    outputs.add_row("features (per region)", "", "", f"{report.feature_cosine_min:.7f}")
    console.print(outputs)
    agreement = Table(title="agreement with eager (pooled over frames)", title_justify="left")
    for column in ("measure", "agreeing", "rate"):
        agreement.add_column(column, justify="left" if column == "measure" else "right")
    for name, (hit, total) in report.counts.items():
        agreement.add_row(AGREEMENT_LABELS[name], f"{hit}/{total}", f"{report.agreement[name]:.1%}")
    console.print(agreement)
    latency = report.latency
    timing = Table(title="latency of the model call (ms)", title_justify="left")
    for column in ("backend", "p50", "p95"):
        timing.add_column(column, justify="left" if column == "backend" else "right")
    for name in ("deployed", "reference"):
        timing.add_row(name, f"{latency[name]['p50']:.1f}", f"{latency[name]['p95']:.1f}")
    console.print(timing)
    if "speedup" in latency:
        console.print(f"speed-up (p50, eager / deployed): {latency['speedup']['p50']:.2f}x")
    rules = [f"{report.precision} gates:"]
    if g.max_rel is not None or g.atol is not None:
        rules.append(f"max abs error <= atol {g.atol or 0:g} + rtol {g.max_rel or 0:g} x max|ref|")
    if g.min_cosine is not None:
        rules.append(f"cosine >= {g.min_cosine:g}")
    rules.append(f"agreement >= {g.min_agreement:.0%}")
    console.print(" ".join(rules))
    if report:
        console.print(f"{OK} every gate passed")
    for failure in report.failures[:10]:
        console.print(f"{FAIL} {failure}")
    if len(report.failures) > 10:
        console.print(f"    ... and {len(report.failures) - 10} more in the report")
