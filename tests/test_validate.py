"""srg_deploy.validate: the checklist on fp32, fp16 and tampered models, the fp16 gates against what fp16 itself
can do, typed failures and their text, golden references, sample cases, and the fp16 overflow message."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import onnx
import pytest
import torch
from conftest import assert_clean_error, make_frame, run_cli, small_config

from srg_deploy.checkpoint import save_checkpoint
from srg_deploy.config import SRGConfig
from srg_deploy.errors import SRGError
from srg_deploy.export.fp16 import fp16_from_onnx
from srg_deploy.export.onnx_export import onnx_from_model
from srg_deploy.model import SRGNet
from srg_deploy.runtime.loader import open_backend
from srg_deploy.runtime.torch_backend import TorchBackend
from srg_deploy.runtime.verify import SourceFrame, cases_from_frames, judge_runs, timed_runs, verify
from srg_deploy.synthetic import noise_frame
from srg_deploy.validate.cases import Case, sample_cases
from srg_deploy.validate.compare import diff
from srg_deploy.validate.failures import AGREEMENT, MAX_ABS, NONFINITE, SCALE, SHAPE, Failure
from srg_deploy.validate.gates import GATES, Gates
from srg_deploy.validate.golden import load_golden, save_golden
from srg_deploy.validate.render import checklist, failure_text, first_failure
from srg_deploy.validate.verdict import Verdict, judge_frame

BOXES = np.array([[10, 10, 60, 50], [40, 30, 150, 110], [0, 0, 159, 119], [70, 20, 120, 100]], np.float64)


def frames() -> list[SourceFrame]:
    """An ordinary frame and two noise frames (fp16's hardest input)."""
    return [
        SourceFrame("a", "ordinary", make_frame(120, 160, seed=1)),
        SourceFrame("n1", "noise 1", noise_frame(120, 160, seed=1)),
        SourceFrame("n2", "noise 2", noise_frame(120, 160, seed=2)),
    ]


class _Boxes:
    def for_source(self, name: str) -> np.ndarray:
        return BOXES


def conv_named(model: SRGNet, fragment: str) -> torch.nn.Conv2d:
    return dict(model.named_modules())[fragment]


def test_checklist_passes_fp32_export(small_model, small_onnx):
    with open_backend(small_onnx) as deployed:
        cases = cases_from_frames(deployed, frames(), _Boxes())
        verdict = verify(deployed, TorchBackend(small_model), Gates.for_precision("fp32"), cases)
    assert verdict, verdict.failures
    lines = [c.text for c in checklist(verdict)]
    assert all(c.passed for c in checklist(verdict))
    assert [line.split()[0] for line in lines[:4]] == [
        "features",
        "object_logits",
        "relation_logits",
        "features/region",
    ]
    assert any(line.startswith("triplet recall@50 agreement 100.0%") for line in lines)


def test_fp16_gates_pass_a_faithful_fp16_model_on_ordinary_and_noise_frames(small_model):
    """PyTorch's own `.half()` of the BatchNorm-calibrated model is what fp16 itself can do: the default gates must
    let it through on ordinary and noise frames (each output judged; fp16 features and fp16 boxes, as `.half()`
    computes them)."""
    model = copy.deepcopy(small_model)  # frames resized to 96 px: PyTorch's fp16 convolutions are slow on a CPU
    model.config = dataclasses.replace(
        model.config, preprocessing=dataclasses.replace(model.config.preprocessing, min_size=96, max_size=128)
    )
    reference = TorchBackend(model)
    half = copy.deepcopy(model).half()
    gates = Gates.for_precision("fp16")
    for case in cases_from_frames(reference, frames(), _Boxes()):
        ref = reference.run(case.inputs)
        with torch.inference_mode():
            x = [torch.from_numpy(case.inputs[n]) for n in ("image", "boxes", "pairs")]
            out = half(x[0].half(), x[1].half(), x[2])
        got = {n: t.float().numpy() for n, t in zip(ref, out)}
        check = judge_frame(case.inputs, ref, got, gates)
        assert check.failures == [], (case.label, check.failures)


@pytest.mark.parametrize("layer", ["trunk.layer3.10.conv2", "res5.0.conv1"])
def test_a_conv_scaled_by_5_percent_fails_the_fp16_gates(small_model, layer):
    """Cosine and top-1 agreement barely move when one conv layer is scaled by 1.05 (cosine stays > 0.9998); the
    scale error is what catches it, under fp16's gates as under fp32's."""
    tampered = copy.deepcopy(small_model)
    with torch.no_grad():
        conv_named(tampered, layer).weight.mul_(1.05)
    reference, deployed = TorchBackend(small_model), TorchBackend(tampered)
    cases = cases_from_frames(reference, frames(), _Boxes())
    ref, _ = timed_runs(reference, cases, warmup=0)
    for precision in ("fp32", "fp16"):
        verdict = judge_runs(deployed, cases, ref, [], "eager", Gates.for_precision(precision), warmup=0)
        assert not verdict, precision
    assert any(f.kind == SCALE for f in verdict.failures), verdict.failures
    assert verdict.outputs["features"]["cosine_min"] > 0.999  # the cosine alone would have passed it
    assert not all(c.passed for c in checklist(verdict))


def test_fp16_onnx_passes_and_tampered_fp16_onnx_fails(small_onnx, tmp_path):
    fp32 = onnx.load(str(small_onnx))
    half = fp16_from_onnx(fp32)
    onnx.save(half, str(tmp_path / "half.onnx"))
    proto = copy.deepcopy(fp32)
    (weight,) = [t for t in proto.graph.initializer if t.name == "union_embed.weight"]
    weight.CopyFrom(onnx.numpy_helper.from_array(onnx.numpy_helper.to_array(weight) * 1.05, weight.name))
    onnx.save(fp16_from_onnx(proto), str(tmp_path / "tampered-half.onnx"))
    with open_backend(small_onnx) as reference:
        cases = cases_from_frames(reference, frames(), _Boxes())
        with open_backend(tmp_path / "half.onnx") as deployed:
            assert deployed.precision == "fp16"
            good = verify(deployed, reference, Gates.for_precision("fp16"), cases)
        with open_backend(tmp_path / "tampered-half.onnx") as deployed:
            bad = verify(deployed, reference, Gates.for_precision("fp16"), cases)
    assert good, good.failures
    assert not bad
    assert any(f.output == "relation_logits" and f.kind == SCALE for f in bad.failures), bad.failures


def test_golden_round_trip_and_refusals(small_model, small_onnx, tmp_path):
    reference = TorchBackend(small_model)
    cases = cases_from_frames(reference, frames()[:2], _Boxes())
    outputs, times = timed_runs(reference, cases, warmup=0)
    path = tmp_path / "golden.npz"
    save_golden(path, reference, cases, outputs, times)
    golden = load_golden(path)
    assert [c.label for c in golden.cases] == ["ordinary", "noise 1"] and golden.mode == "boxes"
    for case, loaded in zip(cases, golden.cases):
        assert all(np.array_equal(case.inputs[n], loaded.inputs[n]) for n in case.inputs)
        assert all(loaded.inputs[n].dtype == case.inputs[n].dtype for n in case.inputs)
    with open_backend(small_onnx) as deployed:
        assert verify(deployed, golden, Gates.for_precision("fp32"))
    other = copy.deepcopy(small_model)
    other.config = SRGConfig()  # another preprocessing: another model config
    with pytest.raises(SRGError, match=r"recorded for another model config \(differs in preprocessing"):
        load_golden(path).check_fits(TorchBackend(other))
    (tmp_path / "junk.npz").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(SRGError, match="is not a readable golden file"):
        load_golden(tmp_path / "junk.npz")
    np.savez(tmp_path / "plain.npz", x=np.zeros(3))
    with pytest.raises(SRGError, match="not an srg-deploy golden file"):
        load_golden(tmp_path / "plain.npz")


def test_verify_cli_golden_workflow(small_onnx, small_checkpoint, tmp_path, write_image, write_json):
    image = write_image("f.png")
    boxes = write_json("boxes.json", BOXES.tolist())
    golden = tmp_path / "golden.npz"
    made = run_cli(
        "verify", small_onnx, "--reference", small_checkpoint, "--source", image, "--boxes", boxes,
        "--save-reference", golden,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert f"wrote {golden}" in made.stdout
    replay = run_cli("verify", small_onnx, "--reference", golden, "--report", tmp_path / "r.json")
    assert replay.returncode == 0, replay.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["passed"] and report["reference"].startswith(f"golden {golden}")
    assert_clean_error(run_cli("verify", small_onnx, "--reference", golden, "--source", image), "brings its own inputs")
    assert_clean_error(run_cli("verify", small_onnx, "--reference", small_checkpoint), "--source is required")
    (tmp_path / "broken.npz").write_bytes(b"nope")
    assert_clean_error(run_cli("verify", small_onnx, "--reference", tmp_path / "broken.npz"), "not a readable golden")
    assert_clean_error(
        run_cli("infer", small_onnx, "--source", image, "--boxes", boxes, "--check-every", "1", "--reference", golden),
        "needs the eager checkpoint folder",
    )


def test_fp16_overflow_is_named_with_its_node(tmp_path):
    """Random weights with PyTorch's default BatchNorm statistics (mean 0, variance 1) grow activations far past
    fp16's range: build-engine --fp16 must say so and where, not report a NaN cosine."""
    config = small_config()
    torch.manual_seed(0)
    model = SRGNet(config).eval()  # no BatchNorm calibration
    save_checkpoint(model, tmp_path / "ckpt")
    onnx.save(onnx_from_model(model, "boxes"), str(tmp_path / "model.onnx"))
    result = run_cli("build-engine", tmp_path / "model.onnx", "-o", tmp_path / "m.engine", "--fp16")
    assert_clean_error(result, "fails the check against fp32", "activations exceed fp16's range (65504)", "at node")
    assert "(Conv)" in result.stderr or "(Add)" in result.stderr or "(Relu)" in result.stderr
    assert "--keep-fp32-overflow" in result.stderr
    assert not (tmp_path / "m.engine").exists()
    # Asked for explicitly, the overflowing nodes stay fp32 and the fp16 model passes the same gates.
    fp16 = tmp_path / "kept.onnx"
    result = run_cli(
        "build-engine", tmp_path / "model.onnx", "-o", tmp_path / "m.engine", "--fp16", "--keep-fp32-overflow",
        "--onnx-out", fp16,
    )  # fmt: skip
    assert "nodes in fp32 (--keep-fp32-overflow)" in result.stdout, result.stdout + result.stderr
    assert "[✓] fp16 vs fp32" in result.stdout, result.stdout
    assert fp16.is_file()
    kinds = {n.op_type for n in onnx.load(str(fp16)).graph.node}
    assert "Cast" in kinds  # a mixed model: fp16 where activations fit, fp32 where they do not


def test_sample_cases_cover_noise_for_fp16(small_onnx):
    with open_backend(small_onnx) as backend:
        cases = sample_cases(backend.config, backend.mode, noise=True)
    assert [c.label for c in cases] == ["sample frame", "noise frame"]
    assert all(isinstance(c, Case) and c.inputs["boxes"].dtype == np.float32 for c in cases)


def test_failures_are_typed_and_rendered_only_as_text_at_the_edge():
    """A gate returns records (output, kind, value, bound); the text users read is made from them, and code that
    needs to know what failed reads `kind` and `output`."""
    ref = np.array([[1.0, 2.0], [3.0, 4.0]])
    gates = Gates(rtol=1e-3)
    (failure,) = gates.output_failures(diff("object_logits", ref, ref + 0.01))
    assert (failure.output, failure.kind) == ("object_logits", MAX_ABS)
    assert failure.value == pytest.approx(0.01) and failure.bound == pytest.approx(4e-3)
    assert (
        failure_text(failure) == "object_logits: max abs error 1.00e-02 > 4.00e-03 (atol 0 + rtol 0.001 x max|ref| 4)"
    )
    assert failure_text(failure.at(2, "noise frame")).startswith("frame 2 (noise frame): object_logits: max abs")
    (shape,) = gates.output_failures(diff("features", ref, ref[:1]))
    assert shape.kind == SHAPE and failure_text(shape) == "features: shape [1, 2] != reference [2, 2]"
    (nonfinite,) = GATES["fp16"].output_failures(diff("features", ref, ref * np.inf))
    assert nonfinite.kind == NONFINITE and "fp16's range, 65504" in failure_text(nonfinite)
    with pytest.raises(ValueError, match="unknown failure kind"):
        Failure("features", "NaN or infinity")


def test_verdict_holds_failures_and_pools_agreement():
    """Per-frame failures carry their frame; agreement is judged once, pooled, and its failure names the
    agreement; the JSON report carries both the records and their text."""
    inputs = {"pairs": np.array([[0, 1]])}
    ref = {
        "features": np.eye(2, 4),
        "object_logits": np.eye(2, 10) * 5,  # ten classes: a swap of two leaves the error band at 0
        "relation_logits": np.array([[[0.0, 4.0, 0.0], [0.0, 0.0, 4.0]]]),
    }
    swapped = {**ref, "object_logits": ref["object_logits"][:, [1, 0, *range(2, 10)]]}
    verdict = Verdict("deployed", "reference", Gates.for_precision("fp32"), "boxes")
    verdict.add("a", judge_frame(inputs, ref, ref, verdict.gates))
    verdict.add("b", judge_frame(inputs, ref, swapped, verdict.gates))
    verdict.finish()
    assert not verdict
    outputs = {(f.output, f.kind, f.frame) for f in verdict.failures}
    assert ("object_logits", MAX_ABS, 1) in outputs and ("objects", AGREEMENT, None) in outputs
    assert verdict.counts["objects"] == (2, 4) and verdict.agreement["objects"] == 0.5
    assert first_failure(verdict).startswith("frame 1 (b): object_logits: max abs error")
    report = verdict.to_dict()
    assert report["failure_records"][0]["output"] == "object_logits" and report["failures"][0].startswith("frame 1")
    assert "object top-1 agreement 50.0% < 100%" in report["failures"]


def test_gates_table_is_a_plain_mapping_of_precisions():
    assert set(GATES) == {"fp32", "fp16", "bf16", "int8"}
    assert all(isinstance(g, Gates) and g.precision == name for name, g in GATES.items())
    with pytest.raises(SRGError, match="unknown precision 'fp8'"):
        Gates.for_precision("fp8")
