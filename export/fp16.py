"""fp32 ONNX -> mixed-precision ONNX for strongly typed TensorRT engines (TensorRT 11 has no FP16 builder flag).

onnxconverter-common converts; we decide, node by node, what runs in fp16 and tidy what the converter leaves:
- fp16: compute on features (Conv, Gemm, MatMul, Add, Relu, MaxPool, ReduceMean, the plugin's feature input),
  and data movement (Gather, Slice, Concat, reshapes) when it moves an fp16 tensor;
- fp32: everything else, which is all the box arithmetic: union boxes and every input of the plugin's `rois`
  (fp16 has 0.5 px resolution at 1000 px, enough to move a RoI to the next feature cell), anchor/delta decoding,
  Softmax, Exp, TopK, NMS and If/Loop bodies (batched NMS adds class offsets to coordinates, > 65504);
- the converter wraps each fp32 node in casts to fp16 and back, even between two fp32 nodes, and misses the
  outer tensors If bodies read; `_tidy` removes those round trips, keeps the outputs fp32 as keep_io_types
  promises, feeds the plugin fp32 rois and restores a valid node order.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection
from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, helper

from srg_deploy.errors import SRGError
from srg_deploy.plugins.spec import PLUGIN_DOMAIN, PLUGIN_NAME

COMPUTE_OPS = frozenset({"Conv", "Relu", "Add", "MaxPool", "Gemm", "MatMul", "ReduceMean", PLUGIN_NAME})
# Activations a node may read or write and still run in fp16 with build-engine --keep-fp32-overflow: a quarter of
# fp16's largest value (validate.gates.FP16_MAX), so that real frames somewhat brighter or busier than the sample
# frame still fit.
OVERFLOW_SHARE = 0.25
MOVE_OPS = frozenset(
    {"Gather", "Slice", "Concat", "Unsqueeze", "Squeeze", "Reshape", "Transpose", "Flatten", "Identity", "Expand"}
)


def fp16_from_onnx(proto: onnx.ModelProto, keep_fp32: Collection[str] = ()) -> onnx.ModelProto:
    """Mixed-precision copy of an exported fp32 model; metadata `srg_deploy.precision` becomes "fp16". Nodes named
    in `keep_fp32` stay fp32 whatever their type (build-engine --keep-fp32-overflow: activations beyond fp16)."""
    from onnxconverter_common.float16 import convert_float_to_float16

    if _meta(proto).get("srg_deploy.precision") == "fp16":
        raise SRGError("the model is already fp16; convert the fp32 export")
    proto = _without_weight_aliases(proto)
    fp16_nodes = fp16_node_names(proto, set(keep_fp32))
    _unshare_initializers(proto, fp16_nodes)
    # Blocked by node name only: blocking by op type would include the Casts the converter appends while it walks
    # the node list, and it would wrap each new one in more Casts forever.
    fp32_nodes = {n.name for n in _all_nodes(proto.graph)} - fp16_nodes
    outputs_by_node = {n.name: list(n.output) for n in proto.graph.node}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the converter warns about every weight it clamps to the fp16 range
        converted = convert_float_to_float16(
            proto, keep_io_types=True, op_block_list=[], node_block_list=sorted(fp32_nodes), check_fp16_ready=False
        )
    fp32_outputs = {o.name for o in proto.graph.output if o.type.tensor_type.elem_type == TensorProto.FLOAT}
    _reconnect_implicit_inputs(converted.graph, outputs_by_node)
    _tidy(converted, fp32_outputs, fp32_nodes)
    meta = {**_meta(converted), "srg_deploy.precision": "fp16"}
    del converted.metadata_props[:]
    helper.set_model_props(converted, meta)
    return converted


def _without_weight_aliases(proto: onnx.ModelProto) -> onnx.ModelProto:
    """A copy without `Identity(initializer)` nodes (torch's exporter writes one per reuse of a shared weight, e.g.
    res5 applied to proposals and again to detections): consumers read the initializer itself, so the converter
    sees one weight used only by fp16 convolutions instead of a weight that an fp32 Identity also reads."""
    out = onnx.ModelProto()
    out.CopyFrom(proto)
    weights = {t.name for t in out.graph.initializer}
    graph_outputs = {o.name for o in out.graph.output}
    alias = {n.output[0]: n.input[0] for n in out.graph.node if n.op_type == "Identity" and n.input[0] in weights}
    alias = {k: v for k, v in alias.items() if k not in graph_outputs}
    for node in _all_nodes(out.graph):
        node.input[:] = [alias.get(x, x) for x in node.input]
    keep = [n for n in out.graph.node if not (n.op_type == "Identity" and n.output[0] in alias)]
    del out.graph.node[:]
    out.graph.node.extend(keep)
    return out


def _unshare_initializers(proto: onnx.ModelProto, fp16_nodes: set[str]) -> None:
    """Give fp32 nodes their own copy of any initializer an fp16 node also reads (the exporter stores identical
    tensors once, e.g. the all-zero biases of BatchNorm-folded convolutions): the converter turns a weight to fp16
    only where no fp32 node reads it, and an fp16 conv would then get an fp32 bias."""
    weights = {t.name: t for t in proto.graph.initializer}
    readers: dict[str, set[bool]] = {}
    for node in proto.graph.node:
        for name in node.input:
            if name in weights:
                readers.setdefault(name, set()).add(node.name in fp16_nodes)
    shared = {name for name, kinds in readers.items() if kinds == {True, False}}
    for name in sorted(shared):
        copy = onnx.TensorProto()
        copy.CopyFrom(weights[name])
        copy.name = f"{name}__fp32"
        proto.graph.initializer.append(copy)
    for node in proto.graph.node:
        if node.name not in fp16_nodes:
            node.input[:] = [f"{x}__fp32" if x in shared else x for x in node.input]


def fp16_node_names(proto: onnx.ModelProto, keep_fp32: set[str] | None = None) -> set[str]:
    """Top-level nodes that run in fp16, decided in graph order: compute ops outside the coordinate chain and
    `keep_fp32`, and data movement whose float input comes from an fp16 node. Graph inputs and constants count as
    fp32."""
    coordinates = coordinate_nodes(proto.graph) | (keep_fp32 or set())
    producer = {out: n for n in proto.graph.node for out in n.output}
    chosen: set[str] = set()
    for node in proto.graph.node:
        if node.name in coordinates:
            continue
        if node.op_type in COMPUTE_OPS or (
            node.op_type in MOVE_OPS
            and any(producer.get(x) is not None and producer[x].name in chosen for x in node.input)
        ):
            chosen.add(node.name)
    return chosen


def _reconnect_implicit_inputs(graph: onnx.GraphProto, outputs_by_node: dict[str, list[str]]) -> None:
    """The converter renames a blocked node's outputs and rewires the consumers it sees, but not the outer
    tensors an If/Loop body reads by name; point those at the producing node's (fp32) output under its new name."""
    produced = {out for n in graph.node for out in n.output} | {i.name for i in graph.input}
    produced |= {t.name for t in graph.initializer}
    renamed = {}
    for node in graph.node:
        for old, new in zip(outputs_by_node.get(node.name, []), node.output):
            if old != new:
                renamed[old] = new
    for node in _all_nodes(graph):
        for k, name in enumerate(node.input):
            if name and name not in produced and name in renamed:
                node.input[k] = renamed[name]


