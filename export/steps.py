"""The steps of a deployment, as library functions that compose: checkpoint -> ONNX (`onnx_from_checkpoint`) ->
mixed-precision ONNX (`fp16_onnx_from_onnx`) -> TensorRT engine (`engine_from_onnx_model`). Each returns what it
made and the verdict of the check it ran (srg_deploy.validate); a command parses its options, calls these and
prints. Nothing here imports torch at module level, and only `onnx_from_checkpoint` needs it: build-engine (fp16
conversion, its check in ONNX Runtime, the engine) runs on a `[cpu,build]` install.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from srg_deploy.config import SRGConfig
from srg_deploy.contract import onnx_metadata
from srg_deploy.defaults import ONNX_OPSET
from srg_deploy.errors import SRGError
from srg_deploy.export.checks import Coverage, check_onnx, op_coverage, read_onnx
from srg_deploy.export.engine import PluginBuild, Profile, engine_from_onnx, sha256, sidecar
from srg_deploy.export.fp16 import OVERFLOW_SHARE, Peak, activation_peaks, fp16_from_onnx, overflowing
from srg_deploy.validate.cases import half_resolution, sample_cases
from srg_deploy.validate.failures import NONFINITE
from srg_deploy.validate.gates import FP16_MAX, Gates
from srg_deploy.validate.render import first_failure
from srg_deploy.validate.verdict import Verdict

if TYPE_CHECKING:
    from srg_deploy.model import SRGNet


@dataclass
class Step:
    """What a step made (`artifact`) and the verdict of its check (None where the step checks nothing numeric,
    e.g. the engine, which `srg-deploy verify` judges on the GPU)."""

    artifact: Any
    verdict: Verdict | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.verdict is None or bool(self.verdict)


@dataclass(frozen=True)
class Exported:
    """An ONNX model read back with what srg-deploy recorded in it."""

    proto: onnx.ModelProto
    mode: str
    precision: str
    config: SRGConfig
    source_sha256: str


def read_exported(path: Path) -> Exported:
    """An ONNX file written by `srg-deploy export` (or a later step), or one line saying why not."""
    proto = read_onnx(path)
    meta = onnx_metadata(proto)
    if "mode" not in meta or "config" not in meta:
        raise SRGError(f"{path} was not exported by srg-deploy (no srg_deploy.* metadata); run `srg-deploy export`")
    config = SRGConfig.from_dict(json.loads(meta["config"]))
    return Exported(proto, meta["mode"], meta.get("precision", "fp32"), config, sha256(Path(path).read_bytes()))


def require_tensorrt_ops(proto: onnx.ModelProto) -> Coverage:
    """Op coverage against TensorRT's ONNX parser, or one line naming the unsupported ops."""
    coverage = op_coverage(proto)
    if not coverage:
        names = ", ".join(f"{op} ({n} nodes)" for op, n in sorted(coverage.unsupported.items()))
        raise SRGError(f"the graph uses ops TensorRT's ONNX parser does not support: {names}")
    return coverage


# --- checkpoint -> ONNX ----------------------------------------------------------------------------------------------


def onnx_from_checkpoint(
    model: SRGNet | Path,
    mode: str = "boxes",
    opset: int = ONNX_OPSET,
    max_pairs: int | None = None,
    *,
    check: bool = True,
) -> Step:
    """Export (a checkpoint folder or a loaded model), run the ONNX checker and op coverage (raising on failure),
    then, with `check`, judge ONNX Runtime against eager on the sample frame by the gates of the file's precision.
    `notes["coverage"]` is the op coverage."""
    from srg_deploy.checkpoint import load_model
    from srg_deploy.export.onnx_export import onnx_from_model

    if not hasattr(model, "config"):
        model = load_model(model)
    proto = onnx_from_model(model, mode, opset, max_pairs)
    check_onnx(proto)
    coverage = require_tensorrt_ops(proto)
    verdict = parity_with_eager(model, proto, mode, max_pairs) if check else None
    return Step(proto, verdict, {"coverage": coverage})


def parity_with_eager(model: SRGNet, proto: onnx.ModelProto, mode: str, max_pairs: int | None) -> Verdict:
    """ONNX Runtime running `proto` against the eager `model` on the sample frame."""
    from srg_deploy.runtime.ort_backend import OrtBackend
    from srg_deploy.runtime.torch_backend import TorchBackend
    from srg_deploy.runtime.verify import verify

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(proto.SerializeToString())
        with OrtBackend(path) as deployed:
            reference = TorchBackend(model, mode=mode, max_pairs=max_pairs)
            gates = Gates.for_precision(deployed.precision)
            return verify(deployed, reference, gates, sample_cases(deployed.config, deployed.mode))


# --- ONNX -> fp16 ONNX -----------------------------------------------------------------------------------------------


