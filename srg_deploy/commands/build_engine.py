"""`srg-deploy build-engine`: (fp16 conversion and its parity check, then) a TensorRT engine and its sidecar.

Everything that does not need TensorRT runs first, so a machine without it still converts, checks and writes
`--onnx-out`, then stops with one line saying how to install TensorRT.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from srg_deploy.atomic import atomic_path, write_text
from srg_deploy.config import SRGConfig
from srg_deploy.console import out as console
from srg_deploy.errors import SRGError

if TYPE_CHECKING:
    import onnx

    from srg_deploy.export.engine import Profile
    from srg_deploy.runtime.judge import Case, Gates, Verdict

# Activations a node may read or write and still run in fp16 with --keep-fp32-overflow: a quarter of fp16's largest
# value (FP16_MAX, runtime/judge.py), so that real frames somewhat brighter or busier than the sample frame still fit.
OVERFLOW_SHARE = 0.25

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
    max_boxes: Annotated[int, typer.Option(min=1, help="Most boxes per frame (boxes mode profile).")] = 64,
    max_pairs: Annotated[int, typer.Option(min=1, help="Most pairs per frame (boxes mode profile).")] = 2016,
    min_size: Annotated[str, typer.Option(help="Smallest image, HxW.")] = "64x64",
    opt_size: Annotated[str, typer.Option(help="Image size to tune for, HxW.")] = "600x800",
    max_size: Annotated[str, typer.Option(help="Largest image, HxW.")] = "1000x1000",
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
        opt_boxes=min(36, max_boxes),
        max_boxes=max_boxes,
        opt_pairs=min(630, max_pairs),
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
    from srg_deploy.export.checks import check_onnx, op_coverage, read_onnx
    from srg_deploy.export.engine import engine_from_onnx, sha256, sidecar
    from srg_deploy.export.fp16 import fp16_from_onnx
    from srg_deploy.export.onnx_export import metadata
    from srg_deploy.runtime.judge import Gates
    from srg_deploy.runtime.tensorrt_env import import_tensorrt, sidecar_path

    source_bytes = Path(onnx_path).read_bytes() if Path(onnx_path).is_file() else None
    proto = read_onnx(onnx_path)
    meta = metadata(proto)
    if "mode" not in meta:
        raise SRGError(
            f"{onnx_path} was not exported by srg-deploy (no srg_deploy.* metadata); run `srg-deploy export`"
        )
    mode, precision = meta["mode"], meta.get("precision", "fp32")
    if fp16:
        if precision != "fp32":
            raise SRGError(f"{onnx_path} is already {precision}; pass the fp32 export with --fp16, or drop --fp16")
        keep = keep_for_overflow(proto) if keep_fp32_overflow else set()
        with console.status("converting to mixed precision (fp16 compute, fp32 coordinates)"):
            converted = fp16_from_onnx(proto, keep)
        check_onnx(converted)
        gates = Gates.for_precision("fp16", min_cosine=min_cosine, min_agreement=min_agreement)
        verdict = fp16_parity(proto, converted, gates)
        if not verdict:
            raise SRGError(f"the fp16 model fails the check against fp32: {fp16_failure(proto, verdict)}")
        if onnx_out:
            with atomic_path(onnx_out, suffix=".onnx") as tmp:
                tmp.write_bytes(converted.SerializeToString())
            console.print(f"wrote {onnx_out}")
        proto, precision = converted, "fp16"
    elif onnx_out or keep_fp32_overflow:
        raise SRGError(
            f"{'--onnx-out' if onnx_out else '--keep-fp32-overflow'} is about the fp16 conversion; it needs --fp16"
        )
    coverage = op_coverage(proto)
    if not coverage:
        raise SRGError(
            "the graph uses ops TensorRT's ONNX parser does not support: " + ", ".join(sorted(coverage.unsupported))
        )
    trt = import_tensorrt()  # the one line users without TensorRT see, after everything that could run did
    with console.status(f"building the TensorRT engine ({precision}, {mode} mode)"):
        engine, plugin = engine_from_onnx(proto, mode, profile, timing_cache=timing_cache, opt_level=opt_level)
    if plugin.implementation == "jit":
        console.print(
            f"note: TensorRT {trt.__version__} has no AOT plugins (10.9+): this engine runs the RoI pooling kernel"
            " through Python, so PyTorch and Triton are needed wherever it runs"
        )
    flags = {"fp16": fp16, "opt_level": opt_level, "timing_cache": str(timing_cache) if timing_cache else None}
    info = sidecar(proto, sha256(source_bytes or proto.SerializeToString()), mode, precision, profile, plugin, flags)
    with atomic_path(output, suffix=".engine") as tmp:
        tmp.write_bytes(engine)
        write_text(sidecar_path(output), json.dumps(info, indent=2) + "\n")
    console.print(f"wrote {output} ({len(engine) / 2**20:.1f} MiB) and {sidecar_path(output).name}")


def fp16_parity(fp32: onnx.ModelProto, fp16: onnx.ModelProto, gates: Gates) -> Verdict:
    """ONNX Runtime runs both files on the sample frame and a noise frame (its CPU provider computes fp16 nodes
    through inserted casts, fp16 values between nodes), and the judge weighs fp16 against fp32."""
    from srg_deploy.commands.report import print_checklist
    from srg_deploy.runtime.ort_backend import OrtBackend
    from srg_deploy.runtime.verify import sample_cases, verify

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "fp32.onnx", Path(tmp) / "fp16.onnx"]
        for path, proto in zip(paths, (fp32, fp16)):
            path.write_bytes(proto.SerializeToString())
        status = console.status("checking fp16 against fp32 in ONNX Runtime")
        with OrtBackend(paths[0]) as reference, OrtBackend(paths[1]) as deployed, status:
            verdict = verify(deployed, reference, gates, sample_cases(reference, noise=True))
    print_checklist(verdict, f"fp16 vs fp32 (onnxruntime {deployed.device})")
    return verdict


def fp16_failure(fp32: onnx.ModelProto, verdict: Verdict) -> str:
    """The first failure; when fp16 overflowed, where: the fp32 model's largest activation and the node that made it."""
    from srg_deploy.export.fp16 import activation_peaks, overflowing
    from srg_deploy.runtime.judge import FP16_MAX

    limit = FP16_MAX * OVERFLOW_SHARE
    first = verdict.failures[0]
    if "NaN or infinity" not in first:
        return first
    peaks = activation_peaks(fp32, sample_cases_for(fp32)[0].inputs)
    top = max(peaks.values(), key=lambda p: p.output, default=None)
    if top is None or top.output <= FP16_MAX:
        return first
    return (
        f"activations exceed fp16's range ({FP16_MAX:g}): the fp32 model reaches {top.output:.3g} at node"
        f" {top.node!r} ({top.op}) on the sample frame, which fp16 stores as infinity;"
        f" {len(overflowing(peaks, limit))} nodes go past {limit:g}. Keep them in fp32 with"
        " --keep-fp32-overflow, build in fp32, or fix the weights that produce such values (e.g. BatchNorm statistics)"
    )