def coordinate_nodes(graph: onnx.GraphProto) -> set[str]:
    """Names of the nodes that compute each plugin node's `rois`, walking upstream until a compute op (a conv or
    matrix product is where coordinates come from features, e.g. the RPN's deltas, and stays fp16 itself)."""
    producer = {out: n for n in graph.node for out in n.output}
    chain: set[str] = set()
    stack = [n.input[1] for n in graph.node if n.op_type == PLUGIN_NAME and n.domain == PLUGIN_DOMAIN]
    while stack:
        node = producer.get(stack.pop())
        if node is None or node.name in chain or node.op_type in COMPUTE_OPS:
            continue
        chain.add(node.name)
        stack.extend(node.input)
    return chain


def _tidy(proto: onnx.ModelProto, fp32_outputs: set[str], fp32_nodes: set[str]) -> None:
    graph = proto.graph
    producer = {out: n for n in graph.node for out in n.output}
    types = _elem_types(proto)

    def cast_to(node: onnx.NodeProto | None, dtype: int) -> bool:
        return node is not None and node.op_type == "Cast" and helper.get_attribute_value(node.attribute[0]) == dtype

    # 1. fp32 -> fp16 -> fp32 round trips: consumers read the fp32 source directly.
    rename: dict[str, str] = {}
    for node in graph.node:
        inner = producer.get(node.input[0]) if node.input else None
        if (
            cast_to(node, TensorProto.FLOAT)
            and cast_to(inner, TensorProto.FLOAT16)
            and types.get(inner.input[0]) == TensorProto.FLOAT
        ):
            rename[node.output[0]] = inner.input[0]
    # 1b. a node kept in fp32 that the converter left reading an fp16 cast of an fp32 tensor (it does so where
    #     the value_info it goes by was incomplete): it reads the fp32 tensor.
    for node in _all_nodes(graph):
        if node.op_type == "Cast" or node.name not in fp32_nodes:
            continue
        for k, name in enumerate(node.input):
            cast = producer.get(name)
            if cast_to(cast, TensorProto.FLOAT16) and types.get(cast.input[0]) == TensorProto.FLOAT:
                node.input[k] = cast.input[0]
    # 2. the plugin's rois: the fp32 tensor, not its fp16 cast.
    for node in graph.node:
        if node.op_type == PLUGIN_NAME and node.domain == PLUGIN_DOMAIN:
            cast = producer.get(node.input[1])
            if cast_to(cast, TensorProto.FLOAT16):
                node.input[1] = cast.input[0]
    for node in _all_nodes(graph):  # If/Loop bodies read outer tensors by name too
        for k, name in enumerate(node.input):
            if name in rename:
                node.input[k] = rename[name]
    for out in graph.output:
        if out.name in rename:  # keep the output name: make its producer an fp32 identity instead
            rename.pop(out.name)
    # 3. graph outputs promised fp32 (keep_io_types) but left fp16: the fp16 tensor keeps feeding the graph under
    #    a new name, and the output is produced in fp32: straight from the fp32 tensor when the fp16 one is only
    #    its cast (detection boxes), else by casting up.
    for out in graph.output:
        if out.name in fp32_outputs and out.type.tensor_type.elem_type != TensorProto.FLOAT:
            source = producer.get(out.name)
            internal = f"{out.name}_fp16"
            for node in _all_nodes(graph):
                node.output[:] = [internal if x == out.name else x for x in node.output]
                node.input[:] = [internal if x == out.name else x for x in node.input]
            if cast_to(source, TensorProto.FLOAT16) and types.get(source.input[0]) == TensorProto.FLOAT:
                final = helper.make_node("Identity", [source.input[0]], [out.name], name=f"{out.name}_fp32")
            else:
                final = helper.make_node("Cast", [internal], [out.name], to=TensorProto.FLOAT, name=f"{out.name}_fp32")
            graph.node.append(final)
            out.type.tensor_type.elem_type = TensorProto.FLOAT
    # 4. a graph output that the graph also uses internally: the converter's keep_io_types cast made fp16 nodes
    #    read the fp32 copy; they read the fp16 tensor before the cast.
    producer = {out: n for n in graph.node for out in n.output}
    outputs = {o.name for o in graph.output}
    for node in graph.node:
        if node.op_type == "Cast" or node.name in fp32_nodes:
            continue
        for k, name in enumerate(node.input):
            cast = producer.get(name)
            if name in outputs and cast_to(cast, TensorProto.FLOAT) and types.get(cast.input[0]) == TensorProto.FLOAT16:
                node.input[k] = cast.input[0]
    _drop_dead_casts(graph)
    _sort_topologically(graph)
    del graph.value_info[:]  # stale types from before the tidy; shape inference rebuilds what tools need


