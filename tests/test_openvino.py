"""The OpenVINO backend (runtime/openvino_backend.py): RoI pooling bit-identical to torchvision at fp32 and bf16 with
box coordinates kept fp32, fp32 records equal to ONNX Runtime's, bf16 verify against the bf16 gates (a faithful run
passes, a conv scaled by 1.05 fails), eval of three backends/precisions side by side, bench --json, and one-line
refusals (unknown or absent device, a precision the device cannot run, a file OpenVINO cannot read)."""

from __future__ import annotations

import copy
import json

import numpy as np
import onnx
import pytest
import torch
import torchvision
from conftest import assert_clean_error, run_cli
from onnx import numpy_helper
from test_roi_pool_kernel import ADVERSARIAL

from srg_deploy.checkpoint import load_model
from srg_deploy.export.onnx_export import onnx_from_model, replace_max_roi_pool
from srg_deploy.runtime.loader import open_backend

ov = pytest.importorskip("openvino")
CAPABILITIES = [str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")]
needs_bf16 = pytest.mark.skipif("BF16" not in CAPABILITIES, reason="this CPU has no bf16 (AVX512-BF16 or AMX)")
# Boxes with edges past 512 px, where bf16 keeps a step of 2-4 px: 700.3 would be read as 700, 263 as 264.
FAR_BOXES = [[0, 700.3, 600.3, 1100.3, 790.3], [0, 695.9, 700.3, 1000.0, 790.0], [0, 513.0, 259.0, 1263.0, 899.0]]


@pytest.fixture(scope="module")
def pool_onnx(tmp_path_factory):
    """torchvision's roi_pool exported as the product exports it: MaxRoiPool -> srg::roi_pool + local function."""

    class Pool(torch.nn.Module):
        def forward(self, x, rois):
            return torchvision.ops.roi_pool(x, rois, (7, 7), 1 / 16)

    path = tmp_path_factory.mktemp("ov_pool") / "pool.onnx"
    torch.onnx.export(
        Pool(), (torch.randn(1, 8, 13, 17), torch.tensor([[0, 0, 0, 100, 80.0]])), str(path), dynamo=False,
        opset_version=17, input_names=["x", "rois"], output_names=["y"],
        dynamic_axes={"x": {2: "h", 3: "w"}, "rois": {0: "r"}},
    )  # fmt: skip
    proto = onnx.load(str(path))
    assert replace_max_roi_pool(proto) == 1 and proto.functions
    onnx.save(proto, str(path))
    return path


def pool_inputs() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(3)
    features = torch.randn(1, 8, 60, 80, generator=g)  # 960 x 1280 px at scale 1/16
    xy = torch.rand(200, 4, generator=g) * torch.tensor([1300.0, 1000.0, 1300.0, 1000.0]) - 20
    xy[::5] = torch.floor(xy[::5] / 8) * 8 + 0.3  # just past the .5-cell ties
    rois = torch.cat([torch.zeros(200, 1), xy], dim=1)
    adversarial = torch.tensor(ADVERSARIAL) * torch.tensor([0, 1, 1, 1, 1])  # one image: batch index 0
    return features, torch.cat([adversarial, torch.tensor(FAR_BOXES), rois])


@pytest.mark.parametrize("precision", ["fp32", pytest.param("bf16", marks=needs_bf16)])
def test_roi_pooling_is_bit_identical_to_torchvision(pool_onnx, precision):
    """The inlined srg::roi_pool as OpenVINO runs it, on adversarial boxes (ties, outside, inverted, zero size) and
    boxes with edges at 700.3 px: bit-identical to torchvision at fp32 and at bf16, because the ROIPooling node is
    kept in f32 (box coordinates are never rounded to bf16). Without that marking bf16 moves the far boxes."""
    from srg_deploy.runtime.openvino_backend import compile_config, read_model, roi_pool_precisions

    core = ov.Core()
    features, rois = pool_inputs()
    expected = torchvision.ops.roi_pool(features, rois, (7, 7), 1 / 16).numpy()
    compiled = core.compile_model(read_model(core, pool_onnx)[0], "CPU", compile_config(precision, None))
    assert roi_pool_precisions(compiled) == ["f32"]
    got = compiled({"x": features.numpy(), "rois": rois.numpy()})[0]
    assert got.shape == expected.shape and np.array_equal(got, expected)
    if precision == "bf16":  # the same graph without the f32 marking: OpenVINO rounds the coordinates to bf16
        inlined = onnx.inliner.inline_local_functions(onnx.load(str(pool_onnx)))
        plain = core.compile_model(
            core.read_model(inlined.SerializeToString(), b""), "CPU", compile_config("bf16", None)
        )
        assert roi_pool_precisions(plain) == ["bf16"]
        moved = plain({"x": features.numpy(), "rois": rois.numpy()})[0]
        assert not np.array_equal(moved, expected)


@pytest.fixture
def frame_and_boxes(write_image, write_json):
    image = write_image("frame.png", 150, 200)
    boxes = write_json("boxes.json", [[10, 12, 90, 100], [60, 40, 190, 140], [0, 0, 199, 149], [120, 20, 160, 70]])
    return image, boxes


def records(path) -> list[dict]:
    """JSONL records without their timing, which differs run to run."""
    out = []
    for line in path.read_text().splitlines():
        record = json.loads(line)
        record.pop("latency_ms", None)
        out.append(record)
    return out


def test_fp32_records_equal_onnxruntime(small_onnx, frame_and_boxes, tmp_path):
    image, boxes = frame_and_boxes
    outputs = {}
    for backend in ("onnxruntime", "openvino"):
        outputs[backend] = tmp_path / f"{backend}.jsonl"
        result = run_cli(
            "infer", small_onnx, "--backend", backend, "--source", image, "--boxes", boxes, "--json", outputs[backend]
        )
        assert result.returncode == 0, result.stderr
        assert f"backend: {backend} (" in result.stderr
    ort, openvino = records(outputs["onnxruntime"]), records(outputs["openvino"])
    assert len(ort) == len(openvino) == 1 and ort[0]["relations"]
    triplets = [[(r["subject"], r["object"], r["predicate"]) for r in rec.pop("relations")] for rec in ort]
    scores = [[r["score"] for r in rec["relations"]] for rec in openvino]
    assert triplets == [[(r["subject"], r["object"], r["predicate"]) for r in rec.pop("relations")] for rec in openvino]
    assert ort == openvino  # objects (labels, scores), spatial relations, sizes: identical
    for a, b in zip(scores, [[r["score"] for r in rec["relations"]] for rec in records(outputs["onnxruntime"])]):
        assert np.allclose(a, b, rtol=0, atol=2e-6)  # scores are written with 6 decimals


def tampered(small_onnx, tmp_path):
    """The exported file with one res5 convolution's weights scaled by 1.05."""
    proto = onnx.load(str(small_onnx))
    out = copy.deepcopy(proto)
    (conv,) = [n for n in out.graph.node if n.name == "/res5/res5.0/conv1/Conv"]
    (weight,) = [t for t in out.graph.initializer if t.name == conv.input[1]]
    weight.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(weight) * np.float32(1.05), weight.name))
    path = tmp_path / "tampered.onnx"
    onnx.save(out, str(path))
    return path


