"""`srg-deploy export-triton`: the real CLI writes a repository whose config Triton's own schema (tritonclient's
model_config_pb2, parsed from the text as the server does) accepts, with the model's I/O read back independently."""

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
from srg_deploy.runtime.tensorrt_env import SIDECAR_FORMAT

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
    engine = tmp_path / "model_fp16.engine"
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


class StandInServer:
    """Triton's gRPC inference protocol (KServe v2 ModelInfer) on loopback, for docs/triton.md's client example. Each
    request is checked against the repository's config.pbtxt (names, datatypes, ranks, fixed dims) before ONNX
    Runtime runs the repository's model file; this is not Triton, only its wire protocol and its config contract."""

    def __init__(self, repository: Path, name: str) -> None:
        import grpc
        import onnxruntime as ort
        from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

        config = parse_config(repository / name / "config.pbtxt")
        session = ort.InferenceSession(str(repository / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
        wire = {"TYPE_FP32": ("FP32", np.float32), "TYPE_INT64": ("INT64", np.int64)}
        self.requests = 0
        server_self = self

        class Servicer(service_pb2_grpc.GRPCInferenceServiceServicer):
            def ModelInfer(self, request, context):
                assert request.model_name == name
                declared = {t.name: t for t in config.input}
                feeds = {}
                for tensor, raw in zip(request.inputs, request.raw_input_contents):
                    spec = declared[tensor.name]
                    datatype, dtype = wire[model_config_pb2.DataType.Name(spec.data_type)]
                    assert tensor.datatype == datatype, (tensor.name, tensor.datatype)
                    assert len(tensor.shape) == len(spec.dims), (tensor.name, list(tensor.shape))
                    assert all(d == -1 or d == s for d, s in zip(spec.dims, tensor.shape)), (tensor.name, tensor.shape)
                    feeds[tensor.name] = np.frombuffer(raw, dtype).reshape(tuple(tensor.shape))
                assert sorted(feeds) == sorted(declared)
                outputs = session.run([t.name for t in config.output], feeds)
                response = service_pb2.ModelInferResponse(model_name=name, model_version="1", id=request.id)
                for spec, array in zip(config.output, outputs):
                    out = response.outputs.add()
                    out.name, out.datatype = spec.name, wire[model_config_pb2.DataType.Name(spec.data_type)][0]
                    out.shape.extend(array.shape)
                    response.raw_output_contents.append(np.ascontiguousarray(array).tobytes())
                server_self.requests += 1
                return response

        from concurrent.futures import ThreadPoolExecutor

        self.server = grpc.server(ThreadPoolExecutor(max_workers=2))
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(Servicer(), self.server)
        self.address = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"

    def __enter__(self) -> StandInServer:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop(grace=None)


def readme_client_example() -> str:
    text = (ROOT / "docs" / "triton.md").read_text()
    start = text.index("**Client example.**")
    return text[
        text.index("```python\n", start) + len("```python\n") : text.index("```\n", text.index("```python\n", start))
    ]


def test_readme_client_example_against_a_stand_in_server_gives_infers_record(small_onnx, write_image, tmp_path, capsys):
    """docs/triton.md's client code, as written there, with only the model path, image and server address filled in."""
    pytest.importorskip("tritonclient.grpc", reason="tritonclient[grpc] is not installed (the client example uses it)")
    repo = tmp_path / "models"
    assert run_cli("export-triton", small_onnx, "--repository", repo, "--name", "srg").returncode == 0
    image = write_image("photo.png", height=336, width=448)
    code = readme_client_example()
    for placeholder in ('"model.onnx"', '"photo.jpg"', '"localhost:8001"'):
        assert code.count(placeholder) >= 1, placeholder
    with StandInServer(repo, "srg") as server:
        code = code.replace('"model.onnx"', repr(str(small_onnx))).replace('"photo.jpg"', repr(str(image)))
        namespace: dict = {}
        exec(compile(code.replace('"localhost:8001"', repr(server.address)), "docs/triton.md", "exec"), namespace)
        assert server.requests == 1
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps(namespace["boxes"].tolist()))
    assert (
        run_cli("infer", small_onnx, "--source", image, "--boxes", boxes, "--json", tmp_path / "i.jsonl").returncode
        == 0
    )
    expected = json.loads((tmp_path / "i.jsonl").read_text())
    assert len(printed["objects"]) == 3 and len(printed["relations"]) == 6
    assert {k: v for k, v in printed.items() if k != "latency_ms"} == {
        k: v for k, v in expected.items() if k != "latency_ms"
    }
