"""fp32 ONNX -> INT8 QDQ ONNX: one file for ONNX Runtime, OpenVINO and TensorRT's explicit quantization.

ONNX Runtime's `quantize_static` writes the QuantizeLinear/DequantizeLinear pairs (docs/quantize.md says why this
library). The settings are TensorRT's rules for explicit quantization: int8 symmetric (zero points 0), per-channel
weight scales, per-tensor activation scales, biases left float (TensorRT dequantizes int8, not int32), opset >= 13.
Only Conv, Gemm and MatMul are quantized: the `srg::roi_pool` node, the box arithmetic (Min, Max, Gather, Concat on
the boxes and pairs) and the residual Adds keep their float tensors, so the plugin node sits between dequantized
(float) tensors and box coordinates never pass through int8.

`keep_float` returns a copy with chosen layers back in float, with no second calibration: accuracy control
(`export/accuracy.py`) tries several such copies of one calibrated model.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from srg_deploy.contract import METADATA_PREFIX
from srg_deploy.errors import SRGError

QUANTIZED_OPS = ("Conv", "Gemm", "MatMul")
QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")
METHODS = ("minmax", "entropy", "percentile")  # ONNX Runtime's calibration methods
QUANTIZATION_KEY = METADATA_PREFIX + "quantization"  # JSON: library, scheme, calibration, float layers, accuracy


def is_int8(proto: onnx.ModelProto) -> bool:
    """Already quantized: INT8 metadata, or Q/DQ nodes put there by any other tool."""
    meta = {p.key: p.value for p in proto.metadata_props}
    return meta.get(METADATA_PREFIX + "precision") == "int8" or any(n.op_type in QDQ_OPS for n in proto.graph.node)


def quantizable_layers(proto: onnx.ModelProto) -> list[str]:
    """Names of the Conv/Gemm/MatMul nodes of the default domain whose weight is a constant, in graph order."""
    constants = {init.name for init in proto.graph.initializer}
    return [
        n.name
        for n in proto.graph.node
        if n.domain in ("", "ai.onnx") and n.op_type in QUANTIZED_OPS and len(n.input) > 1 and n.input[1] in constants
    ]


class _Frames:
    """ONNX Runtime's CalibrationDataReader protocol over prepared inputs; `on_case` counts the calibration runs."""

    def __init__(self, cases: Sequence[dict[str, np.ndarray]], on_case: Callable[[int], None] | None) -> None:
        self.cases, self.on_case, self.next = cases, on_case, 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.next >= len(self.cases):
            return None
        self.next += 1
        if self.on_case:
            self.on_case(self.next)
        return self.cases[self.next - 1]

    def rewind(self) -> None:
        self.next = 0


