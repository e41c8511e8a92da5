"""export-triton's repositories served by a real tritonserver (2.51.0, from the nvidia-pytriton wheel; python backend
only) on 127.0.0.1: the scene_graph ensemble over HTTP and gRPC gives `infer`'s record, bad requests get error
responses and the server stays up, the plain model repository on the python platform serves the model's outputs,
and docs/triton.md's client examples run against it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT, run_cli
from triton_server import ServerUnavailable, TritonServer

BOXES = [[12.5, 30.25, 200.0, 310.0], [150.0, 40.0, 380.5, 300.0], [0.0, 0.0, 420.0, 330.0], [90, 60, 140, 200]]


@pytest.fixture(scope="module")
def served(small_onnx, tmp_path_factory):
    """One server: `srg` (the plain repository entry, python platform) and the ensemble around `srg_model`."""
    repo = tmp_path_factory.mktemp("triton") / "models"
    for args in (("--name", "srg"), ("--name", "srg_model", "--ensemble")):
        result = run_cli("export-triton", small_onnx, "--repository", repo, "--model-platform", "python", *args)
        assert result.returncode == 0, result.stderr
    try:
        with TritonServer(repo) as server:
            yield server
    except ServerUnavailable as e:
        pytest.skip(f"no tritonserver here: {e}")


def infer_record(model: Path, image: Path, boxes: list, tmp_path: Path) -> dict:
    """What `srg-deploy infer` writes for the image, the reference every served record must equal."""
    boxes_file = tmp_path / "boxes.json"
    boxes_file.write_text(json.dumps(boxes))
    out = tmp_path / "infer.jsonl"
    result = run_cli("infer", model, "--source", image, "--boxes", boxes_file, "--json", out)
    assert result.returncode == 0, result.stderr
    return json.loads(out.read_text())


def comparable(record: dict) -> dict:
    """Everything but timings and the file name (the server never sees one)."""
    return {k: v for k, v in record.items() if k not in ("latency_ms", "source")}


def ensemble_inputs(module, image: bytes, boxes) -> list:
    data = np.frombuffer(image, np.uint8)[None]
    boxes = np.asarray(boxes, np.float64)[None]
    inputs = [
        module.InferInput("image", list(data.shape), "UINT8"),
        module.InferInput("boxes", list(boxes.shape), "FP64"),
    ]
    inputs[0].set_data_from_numpy(data)
    inputs[1].set_data_from_numpy(boxes)
    return inputs


def test_ensemble_gives_infers_record_over_http_and_grpc(served, small_onnx, write_image, tmp_path):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    image = write_image("street.jpg", height=333, width=451, seed=5)
    expected = infer_record(small_onnx, image, BOXES, tmp_path)
    assert len(expected["objects"]) == 4 and len(expected["relations"]) == 12
    records = []
    for module, url in ((httpclient, served.http), (grpcclient, served.grpc)):
        client = module.InferenceServerClient(url)
        result = client.infer("scene_graph", ensemble_inputs(module, image.read_bytes(), BOXES))
        scene_graph = result.as_numpy("scene_graph")
        assert scene_graph.shape == (1, 1)
        records.append(json.loads(scene_graph[0, 0]))
    for record in records:
        assert comparable(record) == comparable(expected)
        assert record["source"] == "" and record["latency_ms"] == {}


def test_bad_requests_get_an_error_and_the_server_stays_up(served, write_image):
    import tritonclient.http as httpclient
    from tritonclient.utils import InferenceServerException

    client = httpclient.InferenceServerClient(served.http)
    good = write_image("ok.png", height=200, width=260, seed=8).read_bytes()
    cases = [
        (
            ensemble_inputs(httpclient, b"\x89PNG\r\n\x1a\n not really a png", BOXES),
            "cannot decode the request's image",
        ),
        (ensemble_inputs(httpclient, good[: len(good) // 3], BOXES), "cannot decode the request's image"),
        (ensemble_inputs(httpclient, good, [[0, 0, float("nan"), 10]]), "box 0 has a non-finite coordinate"),
        (ensemble_inputs(httpclient, good, [[0, 0, 10]]), "boxes"),  # [1,1,3]: refused by Triton's shape check
    ]
    for inputs, message in cases:
        with pytest.raises(InferenceServerException, match=message.replace("(", r"\(")):
            client.infer("scene_graph", inputs)
        assert served.alive()
    result = client.infer("scene_graph", ensemble_inputs(httpclient, good, BOXES[:2]))
    assert len(json.loads(result.as_numpy("scene_graph")[0, 0])["objects"]) == 2


def test_plain_repository_on_the_python_platform_serves_the_models_outputs(served, small_onnx, write_image):
    """The entry without --ensemble: the model's own inputs and outputs, as ONNX Runtime gives them here."""
    import onnxruntime as ort
    import tritonclient.http as httpclient

    from srg_deploy.inputs import read_image
    from srg_deploy.runtime.loader import open_backend
    from srg_deploy.runtime.predictor import prepare

    with open_backend(small_onnx) as backend:
        prepared = prepare(backend.config, "boxes", read_image(write_image("p.png", 150, 210, 2)), np.array(BOXES[:3]))
    inputs = []
    for name, array in prepared.inputs.items():
        tensor = httpclient.InferInput(name, list(array.shape), "FP32" if array.dtype == np.float32 else "INT64")
        tensor.set_data_from_numpy(array)
        inputs.append(tensor)
    result = httpclient.InferenceServerClient(served.http).infer("srg", inputs)
    session = ort.InferenceSession(str(small_onnx), providers=["CPUExecutionProvider"])
    expected = dict(zip(("features", "object_logits", "relation_logits"), session.run(None, prepared.inputs)))
    for name, array in expected.items():
        np.testing.assert_allclose(result.as_numpy(name), array, rtol=1e-5, atol=1e-4, err_msg=name)


