"""`srg-deploy build-engine`: (fp16 conversion and its parity check, then) a TensorRT engine and its sidecar.

Everything that does not need TensorRT runs first, so a machine without it still converts, checks and writes
`--onnx-out`, then stops with one line saying how to install TensorRT. The steps are the library's
(srg_deploy.export.steps); this module parses, calls them in order and prints. None of it needs torch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from srg_deploy import defaults
from srg_deploy.atomic import atomic_path, write_text
from srg_deploy.console import out as console
from srg_deploy.errors import SRGError

if TYPE_CHECKING:
    from srg_deploy.export.engine import Profile

EPILOG = (
    "Examples:\n\n  srg-deploy build-engine model.onnx --output model.engine\n\n"
    "  srg-deploy build-engine model.onnx -o model-fp16.engine --fp16 --onnx-out model-fp16.onnx\n\n"
    "  srg-deploy build-engine model.onnx -o model.engine --max-boxes 36 --max-pairs 630 --opt-size 600x800"
    " --timing-cache trt.cache"
)


def build_engine(
    model: Annotated[Path, typer.Argument(help="ONNX file from `srg-deploy export`.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Engine file to write (plus OUTPUT.json).")],
    fp16: Annotated[
        bool, typer.Option("--fp16", help="Convert to mixed precision, check it, build strongly typed.")
    ] = False,
    onnx_out: Annotated[Optional[Path], typer.Option(help="Keep the fp16 ONNX here (with --fp16).")] = None,
    max_boxes: Annotated[
        int, typer.Option(min=1, help="Most boxes per frame (boxes mode profile).")
    ] = defaults.ENGINE_MAX_BOXES,
    max_pairs: Annotated[
        int, typer.Option(min=1, help="Most pairs per frame (boxes mode profile).")
    ] = defaults.ENGINE_MAX_PAIRS,
    min_size: Annotated[str, typer.Option(help="Smallest image, HxW.")] = defaults.ENGINE_MIN_SIZE,
    opt_size: Annotated[str, typer.Option(help="Image size to tune for, HxW.")] = defaults.ENGINE_OPT_SIZE,
    max_size: Annotated[str, typer.Option(help="Largest image, HxW.")] = defaults.ENGINE_MAX_SIZE,
    timing_cache: Annotated[Optional[Path], typer.Option(help="Timing cache to load and update.")] = None,
    opt_level: Annotated[Optional[int], typer.Option(min=0, max=5, help="TensorRT builder optimization level.")] = None,
    min_cosine: Annotated[
        Optional[float], typer.Option(help="fp16 gate: least cosine per output vs fp32 (default 0.999).")
    ] = None,
    min_agreement: Annotated[
        Optional[float], typer.Option(help="fp16 gate: least top-1 / triplet agreement vs fp32 (default 0.95).")
    ] = None,
    keep_fp32_overflow: Annotated[
        bool,
        typer.Option(
            "--keep-fp32-overflow",
            help="With --fp16: keep in fp32 the nodes whose activations on a sample frame exceed a quarter of fp16's range.",
        ),
    ] = False,
) -> None:
    """Build a TensorRT engine (10.9+/11.x) with the srg::roi_pool plugin; --fp16 converts and checks first."""
    from srg_deploy.export.engine import Profile
    from srg_deploy.inputs import parse_size

    profile = Profile(
        min_hw=parse_size(min_size, "--min-size"),
        opt_hw=parse_size(opt_size, "--opt-size"),
        max_hw=parse_size(max_size, "--max-size"),
        opt_boxes=min(defaults.ENGINE_OPT_BOXES, max_boxes),
        max_boxes=max_boxes,
        opt_pairs=min(defaults.ENGINE_OPT_PAIRS, max_pairs),
        max_pairs=max_pairs,
    )
    run_build_engine(
        model,
        output,
        fp16=fp16,
        onnx_out=onnx_out,
        profile=profile,
        timing_cache=timing_cache,
        opt_level=opt_level,
        min_cosine=min_cosine,
        min_agreement=min_agreement,
        keep_fp32_overflow=keep_fp32_overflow,
    )


def run_build_engine(
    onnx_path: Path,
    output: Path,
    *,
    fp16: bool,
    onnx_out: Path | None,
    profile: Profile,
    timing_cache: Path | None,
    opt_level: int | None,
    min_cosine: float | None = None,
    min_agreement: float | None = None,
    keep_fp32_overflow: bool = False,
) -> None:
    from srg_deploy.commands.report import print_checklist
    from srg_deploy.export import steps
    from srg_deploy.tensorrt_env import sidecar_path
    from srg_deploy.validate.gates import Gates

    model = steps.read_exported(onnx_path)
    proto = model.proto
    if fp16:
        if model.precision != "fp32":
            raise SRGError(
                f"{onnx_path} is already {model.precision}; pass the fp32 export with --fp16, or drop --fp16"
            )
        keep = announce_overflow(proto) if keep_fp32_overflow else set()
        gates = Gates.for_precision("fp16", min_cosine=min_cosine, min_agreement=min_agreement)
        with console.status("converting to mixed precision (fp16 compute, fp32 coordinates) and checking it"):
            step = steps.fp16_onnx_from_onnx(proto, keep, gates)
        print_checklist(step.verdict, f"fp16 vs fp32 (onnxruntime {step.notes['device']})")
        if not step:
            raise SRGError(f"the fp16 model fails the check against fp32: {steps.fp16_failure(proto, step.verdict)}")
        if onnx_out:
            with atomic_path(onnx_out, suffix=".onnx") as tmp:
                tmp.write_bytes(step.artifact.SerializeToString())
            console.print(f"wrote {onnx_out}")
        proto = step.artifact
    elif onnx_out or keep_fp32_overflow:
        raise SRGError(
            f"{'--onnx-out' if onnx_out else '--keep-fp32-overflow'} is about the fp16 conversion; it needs --fp16"
        )
    flags = {"fp16": fp16, "opt_level": opt_level, "timing_cache": str(timing_cache) if timing_cache else None}
    with console.status("building the TensorRT engine"):
        engine = steps.engine_from_onnx_model(
            proto,
            profile,
            source_sha256=model.source_sha256,
            build_flags=flags,
            timing_cache=timing_cache,
            opt_level=opt_level,
        ).artifact
    if engine.plugin.implementation == "jit":
        console.print(
            f"note: TensorRT {engine.sidecar['tensorrt_version']} has no AOT plugins (10.9+): this engine runs the"
            " RoI pooling kernel through Python, so PyTorch and Triton are needed wherever it runs"
        )
    with atomic_path(output, suffix=".engine") as tmp:
        tmp.write_bytes(engine.data)
        write_text(sidecar_path(output), json.dumps(engine.sidecar, indent=2) + "\n")
    console.print(f"wrote {output} ({len(engine.data) / 2**20:.1f} MiB) and {sidecar_path(output).name}")


def announce_overflow(fp32) -> set[str]:
    """--keep-fp32-overflow: the nodes kept in fp32, announced before converting."""
    from srg_deploy.export.steps import overflow_nodes

    keep, peaks, limit = overflow_nodes(fp32)
    if keep:
        top = max((peaks[n] for n in keep), key=lambda p: max(p.output, p.input))
        console.print(
            f"keeping {len(keep)} of {len(peaks)} nodes in fp32 (--keep-fp32-overflow): their activations pass"
            f" {limit:g} on the sample frame, up to {max(top.output, top.input):.3g} at {top.node!r}"
            f" ({top.op})",
            markup=False,
        )
    else:
        console.print("--keep-fp32-overflow: no activation passes the limit on the sample frame; nothing kept in fp32")
    return keep
