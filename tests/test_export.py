"""ONNX export: one file for ONNX Runtime and TensorRT, checked against eager PyTorch and torchvision."""

from __future__ import annotations

import ast
import inspect
import json
import typing
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
import torchvision
from conftest import ROOT, assert_clean_error, gate_failures, run_cli, small_config
from onnx import helper

from srg_deploy.checkpoint import random_model
from srg_deploy.contract import onnx_metadata
from srg_deploy.export.checks import check_onnx, op_coverage
from srg_deploy.export.onnx_export import onnx_from_model, replace_max_roi_pool
from srg_deploy.plugins.spec import ATTRIBUTES, PLUGIN_DOMAIN, PLUGIN_NAME, Float32Array, Int32Array
from srg_deploy.runtime.ort_backend import OrtBackend
from srg_deploy.runtime.torch_backend import TorchBackend

BOXES = np.array(
    [[8, 12, 120, 90], [60, 40, 150, 110], [-20, -10, 30, 25], [70, 50, 70, 50], [100, 80, 40, 30], [0, 0, 159, 119]],
    np.float32,
)


@pytest.mark.parametrize(
    "size, n_boxes, pairs",
    [
        ((120, 160), 6, "all"),
        ((97, 131), 1, "none"),  # odd size, N = 1, P = 0
        ((75, 203), 3, "all"),
        ((64, 80), 0, "none"),  # N = 0
    ],
)
def test_onnxruntime_matches_eager(model, onnx_boxes, size, n_boxes, pairs):
    rng = np.random.default_rng(n_boxes)
    boxes = BOXES[:n_boxes]
    pair_array = (
        np.stack(np.triu_indices(n_boxes, 1), 1).astype(np.int64) if pairs == "all" else np.zeros((0, 2), np.int64)
    )
    inputs = {"image": rng.standard_normal((1, 3, *size)).astype(np.float32), "boxes": boxes, "pairs": pair_array}
    ref = TorchBackend(model).run(inputs)
    got = OrtBackend(onnx_boxes).run(inputs)
    assert gate_failures(inputs, ref, got, "fp32") == []


def test_graph_io_plugin_nodes_and_metadata(onnx_boxes, model):
    proto = onnx.load(str(onnx_boxes))
    check_onnx(proto)
    assert [i.name for i in proto.graph.input] == ["image", "boxes", "pairs"]
    assert [o.name for o in proto.graph.output] == ["features", "object_logits", "relation_logits"]
    dims = {v.name: [d.dim_param or d.dim_value for d in v.type.tensor_type.shape.dim] for v in proto.graph.input}
    assert dims == {"image": [1, 3, "height", "width"], "boxes": ["num_boxes", 4], "pairs": ["num_pairs", 2]}
    plugin = [n for n in proto.graph.node if n.domain == PLUGIN_DOMAIN]
    assert len(plugin) == 1 and plugin[0].op_type == PLUGIN_NAME  # one RoI pooling for boxes and unions together
    attrs = {a.name: helper.get_attribute_value(a) for a in plugin[0].attribute}
    assert attrs == {"pooled_shape": [7, 7], "spatial_scale": 1 / 16, "plugin_namespace": b"srg"}
    assert not {"MaxRoiPool", "Unique", "Loop"} & {n.op_type for n in proto.graph.node}
    assert [f.name for f in proto.functions] == [PLUGIN_NAME] and proto.functions[0].domain == PLUGIN_DOMAIN
    assert min(o.version for o in proto.opset_import if o.domain == "") >= 17
    meta = onnx_metadata(proto)
    assert meta["mode"] == "boxes" and json.loads(meta["config"])["objects"] == list(model.config.objects)


def test_exported_roi_pool_node_is_bit_identical_to_torchvision(tmp_path):
    """The node as exported (torch's exporter + our rewrite + local function), run by ONNX Runtime, on 4000
    random and adversarial RoIs over two images."""

    class Pool(torch.nn.Module):
        def forward(self, x, rois):
            return torchvision.ops.roi_pool(x, rois, (7, 7), 1 / 16)

    x = torch.randn(2, 8, 13, 17)
    rois = torch.tensor([[0, 0, 0, 100, 80], [1, -40, -30, 20, 25], [0, 300, 300, 400, 380], [1, 50, 50, 50, 50.0]])
    path = tmp_path / "pool.onnx"
    torch.onnx.export(
        Pool(), (x, rois), str(path), dynamo=False, opset_version=17, input_names=["x", "rois"], output_names=["y"],
        dynamic_axes={"x": {0: "b", 2: "h", 3: "w"}, "rois": {0: "r"}},
    )  # fmt: skip
    proto = onnx.load(str(path))
    assert replace_max_roi_pool(proto) == 1
    check_onnx(proto)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    xy = torch.rand(4000, 4, generator=g) * 330 - 30
    xy[::7] = torch.floor(xy[::7] / 8) * 8  # exact .5 cell ties at scale 1/16
    xy[1::7, 2:] = xy[1::7, :2]  # zero size
    random_rois = torch.cat([torch.randint(0, 2, (4000, 1), generator=g).float(), xy], dim=1)
    for features, r in ((x, rois), (torch.randn(2, 8, 21, 19, generator=g), random_rois), (x, rois[:0])):
        (got,) = session.run(None, {"x": features.numpy(), "rois": r.numpy()})
        expected = torchvision.ops.roi_pool(features, r, (7, 7), 1 / 16).numpy()
        assert got.shape == expected.shape and np.array_equal(got, expected)


