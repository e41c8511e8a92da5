"""PyTorch -> ONNX through torch's exporter, with each RoI pooling as the `srg::roi_pool` plugin node.

torch's TorchScript exporter (dynamo=False; docs/DESIGN.md §4) writes torchvision's roi_pool as the standard
`MaxRoiPool`. We then rename each such node to `roi_pool` in domain `srg`, carrying `plugin_namespace="srg"` and
every attribute the TensorRT plugin declares, and add an ONNX model-local function `srg.roi_pool` whose body is
that same `MaxRoiPool`. One file, two consumers: TensorRT's parser maps the node to the registered plugin;
ONNX Runtime (and any ONNX tool) inlines the function, which is bit-identical to torchvision.
"""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from pathlib import Path

import onnx
import torch
from onnx import helper

from srg_deploy.contract import METADATA_PREFIX, MODES, dynamic_axes, input_specs, output_names
from srg_deploy.detector import SGDetNet
from srg_deploy.errors import SRGError
from srg_deploy.model import SRGNet
from srg_deploy.plugins.spec import PLUGIN_DOMAIN, PLUGIN_NAME, PLUGIN_VERSION, node_attributes

MIN_OPSET, MAX_OPSET, DEFAULT_OPSET = 17, 20, 17


def sample_inputs(mode: str, height: int = 224, width: int = 320) -> tuple[torch.Tensor, ...]:
    """Tracing inputs: a few boxes and pairs so that every dynamic axis is > 1 when traced."""
    g = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, height, width, generator=g)
    if mode == "sgdet":
        return (image,)
    boxes = torch.tensor([[8.0, 12.0, 120.0, 160.0], [60.0, 40.0, 300.0, 210.0], [100.0, 100.0, 180.0, 150.0]])
    pairs = torch.tensor([[0, 1], [0, 2], [1, 2]])
    return image, boxes, pairs


def torch_module(model: SRGNet, mode: str, max_pairs: int | None = None) -> torch.nn.Module:
    """The module whose forward *is* the exported graph for `mode`."""
    if mode not in MODES:
        raise SRGError(f"unknown export mode {mode!r}; expected boxes or sgdet")
    if mode == "boxes" and max_pairs is not None:
        raise SRGError("--max-pairs is baked into sgdet graphs only; a boxes graph takes whatever pairs it is given")
    return (SGDetNet(model, max_pairs) if mode == "sgdet" else model).eval()


def onnx_from_model(
    model: SRGNet, mode: str = "boxes", opset: int = DEFAULT_OPSET, max_pairs: int | None = None
) -> onnx.ModelProto:
    """Export `model` and turn its RoI pooling into plugin nodes; metadata carries the config and mode."""
    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise SRGError(f"opset {opset} is not supported; use {MIN_OPSET}..{MAX_OPSET}")
    module = torch_module(model, mode, max_pairs)
    path = _scratch_path()
    try:
        with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                module,
                sample_inputs(mode),
                str(path),
                dynamo=False,
                opset_version=opset,
                input_names=list(input_specs(mode)),
                output_names=list(output_names(mode)),
                dynamic_axes=dynamic_axes(mode),
                do_constant_folding=True,
            )
        proto = onnx.load(str(path))
    finally:
        path.unlink(missing_ok=True)
        module.eval()  # torch.onnx.export restores the module's previous training flag; keep it in eval
    replace_max_roi_pool(proto)
    config = model.config
    meta = {
        "mode": mode,
        "config": json.dumps(config.to_dict()),
        "precision": "fp32",
        "max_pairs": "" if max_pairs is None else str(max_pairs),
        "torch": torch.__version__,
    }
    helper.set_model_props(proto, {METADATA_PREFIX + k: v for k, v in meta.items()})
    proto.producer_name, proto.doc_string = (
        "srg-deploy",
        f"SRGNet ({mode} mode), RoI pooling as {PLUGIN_DOMAIN}::{PLUGIN_NAME}",
    )
    return proto


def replace_max_roi_pool(proto: onnx.ModelProto) -> int:
    """Rename every `MaxRoiPool` to the plugin node and add the `srg.roi_pool` local function; returns the count."""
    count = 0
    for node in proto.graph.node:
        if node.op_type == "MaxRoiPool" and node.domain in ("", "ai.onnx"):
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            pooled = [int(v) for v in attrs["pooled_shape"]]
            scale = float(attrs.get("spatial_scale", 1.0))
            del node.attribute[:]
            node.attribute.extend(helper.make_attribute(k, v) for k, v in node_attributes(pooled, scale).items())
            node.op_type, node.domain = PLUGIN_NAME, PLUGIN_DOMAIN
            count += 1
    if count:
        proto.functions.append(roi_pool_function(_onnx_opset(proto)))
        if not any(o.domain == PLUGIN_DOMAIN for o in proto.opset_import):
            proto.opset_import.append(helper.make_opsetid(PLUGIN_DOMAIN, int(PLUGIN_VERSION)))
    return count


def roi_pool_function(opset: int) -> onnx.FunctionProto:
    """`srg.roi_pool(X, rois)`: `MaxRoiPool` on X cast to fp32, cast back like X, attributes passed by reference.

    Max pooling only selects values, so pooling fp16 features in fp32 and casting back is bit-identical to pooling
    in fp16; the casts let one fp16 artifact run in ONNX Runtime, whose MaxRoiPool is fp32-only."""
    pool = helper.make_node("MaxRoiPool", ["X32", "rois"], ["Y32"])
    for name in ("pooled_shape", "spatial_scale"):
        ref = onnx.AttributeProto()
        ref.name, ref.ref_attr_name = name, name
        ref.type = onnx.AttributeProto.INTS if name == "pooled_shape" else onnx.AttributeProto.FLOAT
        pool.attribute.append(ref)
    return helper.make_function(
        PLUGIN_DOMAIN,
        PLUGIN_NAME,
        inputs=["X", "rois"],
        outputs=["Y"],
        nodes=[
            helper.make_node("Cast", ["X"], ["X32"], to=onnx.TensorProto.FLOAT),
            pool,
            helper.make_node("CastLike", ["Y32", "X"], ["Y"]),
        ],
        opset_imports=[helper.make_opsetid("", opset)],
        attributes=list(node_attributes([1, 1], 1.0)),
        doc_string="Fast R-CNN RoI max pooling (torchvision.ops.roi_pool semantics); TensorRT runs the srg::roi_pool plugin.",
    )


def _onnx_opset(proto: onnx.ModelProto) -> int:
    return next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx"))


def _scratch_path() -> Path:
    fd, name = tempfile.mkstemp(suffix=".onnx")
    os.close(fd)
    return Path(name)
