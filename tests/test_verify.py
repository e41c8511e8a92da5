"""`srg-deploy verify` and shadow verification (`infer --check-every`): real exports, real files, real subprocesses."""

from __future__ import annotations

import copy
import dataclasses
import json

import cv2
import numpy as np
import onnx
import pytest
import torch
from conftest import assert_clean_error, make_frame, run_cli

from srg_deploy.checkpoint import save_checkpoint
from srg_deploy.errors import SRGError
from srg_deploy.runtime.verify import read_frames
from srg_deploy.validate.compare import diff, triplet_hits
from srg_deploy.validate.failures import DETECTIONS, MAX_ABS, Failure
from srg_deploy.validate.gates import GATES, Gates
from srg_deploy.validate.render import failure_text
from srg_deploy.validate.verdict import judge_frame

BOXES = [[10, 10, 60, 50], [40, 30, 150, 110], [0, 0, 159, 119], [70, 20, 120, 100]]


@pytest.fixture(scope="module")
def small_model(model):
    """The session model with preprocessing to 160 px, so a 120x160 frame costs a fraction of a second."""
    small = copy.deepcopy(model)
    config = small.config
    small.config = dataclasses.replace(
        config, preprocessing=dataclasses.replace(config.preprocessing, min_size=160, max_size=256)
    )
    return small


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory, small_model):
    path = tmp_path_factory.mktemp("small") / "ckpt"
    save_checkpoint(small_model, path)
    return path


@pytest.fixture(scope="module")
def small_onnx(tmp_path_factory, small_model):
    from srg_deploy.export.onnx_export import onnx_from_model

    path = tmp_path_factory.mktemp("small_onnx") / "model.onnx"
    onnx.save(onnx_from_model(small_model, "boxes"), str(path))
    return path


@pytest.fixture(scope="module")
def frames_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    for k in range(3):
        assert cv2.imwrite(str(folder / f"f{k}.png"), make_frame(120, 160, seed=k))
    (folder / "boxes.json").write_text(json.dumps(BOXES))
    return folder


def scaled_copy(source, target, initializer: str, factor: float = 1.05):
    """The same model with one weight tensor scaled: a deployment that is *almost* the trained model."""
    proto = onnx.load(str(source))
    (tensor,) = [t for t in proto.graph.initializer if t.name == initializer]
    tensor.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(tensor) * factor, tensor.name))
    onnx.save(proto, str(target))
    return target


def fp16_copy(source, target):
    """The fp16 ONNX that `build-engine --fp16 --onnx-out` writes."""
    from srg_deploy.export.fp16 import fp16_from_onnx

    onnx.save(fp16_from_onnx(onnx.load(str(source))), str(target))
    return target


def verify_cli(model, checkpoint, source, *extra):
    return run_cli("verify", model, "--reference", checkpoint, "--source", source, *extra)


def test_verify_passes_exported_model(small_onnx, small_checkpoint, frames_dir, tmp_path):
    report_path = tmp_path / "report.json"
    result = verify_cli(
        small_onnx, small_checkpoint, frames_dir, "--boxes", frames_dir / "boxes.json", "--report", report_path
    )
    assert result.returncode == 0, result.stderr
    for text in ("relation_logits", "triplet recall@20", "speed-up", "[✓] onnxruntime", "fp32 gates"):
        assert text in result.stdout, result.stdout
    report = json.loads(report_path.read_text())
    assert report["passed"] and report["failures"] == [] and report["frames"] == 3
    assert report["precision"] == "fp32" and report["gates"]["rtol"] == 1e-4
    assert set(report["outputs"]) == {"features", "object_logits", "relation_logits"}
    assert all(o["max_rel"] <= 1e-4 for o in report["outputs"].values())
    assert report["agreement_counts"]["relations"] == [3 * 6 * 2, 3 * 6 * 2]  # 6 unordered pairs, both ways
    assert report["agreement"]["triplets@20"] == 1.0
    assert {"p50", "p95"} <= set(report["latency_ms"]["deployed"]) and report["latency_ms"]["speedup"]["p50"] > 0
    assert [f["source"] for f in report["per_frame"]] == [str(frames_dir / f"f{k}.png") for k in range(3)]


def test_verify_fails_weights_scaled_by_5_percent(small_onnx, small_checkpoint, frames_dir, tmp_path):
    tampered = scaled_copy(small_onnx, tmp_path / "tampered.onnx", "union_embed.weight")
    report_path = tmp_path / "report.json"
    result = verify_cli(
        tampered, small_checkpoint, frames_dir, "--boxes", frames_dir / "boxes.json", "--report", report_path
    )
    assert_clean_error(result, "fails verification", "relation_logits: max abs error")
    report = json.loads(report_path.read_text())
    assert not report["passed"]
    assert report["outputs"]["relation_logits"]["max_rel"] > 1e-3
    assert report["outputs"]["features"]["max_rel"] <= 1e-4  # the union embedding comes after pool5
    assert any(f.startswith("frame 0 (") and "relation_logits" in f for f in report["failures"])
    assert "[x]" in result.stdout


