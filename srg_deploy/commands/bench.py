"""`srg-deploy bench`: per-stage latency of a model on a synthetic workload, FLOPs per stage, achieved GFLOP/s
and the fraction of the machine's measured peak; a table on screen, the same as JSON with --json."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.table import Table

from srg_deploy.atomic import write_text
from srg_deploy.commands.options import Backend, CacheDir, Device, ModelPath, Precision
from srg_deploy.console import out as console

if TYPE_CHECKING:
    from srg_deploy.runtime.bench import BenchReport

EPILOG = (
    "Examples:\n\n  srg-deploy bench model.onnx\n\n"
    "  srg-deploy bench model.onnx --backend openvino --precision bf16 --json bench-bf16.json\n\n"
    "  srg-deploy bench ckpt/ --image-size 600x1000 --boxes 36 --pairs 128 --iters 5 --json bench.json"
)


def bench(
    model: ModelPath,
    image_size: Annotated[
        str, typer.Option(help="Model input size HxW; the synthetic frame is made at this size (no resize).")
    ] = "480x640",
    boxes: Annotated[int, typer.Option(min=0, help="Regions per frame (seeded random boxes).")] = 36,
    pairs: Annotated[
        Optional[int], typer.Option(min=0, help="Unordered pairs, the first P row-major (default: all).")
    ] = None,
    iters: Annotated[int, typer.Option(min=1, help="Measured runs.")] = 5,
    warmup: Annotated[int, typer.Option(min=0, help="Untimed runs first.")] = 1,
    json_out: Annotated[Optional[Path], typer.Option("--json", help="Write the report here as JSON.")] = None,
    backend: Backend = None,
    precision: Precision = None,
    device: Device = None,
    cache_dir: CacheDir = None,
) -> None:
    """Per-stage latency, FLOPs, achieved GFLOP/s and the share of the machine's measured peak."""
    run_bench(
        model,
        image_size=image_size,
        boxes=boxes,
        pairs=pairs,
        iters=iters,
        warmup=warmup,
        json_out=json_out,
        backend=backend,
        precision=precision,
        device=device,
        cache_dir=cache_dir,
    )


def run_bench(
    model: Path,
    *,
    image_size: str,
    boxes: int,
    pairs: int | None,
    iters: int,
    warmup: int,
    json_out: Path | None,
    backend: str | None = None,
    precision: str | None = None,
    device: str | None = None,
    cache_dir: Path | None = None,
) -> None:
    from srg_deploy.inputs import parse_size
    from srg_deploy.runtime.bench import Workload
    from srg_deploy.runtime.bench import bench as bench_model
    from srg_deploy.runtime.loader import existing_model, open_backend

    existing_model(model)
    workload = Workload(*parse_size(image_size, "--image-size", "480x640"), boxes, pairs)
    status = console.status(f"timing {model} on {workload.describe()}: {warmup} + {iters} runs")
    opened = open_backend(model, backend, mode="boxes", precision=precision, device=device, cache_dir=cache_dir)
    with opened as runner, status:
        report = bench_model(runner, model, workload, iters, warmup)
    print_report(report)
    if json_out:
        write_text(json_out, json.dumps(report.to_dict(), indent=2) + "\n")
        console.print(f"wrote {json_out}")


def print_report(report: BenchReport) -> None:
    table = Table(
        title=f"{report.backend}: {report.workload.describe()}; median and p95 of {report.iters} runs after"
        f" {report.warmup} warm-up",
        title_justify="left",
    )
    for column in ("stage", "median ms", "p95 ms", "GMAC", "GFLOP/s", "of peak"):
        table.add_column(column, justify="left" if column == "stage" else "right")
    for stage, s in report.stages().items():
        table.add_row(
            stage,
            f"{s['median_ms']:.1f}",
            f"{s['p95_ms']:.1f}",
            "" if s["gmac"] is None else f"{s['gmac']:.2f}",
            "" if s["gflop_per_s"] is None else f"{s['gflop_per_s']:.1f}",
            "" if s["peak_fraction"] is None else f"{s['peak_fraction']:.0%}",
        )
    console.print(table)
    m = report.machine
    console.print(
        f"peak: {report.peak_gflops:.1f} GFLOP/s ({report.peak_method}) on"
        f" {m['cpu']}, {m['cores']} cores, load average {m['load_average'][0]}",
        highlight=False,
    )
    console.print(
        f"FLOPs: 2 x conv and linear multiply-accumulates at the model's shapes ({report.macs.per_roi / 1e9:.3f} GMAC"
        f" per RoI in pool5); stages: {report.method}",
        highlight=False,
    )
