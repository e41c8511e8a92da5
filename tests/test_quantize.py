"""`srg-deploy quantize`: the QDQ structure TensorRT's explicit quantization needs, the INT8 model in ONNX Runtime
(infer, verify with the int8 gates, bench, eval) and OpenVINO, the metadata, accuracy control on a trained model,
calibration from a folder and from a dataset split, and one-line refusals."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import SCENE_TRAIN_ARGS, assert_clean_error, make_frame, needs_tensorrt, run_cli
from onnx import numpy_helper

from srg_deploy.export.quantize import quantizable_layers, quantization_record
from srg_deploy.runtime.predictor import prepare
from srg_deploy.validate.compare import diff
from srg_deploy.validate.gates import GATES

BOXES = [[4, 6, 60, 70], [30, 20, 110, 100], [70, 10, 150, 90], [0, 0, 159, 119]]


@pytest.fixture(scope="module")
def frames(tmp_path_factory):
    """A folder of six 120x160 frames (seeds the model never saw) and a boxes.json with boxes for each."""
    import cv2

    root = tmp_path_factory.mktemp("calibration")
    folder = root / "frames"
    folder.mkdir()
    for k in range(6):
        cv2.imwrite(str(folder / f"f{k}.png"), make_frame(120, 160, seed=100 + k))
    (root / "boxes.json").write_text(json.dumps(BOXES))
    return folder, root / "boxes.json"


@pytest.fixture(scope="module")
def int8_small(tmp_path_factory, small_onnx, frames):
    folder, boxes = frames
    path = tmp_path_factory.mktemp("int8") / "model-int8.onnx"
    result = run_cli("quantize", small_onnx, "--output", path, "--calibration", folder, "--boxes", boxes)
    assert result.returncode == 0, result.stdout + result.stderr
    return path


def test_qdq_structure_for_tensorrt(int8_small, small_onnx):
    model, fp32 = onnx.load(int8_small), onnx.load(small_onnx)
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    assert next(o.version for o in model.opset_import if o.domain == "") >= 13
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:  # symmetric: every zero point an int8 0
        zero = inits[node.input[2]]
        assert zero.data_type == onnx.TensorProto.INT8 and not numpy_helper.to_array(zero).any(), node.name
    for name in quantizable_layers(fp32):  # every layer reads a dequantized input and per-channel int8 weights
        node = next(n for n in model.graph.node if n.name == name)
        assert producers[node.input[0]].op_type == "DequantizeLinear", name
        weight_dq = producers[node.input[1]]
        weight = inits[weight_dq.input[0]]
        assert weight.data_type == onnx.TensorProto.INT8
        scale = numpy_helper.to_array(inits[weight_dq.input[1]])
        axis = next((a.i for a in weight_dq.attribute if a.name == "axis"), 1)
        assert scale.ndim == 1 and scale.size == weight.dims[axis] > 1, name
    # RoI pooling untouched, fed and read in float; box arithmetic float
    (roi,) = [n for n in model.graph.node if n.domain == "srg"]
    (roi_fp32,) = [n for n in fp32.graph.node if n.domain == "srg"]
    assert roi.attribute == roi_fp32.attribute and list(roi.input) == list(roi_fp32.input)
    assert [f.name for f in model.functions] == [f.name for f in fp32.functions]
    for node in model.graph.node:
        if node.op_type in ("Min", "Max", "Concat", "Gather", "Slice", "Add", "Relu") or node.domain == "srg":
            assert not any(producers.get(i) is not None and producers[i].op_type == "DequantizeLinear"
                           for i in node.input), node.name  # fmt: skip
    assert not any(n.op_type == "QuantizeLinear" and n.input[0] in ("boxes", "pairs") for n in model.graph.node)


def test_metadata_records_calibration_and_method(int8_small, frames):
    model = onnx.load(int8_small)
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["srg_deploy.precision"] == "int8" and meta["srg_deploy.mode"] == "boxes"
    record = quantization_record(model)
    assert record["method"] == "minmax" and record["format"] == "QDQ"
    assert str(frames[0]) in record["calibration"] and "6 frames" in record["calibration"]
    assert record["float_layers"] == [] and record["accuracy"] is None


def test_int8_runs_in_onnxruntime_and_openvino(int8_small, small_onnx, small_model):
    from srg_deploy.runtime.ort_backend import OrtBackend

    frame = make_frame(150, 200, seed=7)  # another size and seed than calibration
    boxes = np.array([[10, 12, 90, 100], [50, 30, 190, 140], [0, 0, 199, 149]], np.float64)
    with OrtBackend(small_onnx) as fp32, OrtBackend(int8_small) as int8:
        assert int8.precision == "int8"
        inputs = prepare(fp32.config, "boxes", frame, boxes).inputs
        ref, got = fp32.run(inputs), int8.run(inputs)
    for name in ("features", "object_logits", "relation_logits"):
        assert GATES["int8"].output_failures(diff(name, ref[name], got[name])) == [], name  # the int8 gates
        assert not np.array_equal(ref[name], got[name])  # it really computes in int8

    from srg_deploy.runtime.openvino_backend import OpenVinoBackend

    with OpenVinoBackend(int8_small, "fp32") as openvino:  # Q/DQ layers in int8, the rest f32
        assert openvino.precision == "int8"
        ov_out = openvino.run(inputs)
    for name in ("features", "object_logits", "relation_logits"):
        assert ov_out[name].shape == ref[name].shape
        assert GATES["int8"].output_failures(diff(name, ref[name], ov_out[name])) == [], name


def test_verify_infer_bench_accept_int8(int8_small, small_checkpoint, frames, tmp_path):
    folder, boxes = frames
    report = tmp_path / "report.json"
    result = run_cli(
        "verify", int8_small, "--reference", small_checkpoint, "--source", folder, "--boxes", boxes,
        "--frames", "2", "--report", report,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "int8 gates" in result.stdout
    assert json.loads(report.read_text())["gates"]["precision"] == "int8"
    result = run_cli(
        "verify", int8_small, "--reference", small_checkpoint, "--source", folder, "--boxes", boxes,
        "--frames", "2", "--backend", "openvino",
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert "int8 gates" in result.stdout
    out = tmp_path / "out.jsonl"
    result = run_cli("infer", int8_small, "--source", folder, "--boxes", boxes, "--json", out, "--max-frames", "2")
    assert result.returncode == 0, result.stdout + result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(records) == 2 and len(records[0]["objects"]) == len(BOXES)
    result = run_cli("bench", int8_small, "--image-size", "96x128", "--boxes", "3", "--iters", "1", "--warmup", "0")
    assert result.returncode == 0, result.stdout + result.stderr


# --- accuracy control on a model trained on a generated dataset -------------------------------------------------

VAL = ("--val-images", "18")  # scene_data: 18 split-0 images (all val here) and 6 test images (calibration)


@pytest.fixture(scope="module")
def partly_trained(tmp_path_factory, scene_data, scene_checkpoint):
    """One epoch: a model whose margins are thin enough for INT8 to cost recall (one trained longer on these easy
    scenes loses nothing, and accuracy control would have nothing to do)."""
    root = tmp_path_factory.mktemp("partly")
    result = run_cli("train", scene_checkpoint, "--data", scene_data, "--output", root / "run", *SCENE_TRAIN_ARGS,
                     "--epochs", "1")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_cli("export", root / "run" / "checkpoint", "--output", root / "model.onnx", "--skip-check")
    assert result.returncode == 0, result.stdout + result.stderr
    return root / "model.onnx"


def quantize_on_data(model, output, scene_data, *extra):
    return run_cli("quantize", model, "--output", output, "--data", scene_data, *VAL, "--split", "test", *extra)


def test_accuracy_control_keeps_more_in_float_when_tightened(partly_trained, scene_data, tmp_path):
    loose = tmp_path / "loose.onnx"
    result = quantize_on_data(partly_trained, loose, scene_data, "--max-drop", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    record = quantization_record(onnx.load(loose))
    assert "test split" in record["calibration"]  # calibrated from a dataset split
    accuracy = record["accuracy"]
    assert accuracy["task"] == "predcls" and accuracy["images"] == 18 and record["float_layers"] == []
    full_drop = accuracy["drop"]["50"]
    assert accuracy["trials"][0] == {"float_layers": 0, "drop": full_drop}
    assert full_drop > 0, "INT8 cost this model no recall: accuracy control cannot be exercised on it"
    assert set(accuracy["fp32"]) == set(accuracy["int8"]) == {"20", "50", "100"}

    tight = tmp_path / "tight.onnx"
    max_drop = full_drop / 2
    result = quantize_on_data(partly_trained, tight, scene_data, "--max-drop", f"{max_drop:.6f}")
    assert result.returncode == 0, result.stdout + result.stderr
    record = quantization_record(onnx.load(tight))
    assert len(record["float_layers"]) > 0 and record["accuracy"]["drop"]["50"] <= max_drop
    model = onnx.load(tight)
    float_nodes = [n for n in model.graph.node if n.name in set(record["float_layers"])]
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    assert all(n.input[1] not in dequantized for n in float_nodes)  # really float weights
    assert "drop" in result.stdout


def test_accuracy_control_refuses_cleanly(partly_trained, scene_data, tmp_path):
    output = tmp_path / "never.onnx"
    # Full INT8 costs this model recall (the test above checks it); with no layer allowed back to float, a zero
    # drop cannot be met.
    result = quantize_on_data(partly_trained, output, scene_data, "--max-drop", "0", "--max-float-layers", "0")
    assert_clean_error(result, "cannot keep the R@50 drop within 0", "the best reached was 0.", "0 of 109 layers")
    assert not output.exists() and not list(tmp_path.iterdir())


# --- bad input: one line each --------------------------------------------------------------------------------------


def test_int8_model_given_again(int8_small, frames, tmp_path):
    folder, boxes = frames
    result = run_cli("quantize", int8_small, "-o", tmp_path / "x.onnx", "--calibration", folder, "--boxes", boxes)
    assert_clean_error(result, "already INT8", "quantize the fp32 export")


def test_calibration_without_boxes_for_boxes_model(small_onnx, frames, tmp_path):
    result = run_cli("quantize", small_onnx, "-o", tmp_path / "x.onnx", "--calibration", frames[0])
    assert_clean_error(result, "boxes-mode model", "--boxes")


def test_empty_calibration_set(small_onnx, frames, tmp_path, write_json):
    empty = write_json("empty.json", [])
    output = tmp_path / "x.onnx"
    result = run_cli("quantize", small_onnx, "-o", output, "--calibration", frames[0], "--boxes", empty)
    assert_clean_error(result, "calibration set is empty", "none with boxes")
    assert not output.exists()


@pytest.mark.trt
@needs_tensorrt
def test_build_engine_accepts_int8(int8_small, small_model, tmp_path):
    """TensorRT builds the QDQ model strongly typed (explicit quantization), the plugin between float tensors."""
    from srg_deploy.runtime.torch_backend import TorchBackend
    from srg_deploy.runtime.trt_backend import TrtBackend
    from srg_deploy.tensorrt_env import sidecar_path

    engine = tmp_path / "int8.engine"
    result = run_cli("build-engine", int8_small, "-o", engine, "--max-boxes", "8", "--max-pairs", "28",
                     "--opt-size", "120x160", "--max-size", "256x256")  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(sidecar_path(engine).read_text())["precision"] == "int8"
    frame = make_frame(120, 160, seed=3)
    with TrtBackend(engine) as trt_backend:
        inputs = prepare(trt_backend.config, "boxes", frame, np.array(BOXES, np.float64)).inputs
        got = trt_backend.run(inputs)
    ref = TorchBackend(small_model).run(inputs)
    for name in ("features", "object_logits", "relation_logits"):
        assert GATES["int8"].output_failures(diff(name, ref[name], got[name])) == [], name
