"""`srg-deploy export-triton`: the real CLI writes a repository whose config Triton's own schema (tritonclient's
model_config_pb2, parsed from the text as the server does) accepts, with the model's I/O read back independently.
tests/test_triton_server.py serves these repositories with a real tritonserver."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, assert_clean_error, run_cli
from onnx import helper

from srg_deploy.config import SRGConfig
from srg_deploy.tensorrt_env import SIDECAR_FORMAT

SIDECAR_IO = {  # what build-engine writes (export/engine.py io_spec) for an fp16 boxes-mode engine
    "inputs": [
        {"name": "image", "shape": [1, 3, "height", "width"], "dtype": "float32"},
        {"name": "boxes", "shape": ["num_boxes", 4], "dtype": "float32"},
        {"name": "pairs", "shape": ["num_pairs", 2], "dtype": "int64"},
    ],
    "outputs": [
        {"name": "features", "shape": ["num_boxes", 2048], "dtype": "float16"},
        {"name": "object_logits", "shape": ["num_boxes", 151], "dtype": "float32"},
        {"name": "relation_logits", "shape": ["num_pairs", 2, 51], "dtype": "float32"},
    ],
}


def stand_in_engine(folder: Path) -> tuple[Path, dict]:
    """A stand-in engine file and the sidecar build-engine would write for an fp16 boxes-mode engine."""
    engine = folder / "model_fp16.engine"
    engine.write_bytes(np.random.default_rng(0).bytes(4096))
    sidecar = {
        "format": SIDECAR_FORMAT,
        "mode": "boxes",
        "precision": "fp16",
        "config": json.loads(json.dumps(SRGConfig().to_dict())),
        "io": SIDECAR_IO,
        "tensorrt_version": "11.4.0",
        "gpu": {"name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"},
        "plugin": {"id": "srg::roi_pool", "implementation": "aot", "ptx_isa": "8.7"},
    }
    Path(str(engine) + ".json").write_text(json.dumps(sidecar))
    return engine, sidecar


def parse_config(path: Path):
    """config.pbtxt through Triton's ModelConfig schema: unknown fields, bad enums or syntax raise."""
    model_config_pb2 = pytest.importorskip(
        "tritonclient.grpc.model_config_pb2", reason="tritonclient[grpc] is not installed (Triton's config schema)"
    )
    from google.protobuf import text_format

    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def io_of(config, field: str) -> list[tuple[str, str, list[int]]]:
    from tritonclient.grpc import model_config_pb2

    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in getattr(config, field)]


def ort_io(path: Path) -> tuple[list, list]:
    """The model's inputs and outputs as ONNX Runtime reads them (independently of the code under test)."""
    import onnxruntime as ort

    types = {"tensor(float)": "TYPE_FP32", "tensor(int64)": "TYPE_INT64", "tensor(float16)": "TYPE_FP16"}
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])

    def describe(args) -> list:
        return [(a.name, types[a.type], [d if isinstance(d, int) else -1 for d in a.shape]) for a in args]

    return describe(session.get_inputs()), describe(session.get_outputs())


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def hidden(folder: Path) -> list[str]:
    return [p.name for p in folder.rglob(".*")] if folder.exists() else []


def test_onnx_repository_is_valid_triton_config_with_the_models_io(small_onnx, tmp_path):
    repo = tmp_path / "models"
    result = run_cli("export-triton", small_onnx, "--repository", repo, "--name", "srg", "--instances", "2")
    assert result.returncode == 0, result.stderr
    assert f"serve it: tritonserver --model-repository {repo}" in result.stderr
    config = parse_config(repo / "srg" / "config.pbtxt")
    assert (config.name, config.platform, config.max_batch_size) == ("srg", "onnxruntime_onnx", 0)
    assert config.default_model_filename == "model.onnx"
    assert [(g.count, g.kind) for g in config.instance_group] == [(2, config.instance_group[0].KIND_CPU)]
    inputs, outputs = ort_io(small_onnx)
    assert io_of(config, "input") == inputs
    assert io_of(config, "output") == outputs
    assert [name for name, _, _ in inputs] == ["image", "boxes", "pairs"]
    assert io_of(config, "input")[0] == ("image", "TYPE_FP32", [1, 3, -1, -1])
    assert io_of(config, "output")[2] == ("relation_logits", "TYPE_FP32", [-1, 2, 51])
    assert sha256(repo / "srg" / "1" / "model.onnx") == sha256(small_onnx)
    assert sorted(p.name for p in repo.iterdir()) == ["srg"] and hidden(repo) == []

    second = run_cli("export-triton", small_onnx, "--repository", repo, "--name", "srg_gpu", "--kind", "gpu")
    assert second.returncode == 0, second.stderr
    gpu = parse_config(repo / "srg_gpu" / "config.pbtxt")
    assert [(g.count, g.kind) for g in gpu.instance_group] == [(1, gpu.instance_group[0].KIND_GPU)]
    assert sorted(p.name for p in repo.iterdir()) == ["srg", "srg_gpu"]

    again = run_cli("export-triton", small_onnx, "--repository", repo, "--name", "srg")
    assert_clean_error(again, "already exists; choose another --name")