def code_block(path: Path, marker: str) -> str:
    """The first ```python block after `marker` in a Markdown file."""
    text = path.read_text()
    start = text.index("```python\n", text.index(marker)) + len("```python\n")
    return text[start : text.index("```\n", start)]


def test_docs_ten_line_client_gives_infers_record(served, small_onnx, write_image, tmp_path, capsys):
    """docs/triton.md's ensemble client as written there, with only the image and server address filled in."""
    image = write_image("photo.jpg", height=360, width=470, seed=12)
    code = code_block(ROOT / "docs" / "triton.md", "## The client in ten lines")
    assert (
        len([line for line in code.splitlines() if line.strip()]) <= 14
        and '"photo.jpg"' in code
        and '"localhost:8000"' in code
    )
    code = code.replace('"photo.jpg"', repr(str(image))).replace('"localhost:8000"', repr(served.http))
    namespace: dict = {}
    exec(compile(code, "docs/triton.md", "exec"), namespace)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = infer_record(small_onnx, image, namespace["boxes"][0].tolist(), tmp_path)
    assert len(printed["objects"]) == 3
    assert comparable(printed) == comparable(expected)


def test_readme_client_example_gives_infers_record(served, small_onnx, write_image, tmp_path, capsys):
    """docs/triton.md's plain-entry client as written there, with the model path, image and address filled in."""
    image = write_image("photo.png", height=336, width=448)
    code = code_block(ROOT / "docs" / "triton.md", "**Client example.**")
    for placeholder in ('"model.onnx"', '"photo.jpg"', '"localhost:8001"'):
        assert code.count(placeholder) >= 1, placeholder
    code = code.replace('"model.onnx"', repr(str(small_onnx))).replace('"photo.jpg"', repr(str(image)))
    namespace: dict = {}
    exec(compile(code.replace('"localhost:8001"', repr(served.grpc)), "docs/triton.md", "exec"), namespace)
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    expected = infer_record(small_onnx, image, namespace["boxes"].tolist(), tmp_path)
    assert len(printed["objects"]) == 3 and len(printed["relations"]) == 6
    assert comparable(printed) == comparable(expected)


def test_sgdet_ensemble_detects_and_gives_infers_record(write_image, tmp_path):
    """An sgdet model: the ensemble takes the image alone; detections come back in frame pixels, as from `infer`."""
    import torch
    import tritonclient.grpc as grpcclient
    from conftest import small_config

    from srg_deploy.checkpoint import random_model
    from srg_deploy.export.onnx_export import onnx_from_model

    model = random_model(small_config(score_threshold=0.0, max_detections=6), seed=3)
    with torch.no_grad():  # peaked class scores, so near-ties cannot reorder detections between runtimes
        model.object_head.weight.mul_(20)
    onnx_path = tmp_path / "sgdet.onnx"
    onnx_path.write_bytes(onnx_from_model(model, "sgdet").SerializeToString())
    repo = tmp_path / "models"
    result = run_cli("export-triton", onnx_path, "--repository", repo, "--ensemble", "--model-platform", "python")
    assert result.returncode == 0, result.stderr
    image = write_image("scene.png", height=190, width=250, seed=9)
    out = tmp_path / "infer.jsonl"
    assert run_cli("infer", onnx_path, "--source", image, "--json", out).returncode == 0
    expected = json.loads(out.read_text())
    assert expected["objects"] and expected["relations"]
    try:
        with TritonServer(repo) as server:
            data = np.frombuffer(image.read_bytes(), np.uint8)[None]
            tensor = grpcclient.InferInput("image", list(data.shape), "UINT8")
            tensor.set_data_from_numpy(data)
            response = grpcclient.InferenceServerClient(server.grpc).infer("scene_graph", [tensor])
    except ServerUnavailable as e:
        pytest.skip(f"no tritonserver here: {e}")
    record = json.loads(response.as_numpy("scene_graph")[0, 0])
    assert comparable(record) == comparable(expected)