def _all_nodes(graph: onnx.GraphProto):
    """Every node of the graph and of its subgraphs (If/Loop bodies), depth first."""
    for node in graph.node:
        yield node
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                yield from _all_nodes(sub)


def _sort_topologically(graph: onnx.GraphProto) -> None:
    """Stable topological order in which an If/Loop node also waits for the outer tensors its body reads (the
    converter appends its Casts at the end and re-sorts ignoring those implicit inputs)."""
    nodes = list(graph.node)
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    produced = {out for n in nodes for out in n.output}

    def needs(node: onnx.NodeProto) -> set[str]:
        names = set(node.input)
        for sub in _all_nodes(graph_of(node)):
            names |= set(sub.input)
        return {x for x in names if x in produced}

    def graph_of(node: onnx.NodeProto) -> onnx.GraphProto:
        body = onnx.GraphProto()
        for attr in node.attribute:
            for sub in [attr.g] if attr.type == onnx.AttributeProto.GRAPH else attr.graphs:
                body.node.extend(sub.node)
        return body

    deps = [needs(n) for n in nodes]
    done = [False] * len(nodes)
    ordered: list[onnx.NodeProto] = []
    while len(ordered) < len(nodes):
        before = len(ordered)
        for k, node in enumerate(nodes):
            if not done[k] and deps[k] <= available:
                done[k] = True
                ordered.append(node)
                available.update(node.output)
        if len(ordered) == before:
            raise RuntimeError("fp16 conversion produced a graph whose nodes cannot be ordered")
    del graph.node[:]
    graph.node.extend(ordered)