def test_engine_repository_from_its_sidecar(tmp_path):
    """No TensorRT here: a stand-in engine file and the sidecar build-engine would write. The plan is copied as is,
    the sidecar beside it, and the config states the TensorRT version and GPU the server needs."""
    engine, sidecar = stand_in_engine(tmp_path)
    repo = tmp_path / "models"
    result = run_cli("export-triton", engine, "--repository", repo, "--instances", "3")
    assert result.returncode == 0, result.stderr
    folder = repo / "model_fp16"
    config = parse_config(folder / "config.pbtxt")
    assert (config.platform, config.max_batch_size, config.default_model_filename) == ("tensorrt_plan", 0, "model.plan")
    assert [(g.count, g.kind) for g in config.instance_group] == [(3, config.instance_group[0].KIND_GPU)]
    assert io_of(config, "input") == [
        ("image", "TYPE_FP32", [1, 3, -1, -1]),
        ("boxes", "TYPE_FP32", [-1, 4]),
        ("pairs", "TYPE_INT64", [-1, 2]),
    ]
    assert io_of(config, "output") == [
        ("features", "TYPE_FP16", [-1, 2048]),
        ("object_logits", "TYPE_FP32", [-1, 151]),
        ("relation_logits", "TYPE_FP32", [-1, 2, 51]),
    ]
    assert sha256(folder / "1" / "model.plan") == sha256(engine)
    assert json.loads((folder / "1" / "model.plan.json").read_text()) == sidecar
    header = (folder / "config.pbtxt").read_text()
    assert "must run TensorRT 11.4.0 exactly" in header and "compute capability 9.0" in header
    assert "must run TensorRT 11.4.0 exactly" in result.stderr

    assert_clean_error(
        run_cli("export-triton", engine, "--repository", tmp_path / "cpu", "--kind", "cpu"), "runs on a GPU only"
    )
    Path(str(engine) + ".json").unlink()
    assert_clean_error(run_cli("export-triton", engine, "--repository", tmp_path / "r2"), "has no sidecar")
    assert not (tmp_path / "cpu").exists() and not (tmp_path / "r2").exists()


def test_refusals_are_one_line_and_write_nothing(small_onnx, small_checkpoint, tmp_path):
    foreign = tmp_path / "foreign.onnx"
    identity = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1])],
    )
    onnx.save(helper.make_model(identity), str(foreign))
    (tmp_path / "weights.pt").write_bytes(b"\0" * 16)
    (tmp_path / "broken.onnx").write_bytes(b"not a protobuf at all")
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "todo.txt").write_text("")
    (tmp_path / "file").write_text("")
    repo = tmp_path / "repo"
    cases = [
        ((foreign, "--repository", repo), "was not exported by srg-deploy"),
        ((small_checkpoint, "--repository", repo), "is a checkpoint folder"),
        ((tmp_path / "weights.pt", "--repository", repo), "expected an .onnx file"),
        ((tmp_path / "broken.onnx", "--repository", repo), "is not a readable ONNX model"),
        ((tmp_path / "missing.onnx", "--repository", repo), "does not exist"),
        ((small_onnx, "--repository", notes), "is not a Triton model repository (todo.txt is not a model folder)"),
        ((small_onnx, "--repository", tmp_path / "file"), "is a file"),
        ((small_onnx, "--repository", repo, "--name", "../escape"), "is not a usable model name"),
        ((small_onnx, "--repository", repo, "--kind", "tpu"), "--kind must be cpu or gpu"),
    ]
    for args, message in cases:
        assert_clean_error(run_cli("export-triton", *args), message)
    assert not repo.exists()
    assert sorted(p.name for p in notes.iterdir()) == ["todo.txt"]


