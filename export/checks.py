"""Static checks of an exported graph: the ONNX checker, and op coverage against TensorRT's ONNX parser."""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path

import onnx

from srg_deploy.errors import SRGError
from srg_deploy.plugins.spec import PLUGIN_DOMAIN, PLUGIN_NAME


def read_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file or fail with one line (missing, truncated, not ONNX)."""
    path = Path(path)
    if not path.is_file():
        raise SRGError(f"ONNX file {path} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError, onnx raises its own types
        raise SRGError(
            f"{path} is not a readable ONNX model: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None


def check_onnx(proto: onnx.ModelProto) -> None:
    """onnx.checker with full_check (shape inference included); raises SRGError with the checker's message."""
    try:
        onnx.checker.check_model(proto, full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as e:
        raise SRGError(f"ONNX checker rejected the model: {str(e).splitlines()[0]}") from None


@dataclass(frozen=True)
class TrtOpList:
    """Operators TensorRT's ONNX parser imports, as read from onnx-tensorrt's docs/operators.md."""

    tensorrt_version: str
    source: str
    supported: frozenset[str]


@cache
def trt_op_list() -> TrtOpList:
    data = json.loads(resources.files("srg_deploy.export").joinpath("data/trt_onnx_ops.json").read_text())
    return TrtOpList(data["tensorrt_version"], data["source"], frozenset(data["supported"]))


@dataclass(frozen=True)
class Coverage:
    op_counts: dict[str, int]  # "domain::op" or "op" -> nodes
    unsupported: dict[str, int]
    plugin_nodes: int

    def __bool__(self) -> bool:
        return not self.unsupported


def op_coverage(proto: onnx.ModelProto, ops: TrtOpList | None = None) -> Coverage:
    """Every node of the main graph and its subgraphs must be an ONNX op the parser supports or our plugin node.
    Model-local functions are not walked: TensorRT maps the plugin node itself and never expands its body."""
    ops = ops or trt_op_list()
    counts: Counter[str] = Counter()
    for node in _nodes(proto.graph):
        counts[f"{node.domain}::{node.op_type}" if node.domain not in ("", "ai.onnx") else node.op_type] += 1
    plugin = f"{PLUGIN_DOMAIN}::{PLUGIN_NAME}"
    unsupported = {op: n for op, n in counts.items() if op != plugin and op not in ops.supported}
    return Coverage(dict(counts), unsupported, counts.get(plugin, 0))


def _nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _nodes(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from _nodes(g)
