"""`srg-deploy export`: checkpoint -> ONNX, then the checklist that decides whether the file is good.

(a) onnx.checker full check, (b) op coverage against TensorRT's ONNX parser, (c) parity: ONNX Runtime vs eager
on a sample frame. The file is written only when every check passes (`--skip-check` skips the third).
"""

from __future__ import annotations

from pathlib import Path

from srg_deploy.atomic import atomic_path
from srg_deploy.checkpoint import load_model
from srg_deploy.commands.report import FAIL, OK, print_checklist
from srg_deploy.console import out as console
from srg_deploy.errors import SRGError
from srg_deploy.export.checks import check_onnx, op_coverage, trt_op_list
from srg_deploy.export.onnx_export import DEFAULT_OPSET, onnx_from_model
from srg_deploy.runtime.judge import Gates, Verdict
from srg_deploy.runtime.verify import sample_cases, verify


def run_export(
    checkpoint: Path,
    output: Path,
    *,
    mode: str = "boxes",
    opset: int = DEFAULT_OPSET,
    max_pairs: int | None = None,
    skip_check: bool = False,
) -> None:
    model = load_model(checkpoint)
    with console.status(f"exporting {checkpoint} ({mode} mode, opset {opset})"):
        proto = onnx_from_model(model, mode, opset, max_pairs)
    check_onnx(proto)
    console.print(f"{OK} onnx.checker full check (opset {opset}, IR {proto.ir_version})")
    coverage = op_coverage(proto)
    ops = trt_op_list()
    if not coverage:
        console.print(f"{FAIL} op coverage vs TensorRT {ops.tensorrt_version} ONNX parser")
        names = ", ".join(f"{op} ({n} nodes)" for op, n in sorted(coverage.unsupported.items()))
        raise SRGError(f"the graph uses ops TensorRT's ONNX parser does not support: {names}")
    console.print(
        f"{OK} op coverage: {len(coverage.op_counts)} op types, all supported by TensorRT {ops.tensorrt_version}'s ONNX parser"
        f" ({coverage.plugin_nodes} srg::roi_pool plugin nodes)"
    )
    with atomic_path(output, suffix=".onnx") as tmp:
        tmp.write_bytes(proto.SerializeToString())
        if skip_check:
            console.print("[yellow]\\[-][/] parity check skipped (--skip-check)")
        else:
            verdict = parity_report(model, tmp, mode, max_pairs)
            if not verdict:
                raise SRGError(f"{output}: ONNX Runtime disagrees with eager PyTorch: {verdict.failures[0]}")
    console.print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB)")


def parity_report(model, onnx_path: Path, mode: str, max_pairs: int | None) -> Verdict:
    """ONNX Runtime vs eager on the sample frame, judged by the gates of the file's precision, printed as the
    judge's checklist."""
    from srg_deploy.runtime.ort_backend import OrtBackend
    from srg_deploy.runtime.torch_backend import TorchBackend

    with OrtBackend(onnx_path) as deployed:
        reference = TorchBackend(model, mode=mode, max_pairs=max_pairs)
        verdict = verify(deployed, reference, Gates.for_precision(deployed.precision), sample_cases(deployed))
    print_checklist(verdict, f"parity: onnxruntime ({deployed.device}) vs eager torch")
    return verdict