def test_the_repository_writer_imports_no_torch():
    """A serving machine builds its repository with the runtime install (DESIGN.md section 7)."""
    code = "import sys, srg_deploy.export.triton_repo; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT).returncode == 0


def dataflow_problems(configs: dict) -> list[str]:
    """The ensemble's graph checked against every step's own config, as Triton checks it when it loads: each step
    input is mapped, fed by an ensemble input or an earlier step's output of the same data type and of a compatible
    shape (a batching model's dims behind its request axis), and the ensemble's output is produced."""
    from tritonclient.grpc import model_config_pb2

    def full(config, tensor) -> list[int]:
        return ([-1] if config.max_batch_size > 0 else []) + list(tensor.dims)

    ensemble = configs["scene_graph"]
    available = {t.name: (t.data_type, full(ensemble, t)) for t in ensemble.input}
    problems = []
    for step in ensemble.ensemble_scheduling.step:
        config = configs[step.model_name]
        inputs = {t.name: t for t in config.input}
        if set(step.input_map) != set(inputs):
            problems.append(f"{step.model_name}: maps {sorted(step.input_map)}, takes {sorted(inputs)}")
        for key, source in step.input_map.items():
            if source not in available:
                problems.append(f"{step.model_name}.{key} <- {source}: nothing produced it")
                continue
            dtype, dims = available[source]
            want = full(config, inputs[key])
            compatible = len(dims) == len(want) and all(a == b or -1 in (a, b) for a, b in zip(dims, want))
            if dtype != inputs[key].data_type or not compatible:
                problems.append(f"{step.model_name}.{key} <- {source}: {model_config_pb2.DataType.Name(dtype)} {dims}")
        outputs = {t.name: t for t in config.output}
        for key, target in step.output_map.items():
            available[target] = (outputs[key].data_type, full(config, outputs[key]))
    problems += [f"ensemble output {t.name} is never produced" for t in ensemble.output if t.name not in available]
    return problems


@pytest.mark.parametrize("platform", ["onnxruntime", "openvino", "python"])
def test_ensemble_repository_configs_are_valid_and_connected(small_onnx, tmp_path, platform):
    repo = tmp_path / "models"
    args = ("--repository", repo, "--name", "srg", "--ensemble", "--model-platform", platform, "--dynamic-batching")
    result = run_cli("export-triton", small_onnx, *args)
    assert result.returncode == 0, result.stderr
    configs = {p.parent.name: parse_config(p) for p in repo.glob("*/config.pbtxt")}
    assert sorted(configs) == ["postprocess", "preprocess", "scene_graph", "srg"] and hidden(repo) == []
    assert dataflow_problems(configs) == []
    step = configs["srg"]
    served_by = {"onnxruntime": ("onnxruntime_onnx", ""), "openvino": ("", "openvino"), "python": ("", "python")}
    assert (step.platform, step.backend, step.max_batch_size) == (*served_by[platform], 0)
    inputs, outputs = ort_io(small_onnx)
    for declared, model in zip([*step.input, *step.output], [*inputs, *outputs]):
        # the model sees its own shape (reshape); the ensemble passes it with a leading request axis of 1
        shape = list(declared.reshape.shape) if declared.HasField("reshape") else list(declared.dims)
        assert (declared.name, shape) == (model[0], model[2])
        assert list(declared.dims) == (model[2] if model[2][0] == 1 else [1, *model[2]])
    for name in ("preprocess", "postprocess"):
        config = configs[name]
        assert (config.backend, config.max_batch_size, config.HasField("dynamic_batching")) == ("python", 8, True)
        assert (repo / name / "1" / "model.py").read_text().count("import") == 1  # srg-deploy's own class
    assert [t.name for t in configs["scene_graph"].input] == ["image", "boxes"]
    files = sorted(p.name for p in (repo / "srg" / "1").iterdir())
    assert files == {"python": ["model.onnx", "model.py", "srg_deploy.json"]}.get(platform, ["model.onnx"])
    if platform == "openvino":  # the model-local function inlined, nothing else changed
        served = onnx.load(str(repo / "srg" / "1" / "model.onnx"))
        original = onnx.load(str(small_onnx))
        assert not served.functions and len(original.functions) == 1
        assert "MaxRoiPool" in {n.op_type for n in served.graph.node}
        assert [n.op_type for n in served.graph.node if n.domain == "srg"] == []
    else:
        assert sha256(repo / "srg" / "1" / "model.onnx") == sha256(small_onnx)