def fp16_onnx_from_onnx(proto: onnx.ModelProto, keep_fp32: Collection[str] = (), gates: Gates | None = None) -> Step:
    """The mixed-precision model (nodes in `keep_fp32` stay fp32), checked by the ONNX checker and judged against
    the fp32 model in ONNX Runtime on the sample and the noise frame by `gates` (default: the fp16 gates)."""
    precision = onnx_metadata(proto).get("precision", "fp32")
    if precision != "fp32":
        raise SRGError(f"the model is already {precision}; pass the fp32 export")
    converted = fp16_from_onnx(proto, keep_fp32)
    check_onnx(converted)
    verdict, device = fp16_parity(proto, converted, gates or Gates.for_precision("fp16"))
    return Step(converted, verdict, {"device": device})


def fp16_parity(fp32: onnx.ModelProto, fp16: onnx.ModelProto, gates: Gates) -> tuple[Verdict, str]:
    """ONNX Runtime runs both models on the sample frame and a noise frame (its CPU provider computes fp16 nodes
    through inserted casts, fp16 values between nodes), and fp16 is judged against fp32; returns the verdict and
    the ONNX Runtime device."""
    from srg_deploy.runtime.ort_backend import OrtBackend
    from srg_deploy.runtime.verify import verify

    with tempfile.TemporaryDirectory() as tmp:
        paths = [Path(tmp) / "fp32.onnx", Path(tmp) / "fp16.onnx"]
        for path, proto in zip(paths, (fp32, fp16)):
            path.write_bytes(proto.SerializeToString())
        with OrtBackend(paths[0]) as reference, OrtBackend(paths[1]) as deployed:
            cases = sample_cases(reference.config, reference.mode, noise=True)
            return verify(deployed, reference, gates, cases), deployed.device


def scan_case(proto: onnx.ModelProto):
    """The sample case at half resolution, for a cheap activation scan."""
    meta = onnx_metadata(proto)
    return half_resolution(sample_cases(SRGConfig.from_dict(json.loads(meta["config"])), meta["mode"])[0])


def overflow_nodes(fp32: onnx.ModelProto) -> tuple[set[str], dict[str, Peak], float]:
    """(nodes to keep in fp32, every node's peaks, the limit): the nodes whose activations on the sample frame go
    past OVERFLOW_SHARE of fp16's range (build-engine --keep-fp32-overflow)."""
    limit = FP16_MAX * OVERFLOW_SHARE
    peaks = activation_peaks(fp32, scan_case(fp32).inputs)
    return overflowing(peaks, limit), peaks, limit


def fp16_failure(fp32: onnx.ModelProto, verdict: Verdict) -> str:
    """Why the fp16 model failed, in one line: the first failure; when fp16 overflowed (a non-finite output),
    where: the fp32 model's largest activation and the node that made it."""
    first = first_failure(verdict)
    if not any(f.kind == NONFINITE for f in verdict.failures):
        return first
    keep, peaks, limit = overflow_nodes(fp32)
    top = max(peaks.values(), key=lambda p: p.output, default=None)
    if top is None or top.output <= FP16_MAX:
        return first
    return (
        f"activations exceed fp16's range ({FP16_MAX:g}): the fp32 model reaches {top.output:.3g} at node"
        f" {top.node!r} ({top.op}) on the sample frame, which fp16 stores as infinity;"
        f" {len(keep)} nodes go past {limit:g}. Keep them in fp32 with"
        " --keep-fp32-overflow, build in fp32, or fix the weights that produce such values (e.g. BatchNorm statistics)"
    )


# --- ONNX -> TensorRT engine -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Engine:
    """A serialized TensorRT engine, its sidecar (`model.engine.json`) and how its plugin runs."""

    data: bytes
    sidecar: dict
    plugin: PluginBuild


def engine_from_onnx_model(
    proto: onnx.ModelProto,
    profile: Profile,
    *,
    source_sha256: str | None = None,
    build_flags: dict | None = None,
    timing_cache: Path | None = None,
    opt_level: int | None = None,
) -> Step:
    """Op coverage (one line when an op is unsupported), then TensorRT (one line naming it when it is missing,
    after everything that could run without it did), then the engine and its sidecar."""
    from srg_deploy.tensorrt_env import import_tensorrt

    meta = onnx_metadata(proto)
    mode, precision = meta["mode"], meta.get("precision", "fp32")
    require_tensorrt_ops(proto)
    import_tensorrt()
    data, plugin = engine_from_onnx(proto, mode, profile, timing_cache=timing_cache, opt_level=opt_level)
    info = sidecar(
        proto,
        source_sha256 or sha256(proto.SerializeToString()),
        mode,
        precision,
        profile,
        plugin,
        build_flags or {},
    )
    return Step(Engine(data, info, plugin))