def int8_from_onnx(
    proto: onnx.ModelProto,
    cases: Sequence[dict[str, np.ndarray]],
    method: str = "minmax",
    on_case: Callable[[int], None] | None = None,
) -> onnx.ModelProto:
    """Calibrate on `cases` (inputs as every backend is fed) and insert Q/DQ pairs; metadata precision "int8"."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    if method not in METHODS:
        raise SRGError(f"unknown calibration method {method!r}; expected one of {', '.join(METHODS)}")
    if not cases:
        raise SRGError("the calibration set is empty: give frames with boxes (boxes mode) or any frames (sgdet)")
    if is_int8(proto):
        raise SRGError(
            "the model is already INT8 (it has QuantizeLinear/DequantizeLinear nodes); quantize the fp32 export"
        )
    calibration = {"minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy}.get(
        method, CalibrationMethod.Percentile
    )
    with tempfile.TemporaryDirectory(prefix="srg-quantize-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(proto.SerializeToString())
        logging.disable(logging.WARNING)  # its advice to run its shape-inference pre-processing, printed every call
        try:
            quantize_static(
                str(source),
                str(target),
                _Frames(cases, on_case),
                quant_format=QuantFormat.QDQ,
                op_types_to_quantize=list(QUANTIZED_OPS),
                nodes_to_quantize=quantizable_layers(proto),
                per_channel=True,
                reduce_range=False,
                activation_type=QuantType.QInt8,
                weight_type=QuantType.QInt8,
                calibrate_method=calibration,
                extra_options={
                    "ActivationSymmetric": True,
                    "WeightSymmetric": True,
                    "QuantizeBias": False,  # TensorRT's DequantizeLinear takes int8 (fp8, int4), not int32
                    "OpTypesToExcludeOutputQuantization": list(QUANTIZED_OPS),  # Q/DQ on weighted ops' inputs only
                },
            )
        finally:
            logging.disable(logging.NOTSET)
        quantized = onnx.load(str(target))
    _float_for_other_readers(quantized)
    violations = tensorrt_violations(quantized)
    if violations:  # ONNX Runtime changed what these options produce: a bug to see, not a user error
        raise RuntimeError("the QDQ model breaks TensorRT's explicit-quantization rules: " + "; ".join(violations))
    set_metadata(quantized, {**_meta(proto), "precision": "int8"})
    return quantized


def _float_for_other_readers(model: onnx.ModelProto) -> None:
    """ONNX Runtime hands a quantized activation's dequantized copy to every reader, so the identity shortcut of a
    residual Add would carry int8-rounded values, and a graph output read by a quantized layer (`features`) would be
    that copy too. Readers that are not quantized layers, and graph outputs, get the float tensor back."""
    producers = {o: n for n in model.graph.node for o in n.output}
    for output in model.graph.output:
        dq = producers.get(output.name)
        if dq is None or dq.op_type != "DequantizeLinear":
            continue
        q = producers[dq.input[0]]
        source, copy = q.input[0], output.name + "_DequantizeLinear_Output"
        for node in model.graph.node:
            for k, name in enumerate(node.input):
                if name == output.name:
                    node.input[k] = copy
                elif name == source:
                    node.input[k] = output.name
        dq.output[0] = copy
        producers[source].output[list(producers[source].output).index(source)] = output.name
        producers = {o: n for n in model.graph.node for o in n.output}
    for node in model.graph.node:
        if node.op_type in QUANTIZED_OPS or node.op_type in QDQ_OPS:
            continue
        for k, name in enumerate(node.input):
            dq = producers.get(name)
            q = producers.get(dq.input[0]) if dq is not None and dq.op_type == "DequantizeLinear" else None
            if q is not None and q.op_type == "QuantizeLinear":
                node.input[k] = q.input[0]
    _prune(model)


def tensorrt_violations(proto: onnx.ModelProto) -> list[str]:
    """What in a QDQ model TensorRT's explicit quantization would refuse: non-zero or non-int8 zero points, an
    opset below 13 (per-channel Q/DQ), a quantized weight without per-channel scales."""
    inits = {i.name: i for i in proto.graph.initializer}
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
    problems = [] if opset >= 13 else [f"opset {opset} < 13"]
    for node in proto.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        zero = inits.get(node.input[2]) if len(node.input) > 2 else None
        if zero is None or zero.data_type != onnx.TensorProto.INT8 or np.any(numpy_helper.to_array(zero)):
            problems.append(f"{node.name}: zero point not int8 0")
        if node.op_type == "DequantizeLinear" and node.input[0] in inits:
            scale = numpy_helper.to_array(inits[node.input[1]])
            if scale.ndim != 1 or scale.size != inits[node.input[0]].dims[_axis(node)]:
                problems.append(f"{node.name}: weight scale is not per channel")
    return problems


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 1)


def keep_float(qdq: onnx.ModelProto, fp32: onnx.ModelProto, layers: Sequence[str]) -> onnx.ModelProto:
    """`qdq` with `layers` (node names) reading their fp32 inputs again: their Q/DQ pairs, when nothing else reads
    them, and their int8 weights go; the fp32 weights come back from `fp32`."""
    originals = {n.name: n for n in fp32.graph.node}
    unknown = [name for name in layers if name not in originals]
    if unknown:
        raise SRGError(f"no layer named {unknown[0]!r} in the model")
    model = onnx.ModelProto()
    model.CopyFrom(qdq)
    chosen = set(layers)
    for node in model.graph.node:
        if node.name in chosen:
            del node.input[:]
            node.input.extend(originals[node.name].input)
    present = {i.name for i in model.graph.initializer}
    needed = {name for n in model.graph.node if n.name in chosen for name in n.input}
    model.graph.initializer.extend(i for i in fp32.graph.initializer if i.name in needed and i.name not in present)
    _prune(model)
    return model


def _prune(model: onnx.ModelProto) -> None:
    """Drop Q/DQ nodes whose outputs nobody reads (repeatedly), then initializers nobody reads."""
    outputs = {o.name for o in model.graph.output}
    while True:
        read = outputs | {name for n in model.graph.node for name in n.input}
        dead = [n for n in model.graph.node if n.op_type in QDQ_OPS and not any(o in read for o in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    read = {name for n in model.graph.node for name in n.input} | {
        name for f in model.functions for n in f.node for name in n.input
    }
    kept = [i for i in model.graph.initializer if i.name in read]
    del model.graph.initializer[:]
    model.graph.initializer.extend(kept)


def float_layers(qdq: onnx.ModelProto, fp32: onnx.ModelProto) -> list[str]:
    """The quantizable layers of `fp32` that read no dequantized weight in `qdq` (kept in float)."""
    dequantized = {o for n in qdq.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    nodes = {n.name: n for n in qdq.graph.node}
    return [name for name in quantizable_layers(fp32) if nodes[name].input[1] not in dequantized]


def _meta(proto: onnx.ModelProto) -> dict[str, str]:
    return {p.key[len(METADATA_PREFIX) :]: p.value for p in proto.metadata_props if p.key.startswith(METADATA_PREFIX)}


def set_metadata(proto: onnx.ModelProto, values: dict[str, str]) -> None:
    """Replace the srg_deploy.* metadata with `values` (keys without the prefix), other keys kept."""
    others = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*others, *((METADATA_PREFIX + k, v) for k, v in values.items())]:
        proto.metadata_props.add(key=key, value=value)


def quantization_record(proto: onnx.ModelProto) -> dict | None:
    """The JSON a quantized model carries under srg_deploy.quantization, or None."""
    value = _meta(proto).get("quantization")
    return json.loads(value) if value else None