def keep_for_overflow(fp32: onnx.ModelProto) -> set[str]:
    """The nodes whose activations on the sample frame go past OVERFLOW_SHARE of fp16's range, announced before
    converting."""
    from srg_deploy.export.fp16 import activation_peaks, overflowing
    from srg_deploy.runtime.judge import FP16_MAX

    limit = FP16_MAX * OVERFLOW_SHARE
    peaks = activation_peaks(fp32, sample_cases_for(fp32)[0].inputs)
    keep = overflowing(peaks, limit)
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


def sample_cases_for(proto: onnx.ModelProto) -> list[Case]:
    """The sample case at half resolution, for a cheap activation scan (intermediate tensors of a ResNet-101 at
    full size take gigabytes)."""
    import numpy as np

    from srg_deploy.export.onnx_export import metadata
    from srg_deploy.runtime.judge import Case
    from srg_deploy.runtime.verify import sample_inputs

    meta = metadata(proto)
    case = sample_inputs(SRGConfig.from_dict(json.loads(meta["config"])), meta["mode"])[0]
    inputs = dict(case.inputs)
    inputs["image"] = np.ascontiguousarray(inputs["image"][:, :, ::2, ::2])
    if "boxes" in inputs:
        inputs["boxes"] = inputs["boxes"] / np.float32(2)
    return [Case(case.label, inputs)]
