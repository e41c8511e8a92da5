"""`srg-deploy export`: checkpoint -> ONNX, then the checklist that decides whether the file is good.

(a) onnx.checker full check, (b) op coverage against TensorRT's ONNX parser, (c) parity: ONNX Runtime vs eager
on a sample frame. The file is written only when every check passes (`--skip-check` skips the third).
"""

from __future__ import annotations

from pathlib import Path

from srg_deploy.atomic import atomic_path
from srg_deploy.checkpoint import load_model
from srg_deploy.console import out as console
from srg_deploy.errors import SRGError
from srg_deploy.export.checks import check_onnx, op_coverage, trt_op_list
from srg_deploy.export.onnx_export import DEFAULT_OPSET, onnx_from_model
from srg_deploy.runtime.parity import Gates, ParityResult, check_parity, sample_frame

OK, FAIL = "[green][✓][/]", "[red]\\[x][/]"  # [x] escaped: Rich would read it as a style tag


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
            result = parity_report(model, tmp, mode, max_pairs)
            if not result:
                raise SRGError(f"{output}: ONNX Runtime disagrees with eager PyTorch: " + "; ".join(result.failures))
    console.print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB)")


def parity_report(model, onnx_path: Path, mode: str, max_pairs: int | None) -> ParityResult:
    """ONNX Runtime vs eager on the sample frame, printed as one line per output."""
    from srg_deploy.runtime.ort_backend import OrtBackend
    from srg_deploy.runtime.predictor import Predictor
    from srg_deploy.runtime.torch_backend import TorchBackend

    deployed = OrtBackend(onnx_path)
    reference = TorchBackend(model, mode=mode, max_pairs=max_pairs)
    frame, boxes = sample_frame()
    prepared = Predictor(deployed).prepare(frame, boxes if mode == "boxes" else None)
    result = check_parity(reference, deployed, prepared.inputs, Gates.for_precision(deployed.precision))
    print_parity(result, f"parity: onnxruntime ({deployed.device}) vs eager torch")
    return result


def print_parity(result: ParityResult, title: str) -> None:
    console.print(f"{OK if result else FAIL} {title}")
    for d in result.diffs.values():
        console.print(
            f"    {d.name:<16} shape {list(d.shape_got)!s:<16} max abs {d.max_abs:.2e}  max rel {d.max_rel:.2e}  cosine {d.cosine:.7f}"
        )
    detections = "" if result.detection_recall is None else f"; detections matched {result.detection_recall:.1%}"
    console.print(
        f"    top-1 agreement: objects {result.object_agreement:.1%}, relations {result.relation_agreement:.1%};"
        f" features cosine {result.feature_cosine:.7f} (worst region {result.feature_cosine_min:.7f}){detections}"
    )
