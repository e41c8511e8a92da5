"""The backend contract (runtime/backend.py), one parametrised test run against every backend: eager torch, ONNX
Runtime, OpenVINO (fp32 and bf16 on the CPU) and, where TensorRT and a GPU exist, TensorRT. A backend that drifts from the contract fails here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from conftest import installed, needs_tensorrt, run_cli

from srg_deploy.contract import OUTPUTS, input_specs
from srg_deploy.errors import SRGError
from srg_deploy.runtime.loader import open_backend


def cpu_has_bf16() -> bool:
    if not installed("openvino"):
        return False
    import openvino

    return "BF16" in [str(c) for c in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]


needs_bf16 = pytest.mark.skipif(not cpu_has_bf16(), reason="needs OpenVINO and a CPU with bf16 (AVX512-BF16 or AMX)")
BACKENDS = [
    "torch",
    "onnxruntime",
    "openvino",
    pytest.param("openvino:bf16", marks=needs_bf16),
    pytest.param(
        "tensorrt",
        marks=[pytest.mark.trt, needs_tensorrt],
    ),
]


@pytest.fixture(scope="module")
def engine(small_onnx, tmp_path_factory):
    path = tmp_path_factory.mktemp("contract") / "model.engine"
    result = run_cli("build-engine", small_onnx, "-o", path, "--max-boxes", "8", "--max-size", "256x256")
    assert result.returncode == 0, result.stderr
    return path


@pytest.fixture(params=BACKENDS)
def backend(request, small_checkpoint, small_onnx):
    path = {"torch": small_checkpoint, "onnxruntime": small_onnx}.get(request.param)
    if request.param == "tensorrt":
        path = request.getfixturevalue("engine")
    if request.param.startswith("openvino"):
        path, precision = small_onnx, request.param.partition(":")[2] or "fp32"
        opened = open_backend(path, "openvino", precision=precision)
        assert opened.precision == precision
        yield opened
        opened.close()
        return
    opened = open_backend(path, request.param, mode="boxes")
    yield opened
    opened.close()


def inputs(n_boxes: int, n_pairs: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    corner = rng.uniform(0, 80, (n_boxes, 2))
    pairs = np.stack(np.triu_indices(n_boxes, 1), axis=1).astype(np.int64)
    return {
        "image": rng.standard_normal((1, 3, 97, 131)).astype(np.float32),
        "boxes": np.concatenate([corner, corner + rng.uniform(4, 40, (n_boxes, 2))], axis=1).astype(np.float32),
        "pairs": pairs[: len(pairs) if n_pairs is None else n_pairs],
    }


@pytest.mark.parametrize("n_boxes, n_pairs", [(0, 0), (1, 0), (3, 0), (4, None)], ids=["N0", "N1", "P0", "N4"])
def test_outputs_follow_the_contract(backend, n_boxes, n_pairs):
    x = inputs(n_boxes, n_pairs)
    out = backend.run(x)
    assert tuple(out) == tuple(s.name for s in OUTPUTS["boxes"])
    n, p = n_boxes, len(x["pairs"])
    objects, predicates = backend.config.num_object_classes, backend.config.num_predicate_classes
    shapes = {"features": (n, 2048), "object_logits": (n, objects), "relation_logits": (p, 2, predicates)}
    for spec in OUTPUTS["boxes"]:
        assert out[spec.name].shape == shapes[spec.name] and out[spec.name].dtype == spec.dtype, spec.name
        assert np.isfinite(out[spec.name]).all()


def test_declared_inputs_are_the_contract(backend):
    assert {n: (s.dtype, s.rank) for n, s in backend.inputs.items()} == {
        n: (s.dtype, s.rank) for n, s in input_specs("boxes").items()
    }


@pytest.mark.parametrize(
    "change, message",
    [
        (
            lambda x: x | {"boxes": x["boxes"].astype(np.float64)},
            "input 'boxes' is float64; the model declares float32",
        ),
        (lambda x: x | {"pairs": x["pairs"].astype(np.int32)}, "input 'pairs' is int32; the model declares int64"),
        (lambda x: x | {"image": x["image"][0]}, "input 'image' has shape [3, 97, 131]; expected [1,3,H,W]"),
        (lambda x: x | {"boxes": x["boxes"][:, :3]}, "input 'boxes' has shape [4, 3]; expected [N,4]"),
        (lambda x: x | {"pairs": x["pairs"] + 3}, "pairs index boxes 3..6 but there are 4 boxes"),
        (lambda x: x | {"pairs": x["pairs"] - 1}, "pairs index boxes -1..2 but there are 4 boxes"),
        (lambda x: {k: v for k, v in x.items() if k != "pairs"}, "inputs are ['boxes', 'image']; the model takes"),
        (lambda x: x | {"boxes": x["boxes"].tolist()}, "input 'boxes' is a list; expected a numpy array"),
    ],
    ids=["float64-boxes", "int32-pairs", "rank", "box-width", "pair-high", "pair-negative", "missing", "list"],
)
def test_inputs_are_refused_not_cast(backend, change, message):
    with pytest.raises(SRGError) as error:
        backend.run(change(inputs(4)))
    assert message in str(error.value) and str(error.value).startswith(backend.name)


def test_use_after_close_is_refused(backend):
    backend.run(inputs(2))
    backend.close()
    backend.close()  # closing twice is harmless
    with pytest.raises(RuntimeError, match="used after close"):
        backend.run(inputs(2))


def test_backends_agree_on_the_same_inputs(small_checkpoint, small_onnx):
    """The contract is also a promise of equal numbers: torch and ONNX Runtime on the same awkward inputs."""
    x = inputs(5)
    x["boxes"][0] = [-20, -10, 30, 25]  # partly outside the image
    x["boxes"][1] = [40, 40, 40, 40]  # zero size
    x["boxes"][2] = [90, 80, 40, 30]  # inverted
    with open_backend(small_checkpoint) as eager, open_backend(small_onnx) as ort:
        a, b = eager.run(x), ort.run(x)
    for name in a:
        scale = np.abs(a[name]).max()
        assert np.abs(a[name] - b[name]).max() <= 1e-4 * scale, name


def test_a_model_declaring_other_inputs_is_refused(small_onnx, tmp_path):
    """A file whose graph inputs differ from the contract (`boxes` as float64, an extra input) is refused when it is
    opened, with each difference named."""
    import onnx
    from onnx import TensorProto, helper

    from srg_deploy.contract import METADATA_PREFIX

    tensor = helper.make_tensor_value_info
    graph = helper.make_graph(
        [helper.make_node("Identity", ["image"], ["features"])],
        "other",
        [
            tensor("image", TensorProto.FLOAT, [1, 3, "h", "w"]),
            tensor("boxes", TensorProto.DOUBLE, ["n", 4]),
            tensor("pairs", TensorProto.INT64, ["p", 2]),
            tensor("scale", TensorProto.FLOAT, [1]),
        ],
        [tensor("features", TensorProto.FLOAT, [1, 3, "h", "w"])],
    )
    proto = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    config = next(p.value for p in onnx.load(str(small_onnx)).metadata_props if p.key == METADATA_PREFIX + "config")
    helper.set_model_props(proto, {METADATA_PREFIX + "config": config, METADATA_PREFIX + "mode": "boxes"})
    path = tmp_path / "other.onnx"
    onnx.save(proto, str(path))
    with pytest.raises(SRGError) as error:
        open_backend(path)
    text = str(error.value)
    assert text.startswith("onnxruntime: the model's inputs do not follow the contract")
    assert "boxes: declares boxes float64 rank 2, the boxes-mode contract is boxes float32 rank 2" in text
    assert "unexpected input 'scale'" in text


def test_metadata_mode_and_config_come_from_the_file(small_onnx):
    with open_backend(small_onnx) as backend:
        assert backend.mode == "boxes" and backend.precision == "fp32" and backend.max_pairs is None
        assert json.dumps(backend.config.to_dict())  # a full SRGConfig round-tripped through the file's metadata