@needs_bf16
def test_bf16_verify_passes_a_faithful_model_and_fails_a_tampered_one(
    small_onnx, small_checkpoint, frame_and_boxes, tmp_path
):
    image, boxes = frame_and_boxes
    args = ("--backend", "openvino", "--precision", "bf16", "--reference", small_checkpoint, "--source", image,
            "--boxes", boxes)  # fmt: skip
    report = tmp_path / "report.json"
    result = run_cli("verify", small_onnx, *args, "--report", report)
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(report.read_text())
    assert verdict["gates"]["precision"] == "bf16" and "openvino (CPU, bf16" in verdict["deployed"]
    result = run_cli("verify", tampered(small_onnx, tmp_path), *args)
    assert_clean_error(result, "fails verification", "scale")


def test_fp32_verify_uses_the_fp32_gates(small_onnx, small_checkpoint, frame_and_boxes, tmp_path):
    image, boxes = frame_and_boxes
    report = tmp_path / "report.json"
    result = run_cli(
        "verify", small_onnx, "--backend", "openvino", "--reference", small_checkpoint, "--source", image,
        "--boxes", boxes, "--report", report,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(report.read_text())["gates"]["precision"] == "fp32"


@needs_bf16
def test_eval_three_backends_and_precisions_side_by_side(scene_data, scene_checkpoint, tmp_path):
    path = tmp_path / "scene.onnx"
    path.write_bytes(onnx_from_model(load_model(scene_checkpoint), "boxes").SerializeToString())
    report = tmp_path / "eval.json"
    specs = [str(path), f"openvino:{path}", f"openvino:bf16:{path}"]
    result = run_cli("eval", *specs, "--data", scene_data, "--max-images", "3", "--report", report)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(report.read_text())
    first, fp32, bf16 = document["models"]
    assert [m["model"] for m in document["models"]] == specs
    assert first["backend"].startswith("onnxruntime") and first["precision"] == "fp32"
    assert fp32["backend"].startswith("openvino (CPU, fp32") and bf16["backend"].startswith("openvino (CPU, bf16")
    assert bf16["precision"] == "bf16" and "delta" not in first
    for result_ in (fp32, bf16):
        for metric in ("recall", "no_graph_constraint_recall", "mean_recall"):
            assert set(result_["delta"][metric]) == {"20", "50", "100"}
            for k, delta in result_["delta"][metric].items():
                assert delta == pytest.approx(result_[metric][k] - first[metric][k])
    assert all(v == 0.0 for v in fp32["delta"]["recall"].values())  # fp32 OpenVINO scores as ONNX Runtime does
    assert document["images"] == 3 and "Δ vs first" in result.stdout


def test_bench_json_has_the_same_schema(small_onnx, tmp_path):
    report = tmp_path / "bench.json"
    result = run_cli(
        "bench", small_onnx, "--backend", "openvino", "--image-size", "96x128", "--boxes", "4", "--iters", "2",
        "--json", report,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(report.read_text())
    assert document["backend"] == "openvino (CPU, fp32, boxes mode)"
    assert document["stages"]["model"]["median_ms"] > 0 and document["stages"]["end_to_end"]["median_ms"] > 0
    assert document["peak_precision"] == "fp32" and document["peak_gflop_per_s"] > 0
    assert document["machine"]["openvino"]


@needs_bf16
def test_bench_bf16_floor_is_the_bf16_peak(small_onnx, tmp_path):
    report = tmp_path / "bench.json"
    result = run_cli(
        "bench", small_onnx, "--backend", "openvino", "--precision", "bf16", "--image-size", "96x128", "--boxes",
        "4", "--iters", "1", "--json", report,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    document = json.loads(report.read_text())
    assert document["peak_precision"] == "bf16"
    assert document["peak_gflop_per_s"] == document["peak_gflop_per_s_by_precision"]["bf16"]
    assert set(document["peak_gflop_per_s_by_precision"]) == {"fp32", "bf16"}
    assert document["stages"]["model"]["median_ms"] > 0


def infer_args(image, boxes) -> tuple:
    return ("--source", image, "--boxes", boxes)


def test_unknown_device_is_one_line(small_onnx, frame_and_boxes):
    result = run_cli("infer", small_onnx, "--backend", "openvino", "--device", "TPU", *infer_args(*frame_and_boxes))
    assert_clean_error(result, "unknown OpenVINO device 'TPU'", "CPU, GPU, NPU, AUTO")


@pytest.mark.skipif("NPU" in ov.Core().available_devices, reason="this machine has an NPU")
def test_absent_device_is_one_line(small_onnx, frame_and_boxes):
    result = run_cli("infer", small_onnx, "--backend", "openvino", "--device", "NPU", *infer_args(*frame_and_boxes))
    available = ", ".join(ov.Core().available_devices)
    assert_clean_error(result, "OpenVINO device NPU is not available here", f"available: {available}")


@pytest.mark.skipif("FP16" in CAPABILITIES, reason="this CPU runs f16")
def test_a_precision_the_device_cannot_run_is_one_line(small_onnx, frame_and_boxes):
    """fp16 on a CPU without f16 arithmetic is refused, not silently run at another precision."""
    result = run_cli("infer", small_onnx, "--backend", "openvino", "--precision", "fp16", *infer_args(*frame_and_boxes))
    assert_clean_error(result, "OpenVINO CPU cannot run fp16 here", "choose another --precision or --device")


def test_a_file_openvino_cannot_read_is_one_line(small_onnx, frame_and_boxes, tmp_path):
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(small_onnx.read_bytes()[:5000])
    result = run_cli("infer", truncated, "--backend", "openvino", *infer_args(*frame_and_boxes))
    assert_clean_error(result, f"OpenVINO cannot read {truncated}")
    # an ONNX graph with an operator OpenVINO does not know
    proto = onnx.load(str(small_onnx))
    proto.graph.node[0].domain, proto.graph.node[0].op_type = "com.example", "Mystery"
    proto.opset_import.append(onnx.helper.make_opsetid("com.example", 1))
    unknown = tmp_path / "unknown_op.onnx"
    onnx.save(proto, str(unknown))
    result = run_cli("infer", unknown, "--backend", "openvino", *infer_args(*frame_and_boxes))
    assert_clean_error(result, f"OpenVINO cannot read {unknown}")


def test_precision_without_openvino_is_refused(small_onnx, frame_and_boxes):
    result = run_cli("infer", small_onnx, "--precision", "bf16", *infer_args(*frame_and_boxes))
    assert_clean_error(result, "--precision bf16 applies to --backend openvino")


def test_build_engines_fp16_onnx_runs_unchanged(small_onnx, small_checkpoint, frame_and_boxes, tmp_path):
    """build-engine's fp16 ONNX (the same artifact TensorRT and ONNX Runtime run) opens in OpenVINO as it is; its
    precision is the file's fp16, and verify judges it with the fp16 gates and passes."""
    from srg_deploy.export.fp16 import fp16_from_onnx

    path = tmp_path / "model-fp16.onnx"
    onnx.save(fp16_from_onnx(onnx.load(str(small_onnx))), str(path))
    image, boxes = frame_and_boxes
    report = tmp_path / "report.json"
    result = run_cli(
        "verify", path, "--backend", "openvino", "--reference", small_checkpoint, "--source", image, "--boxes", boxes,
        "--report", report,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    verdict = json.loads(report.read_text())
    assert verdict["gates"]["precision"] == "fp16" and "openvino (CPU, fp16" in verdict["deployed"]


def test_batch_runs_openvino_and_records_the_choice(small_onnx, tmp_path, write_image, write_json):
    """`batch --backend openvino` on Ray: every worker opens OpenVINO; the records equal `infer --backend openvino`'s
    and batch.json records the backend, so a later run with another backend is not mixed into the same folder."""
    pytest.importorskip("ray", reason="ray (the [ray] extra) is not installed")
    for k in range(3):
        write_image(f"images/img_{k}.png", 56, 64, seed=k)
    boxes = write_json("boxes.json", [[4, 4, 40, 30], [20, 10, 60, 50], [0, 0, 60, 50]])
    out, infer_out = tmp_path / "out", tmp_path / "infer.jsonl"
    args = ("--source", tmp_path / "images", "--boxes", boxes, "--backend", "openvino")
    result = run_cli("batch", small_onnx, *args, "--output", out, "--workers", "1")
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "batch.json").read_text())["backend"] == "openvino"
    made = run_cli("infer", small_onnx, *args, "--json", infer_out)
    assert made.returncode == 0, made.stderr
    batch_records = sorted(
        (
            json.loads(line)
            for shard in sorted((out / "records").glob("part-*.jsonl"))
            for line in shard.read_text().splitlines()
        ),
        key=lambda r: r["source"],
    )
    expected = sorted(records(infer_out), key=lambda r: r["source"])
    assert [{k: v for k, v in r.items() if k != "latency_ms"} for r in batch_records] == expected
    again = run_cli("batch", small_onnx, "--source", tmp_path / "images", "--boxes", boxes, "--output", out)
    assert_clean_error(again, "backend")


@needs_bf16
def test_bf16_computes_every_box_coordinate_in_f32(small_onnx):
    """Not only ROIPooling: the union boxes (Min/Max of the pair's boxes) and the slices of `boxes` they come from run
    in f32 at bf16. Without the marking (and the Slice -> Gather rewrite: the CPU plugin fuses Slices into a
    VariadicSplit that loses it) they ran in bf16, rounding coordinates before RoI pooling saw them."""
    from srg_deploy.runtime.openvino_backend import coordinate_precisions

    with open_backend(small_onnx, "openvino", precision="bf16") as backend:
        found = coordinate_precisions(backend.compiled)
    kinds = {name.split()[0] for name in found}
    assert {"Eltwise", "Concatenation", "Gather"} <= kinds, found  # the union-box arithmetic is on the path
    assert not {p for p in found.values() if p in ("bf16", "f16")}, found