def test_op_coverage_names_unsupported_ops(onnx_boxes):
    proto = onnx.load(str(onnx_boxes))
    coverage = op_coverage(proto)
    assert coverage and coverage.plugin_nodes == 1 and not coverage.unsupported
    proto.graph.node.append(helper.make_node("Unique", ["boxes"], ["unique_boxes"], name="dedupe"))
    proto.graph.node.append(helper.make_node("MaxRoiPool", ["x", "r"], ["y"], pooled_shape=[7, 7]))
    coverage = op_coverage(proto)
    assert not coverage and coverage.unsupported == {"Unique": 1, "MaxRoiPool": 1}


def test_trt_op_list_is_data_with_its_source():
    data = json.loads((ROOT / "export" / "data" / "trt_onnx_ops.json").read_text())
    assert data["tensorrt_version"] and "onnx-tensorrt" in data["source"]
    assert "Conv" in data["supported"] and "MaxRoiPool" in data["unsupported"]


@pytest.mark.parametrize("threshold", [0.0, 1.0])
def test_sgdet_graph_runs_in_onnxruntime(tmp_path, threshold):
    model = random_model(small_config(score_threshold=threshold, max_detections=8), seed=3)
    with torch.no_grad():  # peaked class scores: an untrained head's near-ties would let rounding pick other boxes
        model.object_head.weight.mul_(20)
    path = tmp_path / "sgdet.onnx"
    path.write_bytes(onnx_from_model(model, "sgdet").SerializeToString())
    assert [o.name for o in onnx.load(str(path)).graph.output] == [
        "boxes", "scores", "labels", "features", "object_logits", "pairs", "relation_logits",
    ]  # fmt: skip
    image = np.random.default_rng(0).standard_normal((1, 3, 96, 131)).astype(np.float32)
    got = OrtBackend(path).run({"image": image})
    ref = TorchBackend(model, mode="sgdet").run({"image": image})
    n = len(got["boxes"])
    assert (n > 0) == (threshold == 0.0) and n <= 8
    assert got["relation_logits"].shape == (n * (n - 1) // 2, 2, 51)
    assert gate_failures({"image": image}, ref, got, "fp32") == []  # sgdet: identical detections, boxes within 0.25 px


def test_plugin_node_attributes_match_the_tensorrt_registration(onnx_boxes):
    """Read the registration source (no TensorRT needed): register, aot_impl and impl all take exactly the
    node's plugin attributes, in order, with the types TensorRT's parser produces for them. The annotations are
    classes that tensorrt.plugin reads as NDArray[int32] / NDArray[float32] (`__origin__`, `__args__[1]`)."""
    tree = ast.parse((ROOT / "plugins" / "trt_plugin.py").read_text())
    functions = {f.name: f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef)}
    onnx_types = {"pooled_shape": "Int32Array", "spatial_scale": "Float32Array"}
    for annotation, dtype in ((Int32Array, np.int32), (Float32Array, np.float32)):
        assert inspect.isclass(annotation) and annotation.__origin__ is np.ndarray
        assert typing.get_args(annotation.__args__[1]) == (dtype,)
    for name in ("roi_pool_desc", "roi_pool_aot_impl", "roi_pool_impl"):
        args = functions[name].args.args
        attrs = [(a.arg, ast.unparse(a.annotation)) for a in args[2:] if a.arg not in ("outputs", "tactic", "stream")]
        assert attrs == [(k, onnx_types[k]) for k in ATTRIBUTES], name
    node = next(n for n in onnx.load(str(onnx_boxes)).graph.node if n.domain == PLUGIN_DOMAIN)
    kinds = {a.name: onnx.AttributeProto.AttributeType.Name(a.type) for a in node.attribute}
    assert kinds == {"pooled_shape": "INTS", "spatial_scale": "FLOAT", "plugin_namespace": "STRING"}
    decorator = ast.unparse(functions["roi_pool_desc"].decorator_list[0])
    assert decorator == "trtp.register(PLUGIN_ID)"


def test_export_cli_report_and_infer_parity(small_checkpoint, write_image, write_json, tmp_path):
    out = tmp_path / "model.onnx"
    result = run_cli("export", small_checkpoint, "--output", out)
    assert result.returncode == 0, result.stderr
    for line in ("[✓] onnx.checker full check", "[✓] op coverage", "[✓] parity: onnxruntime", f"wrote {out}"):
        assert line in result.stdout
    image = write_image("f.png", 91, 137)
    boxes = write_json("boxes.json", [[5, 5, 60, 50], [30, 20, 130, 88], [0, 0, 136, 90]])
    records = {}
    for name, model in (("torch", small_checkpoint), ("onnx", out)):
        path = tmp_path / f"{name}.jsonl"
        result = run_cli("infer", model, "--source", image, "--boxes", boxes, "--json", path)
        assert result.returncode == 0, result.stderr
        records[name] = json.loads(path.read_text())
    a, b = records["torch"], records["onnx"]
    assert a["objects"] == b["objects"] and a["spatial"] == b["spatial"]
    assert [(r["subject"], r["object"], r["predicate"]) for r in a["relations"]] == [
        (r["subject"], r["object"], r["predicate"]) for r in b["relations"]
    ]
    assert [r["score"] for r in a["relations"]] == pytest.approx([r["score"] for r in b["relations"]], rel=1e-4)


def test_export_cli_errors(small_checkpoint, tmp_path):
    assert_clean_error(run_cli("export", small_checkpoint, "-o", tmp_path / "m.onnx", "--opset", "13"), "opset 13")
    assert_clean_error(run_cli("export", tmp_path / "missing", "-o", tmp_path / "m.onnx"), "does not exist")
    result = run_cli("export", small_checkpoint, "-o", tmp_path / "m.onnx", "--mode", "boxes", "--max-pairs", "5")
    assert_clean_error(result, "sgdet graphs only")
    assert not list(Path(tmp_path).glob("*.onnx*"))