def test_verify_fp16_uses_fp16_gates(small_onnx, small_checkpoint, frames_dir, tmp_path):
    half = fp16_copy(small_onnx, tmp_path / "model_fp16.onnx")
    report_path = tmp_path / "report.json"
    boxes = frames_dir / "boxes.json"
    result = verify_cli(half, small_checkpoint, frames_dir, "--boxes", boxes, "--report", report_path)
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert report["precision"] == "fp16" and "fp16" in result.stdout
    assert report["gates"] == GATES["fp16"].to_dict() and report["gates"]["min_region_cosine"] == 0.99
    assert report["outputs"]["relation_logits"]["max_rel"] > 1e-5  # really fp16: would fail the fp32 bound
    # The same file under an explicit fp32-like bound fails: the defaults above were the fp16 ones.
    strict = verify_cli(half, small_checkpoint, frames_dir, "--boxes", boxes, "--rtol", "1e-5", "--frames", "1")
    assert_clean_error(strict, "fails verification", "max abs error")


def test_verify_video_first_frames(small_onnx, small_checkpoint, frames_dir, tmp_path):
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 10, (160, 120))
    for k in range(4):
        writer.write(make_frame(120, 160, seed=k))
    writer.release()
    report_path = tmp_path / "report.json"
    result = verify_cli(
        small_onnx,
        small_checkpoint,
        video,
        "--boxes",
        frames_dir / "boxes.json",
        "--frames",
        "2",
        "--report",
        report_path,
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(report_path.read_text())
    assert [f["source"] for f in report["per_frame"]] == [f"{video}#0", f"{video}#1"]


def test_verify_user_errors(small_onnx, small_checkpoint, frames_dir, checkpoint, tmp_path):
    boxes = frames_dir / "boxes.json"
    assert_clean_error(verify_cli(small_onnx, tmp_path, frames_dir, "--boxes", boxes), "neither a checkpoint folder")
    assert_clean_error(verify_cli(small_onnx, small_checkpoint, frames_dir), "needs --boxes")
    assert_clean_error(
        verify_cli(small_onnx, checkpoint, frames_dir, "--boxes", boxes), "config differs", "preprocessing"
    )
    (tmp_path / "notes.txt").write_text("x")
    assert_clean_error(verify_cli(small_onnx, small_checkpoint, tmp_path / "notes.txt"), "cannot read video")


def test_infer_check_every_writes_drift(small_onnx, small_checkpoint, frames_dir, tmp_path):
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "infer", small_onnx, "--source", frames_dir, "--boxes", frames_dir / "boxes.json", "--json", out,
        "--check-every", "2", "--reference", small_checkpoint,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert ["drift" in r for r in records] == [True, False, True]
    drift = records[0]["drift"]
    assert drift["passed"] and drift["failures"] == []
    assert drift["max_rel"]["relation_logits"] <= 1e-4 and drift["agreement"]["relations"] == 1.0
    assert "shadow check: 2 frames re-run through the reference (every 2)" in result.stderr


def test_infer_check_every_reports_drift_beyond_gates(small_onnx, small_checkpoint, frames_dir, tmp_path):
    tampered = scaled_copy(small_onnx, tmp_path / "tampered.onnx", "union_embed.weight")
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "infer", tampered, "--source", frames_dir, "--boxes", frames_dir / "boxes.json", "--json", out,
        "--check-every", "1", "--reference", small_checkpoint,
    )  # fmt: skip
    assert_clean_error(result, "3 of 3 checked frames drift beyond the gates", "frame 0: relation_logits")
    records = [json.loads(line) for line in out.read_text().splitlines()]  # the records are still written
    assert len(records) == 3 and not any(r["drift"]["passed"] for r in records)


def test_infer_check_every_needs_reference(small_onnx, frames_dir):
    result = run_cli(
        "infer", small_onnx, "--source", frames_dir, "--boxes", frames_dir / "boxes.json", "--check-every", "2"
    )
    assert_clean_error(result, "--check-every and --reference go together")


def test_gates_by_precision_and_overrides():
    assert Gates.for_precision("fp32") == Gates(precision="fp32", rtol=1e-4, min_agreement=1.0, box_atol_px=0.25)
    fp16 = Gates.for_precision("fp16")
    assert (fp16.rtol, fp16.min_cosine, fp16.min_region_cosine, fp16.max_scale_error) == (None, 0.999, 0.99, 0.006)
    assert fp16.min_agreement == 0.95 and fp16.match_detections
    relaxed = Gates.for_precision("fp16", atol=0.01, min_agreement=0.9, min_cosine=None)
    assert (relaxed.atol, relaxed.min_agreement, relaxed.min_cosine) == (0.01, 0.9, 0.999)  # None keeps the default
    int8 = Gates.for_precision("int8")
    assert (int8.rtol, int8.min_cosine, int8.min_region_cosine, int8.max_scale_error) == (None, 0.95, 0.9, None)
    assert int8.min_agreement == 0.7 and int8.match_detections
    with pytest.raises(SRGError, match="unknown precision 'int4'"):
        Gates.for_precision("int4")


