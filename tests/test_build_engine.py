"""build-engine: the fp16 path everywhere, the TensorRT build and runtime where TensorRT exists."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import onnx
import pytest
import torch
from conftest import HAS_TENSORRT, assert_clean_error, gate_failures, needs_tensorrt, run_cli, small_config
from onnx import TensorProto

from srg_deploy.checkpoint import random_model
from srg_deploy.contract import onnx_metadata
from srg_deploy.export.fp16 import coordinate_nodes, fp16_from_onnx
from srg_deploy.export.onnx_export import onnx_from_model
from srg_deploy.plugins.spec import PLUGIN_NAME
from srg_deploy.runtime.ort_backend import OrtBackend
from srg_deploy.runtime.torch_backend import TorchBackend
from srg_deploy.runtime.verify import verify
from srg_deploy.tensorrt_env import SIDECAR_FORMAT, sidecar_path
from srg_deploy.validate.cases import sample_cases
from srg_deploy.validate.gates import Gates


def elem_types(proto: onnx.ModelProto) -> dict[str, int]:
    inferred = onnx.shape_inference.infer_shapes(proto)
    types = {v.name: v.type.tensor_type.elem_type for v in inferred.graph.value_info}
    return types | {v.name: v.type.tensor_type.elem_type for v in list(proto.graph.input) + list(proto.graph.output)}


@pytest.fixture(scope="module")
def fp16_proto(small_onnx):
    return fp16_from_onnx(onnx.load(str(small_onnx)))


def test_fp16_keeps_coordinates_and_outputs_fp32(small_onnx, fp16_proto):
    fp32 = onnx.load(str(small_onnx))
    onnx.checker.check_model(fp16_proto, full_check=True)
    types = elem_types(fp16_proto)
    plugin = next(n for n in fp16_proto.graph.node if n.op_type == PLUGIN_NAME)
    assert types[plugin.input[0]] == TensorProto.FLOAT16  # features in fp16
    assert types[plugin.input[1]] == TensorProto.FLOAT  # rois in fp32
    for name in coordinate_nodes(fp32.graph):  # union boxes and roi assembly never round through fp16
        node = next(n for n in fp16_proto.graph.node if n.name == name)
        assert all(types.get(o) != TensorProto.FLOAT16 for o in node.output), name
    assert [types[o.name] for o in fp16_proto.graph.output] == [TensorProto.FLOAT] * 3
    convs = [n for n in fp16_proto.graph.node if n.op_type == "Conv"]
    assert convs and all(types[c.output[0]] == TensorProto.FLOAT16 for c in convs)
    assert onnx_metadata(fp16_proto)["precision"] == "fp16"


def test_fp16_parity_in_onnxruntime(small_onnx, fp16_proto, tmp_path):
    path = tmp_path / "fp16.onnx"
    path.write_bytes(fp16_proto.SerializeToString())
    reference, deployed = OrtBackend(small_onnx), OrtBackend(path)
    assert deployed.precision == "fp16"
    cases = sample_cases(reference.config, reference.mode, noise=True)
    verdict = verify(deployed, reference, Gates.for_precision("fp16"), cases)
    assert verdict, verdict.failures  # the fp16 gates: cosine, region cosine, scale error, agreement
    assert verdict.frames[1]["source"] == "noise frame"


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here: the missing-TensorRT path cannot be reached")
def test_build_engine_fp16_without_tensorrt(small_onnx, tmp_path):
    engine, fp16 = tmp_path / "model.engine", tmp_path / "model-fp16.onnx"
    result = run_cli("build-engine", small_onnx, "--output", engine, "--fp16", "--onnx-out", fp16)
    assert_clean_error(result, "TensorRT is required", 'pip install "srg-deploy[trt]"')
    assert "[✓] fp16 vs fp32" in result.stdout
    assert fp16.is_file() and onnx_metadata(onnx.load(str(fp16)))["precision"] == "fp16"
    assert not engine.exists() and not list(tmp_path.glob("*.engine*"))
    reference, deployed = OrtBackend(small_onnx), OrtBackend(fp16)
    assert verify(deployed, reference, Gates.for_precision("fp16"), sample_cases(reference.config, reference.mode))


def test_build_engine_argument_errors(small_onnx, tmp_path):
    engine = tmp_path / "m.engine"
    assert_clean_error(
        run_cli("build-engine", small_onnx, "-o", engine, "--onnx-out", tmp_path / "x.onnx"), "needs --fp16"
    )
    assert_clean_error(
        run_cli("build-engine", small_onnx, "-o", engine, "--opt-size", "600by800"), "--opt-size must look like 600x800"
    )
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    assert_clean_error(run_cli("build-engine", tmp_path / "junk.onnx", "-o", engine), "not a readable ONNX model")
    assert not engine.exists()


# ---- TensorRT: these run unchanged on a machine with TensorRT >= 10.9, cuda-python and an NVIDIA GPU ----

SIZES = ["--min-size", "64x64", "--opt-size", "128x160", "--max-size", "256x256"]


@pytest.fixture(scope="module")
def engines(small_onnx, tmp_path_factory):
    folder = tmp_path_factory.mktemp("engines")
    built = {}
    for precision in ("fp32", "fp16"):
        path = folder / f"model-{precision}.engine"
        args = ["build-engine", small_onnx, "-o", path, "--max-boxes", "16", "--max-pairs", "120", *SIZES]
        result = run_cli(*args, *(["--fp16"] if precision == "fp16" else []))
        assert result.returncode == 0, result.stderr
        built[precision] = path
    return built


def boxes_inputs(n_boxes: int) -> dict[str, np.ndarray]:
    """A 120x161 image, up to six boxes (partly outside, zero-size, inverted, whole frame) and all their pairs."""
    boxes = np.array(
        [
            [8, 12, 120, 90],
            [60, 40, 150, 110],
            [-20, -10, 30, 25],
            [70, 50, 70, 50],
            [100, 80, 40, 30],
            [0, 0, 159, 119],
        ],
        np.float32,
    )[:n_boxes]
    return {
        "image": np.random.default_rng(n_boxes).standard_normal((1, 3, 120, 161)).astype(np.float32),
        "boxes": boxes,
        "pairs": np.stack(np.triu_indices(n_boxes, 1), 1).astype(np.int64),
    }


@pytest.mark.trt
@needs_tensorrt
def test_engine_sidecar(engines):
    import tensorrt as trt

    meta = json.loads(sidecar_path(engines["fp16"]).read_text())
    assert meta["format"] == SIDECAR_FORMAT and meta["tensorrt_version"] == trt.__version__
    assert meta["precision"] == "fp16" and meta["mode"] == "boxes" and len(meta["config"]["predicates"]) == 50
    assert meta["plugin"]["id"] == "srg::roi_pool" and meta["plugin"]["implementation"] == "aot"
    assert meta["plugin"]["ptx_isa"] and meta["cuda_driver"]
    assert meta["gpu"]["name"] == torch.cuda.get_device_name() and len(meta["source_onnx_sha256"]) == 64
    assert [i["name"] for i in meta["io"]["inputs"]] == ["image", "boxes", "pairs"]


@pytest.mark.trt
@needs_tensorrt
@pytest.mark.parametrize("n_boxes", [0, 1, 6])
def test_engine_parity_with_eager(engines, small_model, n_boxes):
    from srg_deploy.runtime.trt_backend import TrtBackend

    inputs = boxes_inputs(n_boxes)
    ref = TorchBackend(small_model).run(inputs)
    with TrtBackend(engines["fp32"]) as fp32, TrtBackend(engines["fp16"]) as fp16:
        got32, got16 = fp32.run(inputs), fp16.run(inputs)
    assert gate_failures(inputs, ref, got32, "fp32") == []
    assert gate_failures(inputs, ref, got16, "fp16") == []


RUN_IN_FRESH_PROCESS = """
import sys
import numpy as np
from srg_deploy.runtime.trt_backend import TrtBackend
with TrtBackend(sys.argv[1]) as backend:
    outputs = backend.run(dict(np.load(sys.argv[2])))