def _drop_dead_casts(graph: onnx.GraphProto) -> None:
    while True:
        used = {name for n in _all_nodes(graph) for name in n.input} | {o.name for o in graph.output}
        dead = [n for n in graph.node if n.op_type == "Cast" and n.output[0] not in used]
        if not dead:
            return
        for n in dead:
            graph.node.remove(n)


def _elem_types(proto: onnx.ModelProto) -> dict[str, int]:
    """Element type of every named tensor after conversion (inputs, initializers, inferred intermediates)."""
    inferred = onnx.shape_inference.infer_shapes(proto, strict_mode=False)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    types |= {v.name: v.type.tensor_type.elem_type for v in proto.graph.input}
    types |= {t.name: t.data_type for t in proto.graph.initializer}
    return types


def _meta(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key: p.value for p in proto.metadata_props}


@dataclass(frozen=True)
class Peak:
    """The largest |value| a node reads (activations, not weights) and writes, on one input."""

    node: str
    op: str
    output: float
    input: float


def activation_peaks(proto: onnx.ModelProto, inputs: dict[str, np.ndarray]) -> dict[str, Peak]:
    """Every top-level node of the fp32 `proto` with the largest |value| among the float activations it reads and
    writes on `inputs`, run in ONNX Runtime: where an fp16 conversion would overflow (fp16 stores > 65504 as inf)."""
    import onnxruntime as ort

    inferred = onnx.shape_inference.infer_shapes(proto)
    floats = {
        v.name
        for v in (*inferred.graph.value_info, *inferred.graph.output)
        if v.type.tensor_type.elem_type == TensorProto.FLOAT
    }
    produced = {out for node in inferred.graph.node for out in node.output if out in floats}
    probe = onnx.ModelProto()
    probe.CopyFrom(inferred)
    existing = {o.name for o in probe.graph.output}
    probe.graph.output.extend(
        helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in produced if name not in existing
    )
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs() if o.name in produced]
    tensors = {
        n: float(np.abs(v.astype(np.float64)).max()) if v.size else 0.0
        for n, v in zip(names, session.run(names, inputs))
    }
    tensors |= {
        n: float(np.abs(v.astype(np.float64)).max()) if v.size else 0.0
        for n, v in inputs.items()
        if v.dtype.kind == "f"
    }
    return {
        node.name: Peak(
            node.name,
            node.op_type,
            max((tensors.get(t, 0.0) for t in node.output), default=0.0),
            max((tensors.get(t, 0.0) for t in node.input), default=0.0),
        )
        for node in inferred.graph.node
        if any(t in tensors for t in node.output)
    }


def overflowing(peaks: dict[str, Peak], limit: float) -> set[str]:
    """Nodes that read or write activations beyond `limit`: kept in fp32, every tensor they exchange with fp16
    nodes stays below it."""
    return {name for name, p in peaks.items() if max(p.output, p.input) > limit}