def test_openvino_platform_model_runs_in_openvino_like_onnxruntime(small_onnx, tmp_path):
    """Triton's OpenVINO backend is not here; OpenVINO itself reads the file that backend would (f32 asked for)."""
    ov = pytest.importorskip("openvino", reason="openvino is not installed")
    import onnxruntime as ort

    repo = tmp_path / "models"
    assert run_cli("export-triton", small_onnx, "--repository", repo, "--model-platform", "openvino").returncode == 0
    rng = np.random.default_rng(4)
    feeds = {
        "image": rng.standard_normal((1, 3, 176, 224)).astype(np.float32),
        "boxes": np.array([[5, 8, 120, 150], [60, 20, 220, 170], [0, 0, 223, 175]], np.float32),
        "pairs": np.array([[0, 1], [0, 2], [1, 2]], np.int64),
    }
    compiled = ov.Core().compile_model(
        str(repo / "model" / "1" / "model.onnx"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"}
    )
    got = compiled(feeds)
    expected = ort.InferenceSession(str(small_onnx), providers=["CPUExecutionProvider"]).run(None, feeds)
    for k, array in enumerate(expected):
        np.testing.assert_allclose(got[compiled.output(k)], array, rtol=1e-3, atol=1e-3)


def test_engine_ensemble_gives_the_plan_a_request_axis(tmp_path):
    """The tensorrt platform from a stand-in engine and its sidecar (no TensorRT here): the plan step reshapes."""
    engine, _ = stand_in_engine(tmp_path)
    repo = tmp_path / "models"
    result = run_cli("export-triton", engine, "--repository", repo, "--ensemble", "--name", "srg_trt")
    assert result.returncode == 0, result.stderr
    configs = {p.parent.name: parse_config(p) for p in repo.glob("*/config.pbtxt")}
    assert dataflow_problems(configs) == []
    step = configs["srg_trt"]
    assert (step.platform, step.default_model_filename) == ("tensorrt_plan", "model.plan")
    assert [(t.name, list(t.dims), list(t.reshape.shape)) for t in step.input[1:]] == [
        ("boxes", [1, -1, 4], [-1, 4]),
        ("pairs", [1, -1, 2], [-1, 2]),
    ]
    assert io_of(configs["postprocess"], "input")[0] == ("object_logits", "TYPE_FP32", [-1, 151])
    assert not configs["preprocess"].HasField("dynamic_batching")  # off unless asked for


def test_platform_and_ensemble_refusals(small_onnx, tmp_path):
    engine, _ = stand_in_engine(tmp_path)
    repo = tmp_path / "repo"
    cases = [
        ((small_onnx, "--model-platform", "tensorrt"), "serves a TensorRT engine: `srg-deploy build-engine"),
        ((small_onnx, "--model-platform", "tflite"), "--model-platform must be one of onnxruntime, tensorrt"),
        ((engine, "--model-platform", "openvino"), "--model-platform openvino serves an .onnx file"),
        ((small_onnx, "--model-platform", "openvino", "--kind", "gpu"), "OpenVINO backend runs on Intel CPUs"),
        ((small_onnx, "--dynamic-batching"), "--dynamic-batching applies to the ensemble's python steps"),
    ]
    for args, message in cases:
        assert_clean_error(run_cli("export-triton", *args, "--repository", repo), message)
    assert not repo.exists()
    (repo / "preprocess" / "1").mkdir(parents=True)
    clash = run_cli("export-triton", small_onnx, "--repository", repo, "--ensemble")
    assert_clean_error(clash, "preprocess already exists")
    assert sorted(p.name for p in repo.iterdir()) == ["preprocess"]  # nothing of the ensemble written