def test_atol_plus_rtol_tolerance():
    ref = np.array([0.0, 1.0, -2.0])
    d = diff("x", ref, ref + np.array([0.0, 0.0, 0.003]))  # max abs 3e-3, max|ref| 2
    (failure,) = Gates(rtol=1e-3).output_failures(d)
    assert (failure.output, failure.kind, failure.bound) == ("x", MAX_ABS, pytest.approx(2e-3))
    assert failure_text(failure) == "x: max abs error 3.00e-03 > 2.00e-03 (atol 0 + rtol 0.001 x max|ref| 2)"
    assert Gates(rtol=1e-3, atol=1e-3).output_failures(d) == []  # 1e-3 + 1e-3 * 2 = 3e-3
    (failure,) = Gates(rtol=None, atol=1e-3).output_failures(d)
    assert "max abs error 3.00e-03 > 1.00e-03 (atol 0.001" in failure_text(failure)


def test_triplet_hits_counts_reference_top_k():
    ref = np.array([[0, 1, 3, 0.9], [1, 0, 2, 0.8], [2, 0, 5, 0.7]])
    got = np.array([[1, 0, 2, 0.85], [0, 1, 4, 0.8], [2, 0, 5, 0.75]])  # (0, 1) got another predicate
    assert triplet_hits(ref, got, 2) == (1, 2)
    assert triplet_hits(ref, got, 3) == (2, 3)
    assert triplet_hits(ref[:0], got, 20) == (0, 0)


def sgdet_outputs(n: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    pairs = np.stack(np.triu_indices(n, 1), axis=1).astype(np.int64)
    return {
        "boxes": rng.uniform(0, 100, (n, 4)).astype(np.float32),
        "scores": rng.uniform(0.1, 1, n).astype(np.float32),
        "labels": rng.integers(1, 151, n),
        "features": rng.uniform(0, 1, (n, 2048)).astype(np.float32),
        "object_logits": rng.normal(size=(n, 151)).astype(np.float32),
        "pairs": pairs,
        "relation_logits": rng.normal(size=(len(pairs), 2, 51)).astype(np.float32),
    }


def test_sgdet_detection_count_mismatch_fails_clearly():
    image = {"image": np.zeros((1, 3, 32, 32), np.float32)}
    check = judge_frame(image, sgdet_outputs(3), sgdet_outputs(2), Gates())
    assert check.failures == [Failure("boxes", DETECTIONS, 2, 3)] and check.detections == (2, 3)
    assert failure_text(check.failures[0]) == "deployed model detected 2 objects, reference 3"
    same = sgdet_outputs(4)
    check = judge_frame(image, same, {k: v.copy() for k, v in same.items()}, Gates())
    assert check.failures == [] and check.agreement["labels"].hits == 4 == check.agreement["labels"].total
    assert (check.agreement["triplets@20"].hits, check.agreement["triplets@20"].total) == (12, 12)
    other_labels = {**same, "labels": same["labels"] + 1}
    assert judge_frame(image, same, other_labels, Gates()).agreement["labels"].hits == 0


def test_read_frames_errors(tmp_path):
    with pytest.raises(SRGError, match="does not exist"):
        read_frames(tmp_path / "missing.png", 4)
    with pytest.raises(SRGError, match="holds no images"):
        read_frames(tmp_path, 4)
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(SRGError, match="cannot read video"):
        read_frames(tmp_path / "broken.mp4", 4)


def test_verify_sgdet_detection_count_mismatch(small_model, frames_dir, tmp_path):
    """An sgdet graph whose object head was changed detects objects the checkpoint does not: a clear failure."""
    from srg_deploy.export.onnx_export import onnx_from_model

    config = small_model.config
    reference = copy.deepcopy(small_model)
    reference.config = dataclasses.replace(
        config, detector=dataclasses.replace(config.detector, post_nms_top_n=50, max_detections=5)
    )
    deployed = copy.deepcopy(reference)
    with torch.no_grad():
        reference.object_head.bias[1:] -= 20.0  # every region background: nothing detected
        deployed.object_head.bias[1:] -= 20.0
        deployed.object_head.bias[1:4] += torch.tensor([26.0, 25.5, 25.0])  # three classes win everywhere
    save_checkpoint(reference, tmp_path / "ckpt")
    onnx.save(onnx_from_model(deployed, "sgdet"), str(tmp_path / "sgdet.onnx"))
    report_path = tmp_path / "report.json"
    result = verify_cli(
        tmp_path / "sgdet.onnx", tmp_path / "ckpt", frames_dir, "--frames", "1", "--report", report_path
    )
    assert_clean_error(result, "deployed model detected 5 objects, reference 0")
    report = json.loads(report_path.read_text())
    assert report["mode"] == "sgdet" and report["per_frame"][0]["detections"] == [5, 0]