np.savez(sys.argv[3], **outputs)
loaded = [m for m in ("srg_deploy.plugins.trt_plugin", "srg_deploy.plugins.aot", "torch", "triton") if m in sys.modules]
assert not loaded, f"the engine pulled in {loaded}"
"""


@pytest.mark.trt
@needs_tensorrt
def test_aot_engine_runs_without_the_plugin_module(engines, small_model, tmp_path):
    """An AOT engine carries its kernel: a fresh process that never imports the plugin module, PyTorch or Triton
    (so nothing registers srg::roi_pool there) loads and runs it, and it still matches eager."""
    assert json.loads(sidecar_path(engines["fp32"]).read_text())["plugin"]["implementation"] == "aot"
    inputs = boxes_inputs(6)
    np.savez(tmp_path / "inputs.npz", **inputs)
    args = [engines["fp32"], tmp_path / "inputs.npz", tmp_path / "outputs.npz"]
    result = subprocess.run(
        [sys.executable, "-c", RUN_IN_FRESH_PROCESS, *map(str, args)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    got = dict(np.load(tmp_path / "outputs.npz"))
    assert gate_failures(inputs, TorchBackend(small_model).run(inputs), got, "fp32") == []


@pytest.mark.trt
@needs_tensorrt
@pytest.mark.parametrize("threshold", [0.0, 1.0], ids=["detections", "none-detected"])
def test_sgdet_engine_matches_onnxruntime_and_eager(threshold, tmp_path):
    """The detector graph: how many RoIs reach the plugin is decided inside the engine (NMS, score threshold), so
    the plugin's input and every output have data-dependent sizes, zero included."""
    from srg_deploy.runtime.trt_backend import TrtBackend

    model = random_model(small_config(score_threshold=threshold, max_detections=8), seed=3)
    with torch.no_grad():  # peaked class scores: an untrained head's near-ties would let rounding pick other boxes
        model.object_head.weight.mul_(20)
    onnx_path, engine = tmp_path / "sgdet.onnx", tmp_path / "sgdet.engine"
    onnx_path.write_bytes(onnx_from_model(model, "sgdet").SerializeToString())
    result = run_cli("build-engine", onnx_path, "-o", engine, *SIZES)
    assert result.returncode == 0, result.stderr
    image = {"image": np.random.default_rng(0).standard_normal((1, 3, 96, 131)).astype(np.float32)}
    with TrtBackend(engine) as trt_backend:
        assert trt_backend.mode == "sgdet"
        got = trt_backend.run(image)
    n = len(got["boxes"])
    assert (n > 0) == (threshold == 0.0) and got["relation_logits"].shape == (n * (n - 1) // 2, 2, 51)
    for reference in (OrtBackend(onnx_path).run(image), TorchBackend(model, mode="sgdet").run(image)):
        assert gate_failures(image, reference, got, "fp32") == []  # identical detections and pairs


@pytest.mark.trt
@needs_tensorrt
def test_engine_errors(engines, tmp_path, write_image, write_json):
    meta = json.loads(sidecar_path(engines["fp32"]).read_text())

    def copy(name: str, data: bytes, **changes) -> object:
        path = tmp_path / name
        path.write_bytes(data)
        sidecar_path(path).write_text(json.dumps({**meta, **changes}))
        return path

    corrupt = copy("corrupt.engine", engines["fp32"].read_bytes()[:1000])
    other = copy("other.engine", engines["fp32"].read_bytes(), tensorrt_version="9.0.0")
    future = copy("future.engine", engines["fp32"].read_bytes(), plugin={**meta["plugin"], "ptx_isa": "99.9"})
    image, boxes = write_image(), write_json("b.json", [[1, 2, 30, 40]])
    assert_clean_error(run_cli("infer", corrupt, "--source", image, "--boxes", boxes), "cannot deserialize")
    assert_clean_error(run_cli("infer", other, "--source", image, "--boxes", boxes), "TensorRT 9.0.0")
    result = run_cli("infer", future, "--source", image, "--boxes", boxes)
    assert_clean_error(result, "RoI pooling kernel is PTX ISA 99.9, but this NVIDIA driver", "update the driver")
    (tmp_path / "lonely.engine").write_bytes(b"x")
    assert_clean_error(run_cli("infer", tmp_path / "lonely.engine", "--source", image, "--boxes", boxes), "no sidecar")


def test_engine_errors_before_tensorrt_is_needed(tmp_path, write_image, write_json):
    """A missing sidecar is reported before TensorRT is touched; without TensorRT, one line says how to get it."""
    image, boxes = write_image(), write_json("b.json", [[1, 2, 30, 40]])
    (tmp_path / "lonely.engine").write_bytes(b"x")
    assert_clean_error(run_cli("infer", tmp_path / "lonely.engine", "--source", image, "--boxes", boxes), "no sidecar")
    (tmp_path / "lonely.engine.json").write_text(json.dumps({"format": "srg-deploy-engine/1"}))
    result = run_cli("infer", tmp_path / "lonely.engine", "--source", image, "--boxes", boxes)
    assert_clean_error(result, "is format srg-deploy-engine/1, this srg-deploy reads srg-deploy-engine/2")
    if not HAS_TENSORRT:
        valid = {
            "format": SIDECAR_FORMAT,
            "mode": "boxes",
            "precision": "fp32",
            "config": {},
            "tensorrt_version": "10.16.1.11",
            "gpu": {"name": "NVIDIA H100", "compute_capability": "9.0"},
            "plugin": {"implementation": "aot", "ptx_isa": "8.7"},
        }
        (tmp_path / "lonely.engine.json").write_text(json.dumps(valid))
        result = run_cli("infer", tmp_path / "lonely.engine", "--source", image, "--boxes", boxes)
        assert_clean_error(result, "TensorRT is required", "srg-deploy[trt]")
