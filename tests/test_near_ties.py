"""The near-tie rule of agreement (validate/compare.py): a flip counts against agreement only when the reference's
margin between its choice and the deployed choice exceeds that output's error band (10 x median |got - ref|).

On hand-made logits: a flip inside the band passes, outside fails. On real models: a faithful fp16 conversion
(build-engine's fp16 step, judged in ONNX Runtime against the fp32 file) of BatchNorm-calibrated random models, the
kind `srg-deploy init` makes, passes the fp16 gates for ten seeds on the sample and the noise frame; a conv scaled
by 1.05, an object head with two classes swapped and a dropped RoI still fail.
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import onnx
import pytest
from conftest import small_config
from onnx import TensorProto, helper, numpy_helper

from srg_deploy.checkpoint import random_model
from srg_deploy.export.fp16 import fp16_from_onnx
from srg_deploy.export.onnx_export import onnx_from_model
from srg_deploy.export.steps import fp16_onnx_from_onnx, fp16_parity
from srg_deploy.plugins.spec import PLUGIN_NAME
from srg_deploy.validate.compare import BAND_FACTOR, Agreement, error_band, top1_agreement, triplet_agreement
from srg_deploy.validate.failures import AGREEMENT, REGION_COSINE, SCALE
from srg_deploy.validate.gates import Gates
from srg_deploy.validate.render import failure_text
from srg_deploy.validate.verdict import agreement_failures

FP16 = Gates.for_precision("fp16")
FP32 = Gates.for_precision("fp32")


# --- the rule on hand-made logits ------------------------------------------------------------------------------------


def noisy(shape: tuple[int, ...], seed: int = 0, noise: float = 0.01) -> tuple[np.ndarray, np.ndarray]:
    """Reference logits and a copy with uniform noise of +-`noise` (median |error| ~ noise / 2)."""
    rng = np.random.default_rng(seed)
    ref = rng.normal(0, 2, shape)
    return ref, ref + rng.uniform(-noise, noise, shape)


def flip_row(ref: np.ndarray, got: np.ndarray, row: int, margin: float) -> None:
    """Make the reference's top-1 of `row` lead its runner-up by `margin`, and the deployed model pick the
    runner-up."""
    first, second = np.argsort(-ref[row])[:2]
    ref[row, first] = ref[row, second] + margin
    got[row, first] = ref[row, first]
    got[row, second] = ref[row, first] + 1e-3


def test_band_is_ten_times_the_median_error():
    ref, got = noisy((40, 50))
    assert BAND_FACTOR == 10
    assert error_band(ref, got) == pytest.approx(10 * np.median(np.abs(got - ref)))
    assert 0.04 < error_band(ref, got) < 0.06  # uniform +-0.01: median 0.005
    assert error_band(ref, ref) == 0.0


def test_a_flip_inside_the_band_passes_outside_fails():
    ref, got = noisy((40, 50))
    flip_row(ref, got, 3, margin=0.02)  # inside the band (~0.05): a near tie
    near = top1_agreement(ref, got)
    assert (near.agree, near.total, near.near_ties) == (39, 40, 1)
    assert near.worst_margin == pytest.approx(0.02) and near.rate == 1.0
    assert agreement_failures({"objects": near}, FP16) == []
    assert agreement_failures({"objects": near}, FP32) == []  # even fp32's 100%: the flip is within its own error

    ref, got = noisy((40, 50))
    flip_row(ref, got, 3, margin=0.5)  # ten bands: a real disagreement
    far = top1_agreement(ref, got)
    assert (far.agree, far.near_ties) == (39, 0) and far.rate == 39 / 40
    (failure,) = agreement_failures({"objects": far}, FP32)
    assert (failure.output, failure.kind, failure.value, failure.bound) == ("objects", AGREEMENT, 39 / 40, 1.0)
    assert failure_text(failure) == "object top-1 agreement 97.5% < 100%"


def test_the_band_is_the_outputs_own_on_that_frame():
    """The same flip with the same margin is a near tie where the output is noisy and a disagreement where it is
    exact: the band is measured, not assumed."""
    for noise, expected in ((0.01, 1), (1e-5, 0)):
        ref, got = noisy((40, 50), noise=noise)
        flip_row(ref, got, 0, margin=0.02)
        assert top1_agreement(ref, got).near_ties == expected, noise


def test_triplet_flips_follow_the_same_rule():
    """A pair whose predicate flips changes its triplet: a near tie when the reference's two predicates are within
    the band of the triplet scores, a miss otherwise."""
    pairs = np.array([[0, 1], [0, 2], [1, 2], [2, 3]])
    scores = np.ones(4)
    for margin, near_ties in ((0.02, 1), (1.0, 0)):
        ref, got = noisy((4, 2, 51), seed=1)
        flip_row(ref.reshape(8, 51), got.reshape(8, 51), 2, margin)  # pair 1, subject 0 -> object 2
        agreement = triplet_agreement(pairs, scores, scores, ref, got)["triplets@20"]
        assert (agreement.agree, agreement.total, agreement.near_ties) == (7, 8, near_ties), margin
        assert bool(agreement_failures({"triplets@20": agreement}, FP16)) == (near_ties == 0)


def test_agreement_pools_near_ties_over_frames():
    total = Agreement()
    total.add(Agreement(9, 10, 1, 0.1, 0.3))
    total.add(Agreement(10, 10, 0, 0.0, 0.5))
    assert (total.agree, total.total, total.near_ties, total.worst_margin, total.band) == (19, 20, 1, 0.1, 0.5)
    assert total.hits == 20 and total.rate == 1.0


# --- fp16 conversions of BatchNorm-calibrated random models ----------------------------------------------------------


def tiny_config():
    """Frames resized to 96..128 px, so that ten seeds export, convert and run in ONNX Runtime in about two minutes
    on a loaded two-core machine."""
    config = small_config()
    return dataclasses.replace(
        config, preprocessing=dataclasses.replace(config.preprocessing, min_size=96, max_size=128)
    )


def exported(seed: int) -> onnx.ModelProto:
    return onnx_from_model(random_model(tiny_config(), seed), "boxes")


@pytest.mark.parametrize("seed", range(10))
def test_faithful_fp16_passes_for_every_seed(seed):
    step = fp16_onnx_from_onnx(exported(seed))  # build-engine --fp16's step: the fp16 gates, sample + noise frame
    assert [frame["source"] for frame in step.verdict.frames] == ["sample frame", "noise frame"]
    assert step.verdict, [failure_text(f) for f in step.verdict.failures]


@pytest.fixture(scope="module")
def fp32_model() -> onnx.ModelProto:
    return exported(0)


def with_initializer(proto: onnx.ModelProto, name: str, change) -> onnx.ModelProto:
    out = copy.deepcopy(proto)
    (tensor,) = [t for t in out.graph.initializer if t.name == name]
    tensor.CopyFrom(numpy_helper.from_array(change(numpy_helper.to_array(tensor).copy()), name))
    return out


def test_a_conv_scaled_by_5_percent_still_fails(fp32_model):
    (conv,) = [n for n in fp32_model.graph.node if n.name == "/res5/res5.0/conv1/Conv"]
    tampered = with_initializer(fp32_model, conv.input[1], lambda w: w * np.float32(1.05))
    verdict, _ = fp16_parity(fp32_model, fp16_from_onnx(tampered), FP16)
    assert not verdict
    assert any(f.kind == SCALE for f in verdict.failures), [failure_text(f) for f in verdict.failures]


def test_a_head_with_two_classes_swapped_still_fails(fp32_model, tmp_path):
    """The reference's top class of the sample frame's first box swapped with that box's least likely class: every
    box of that class now flips by a margin far beyond the band."""
    from srg_deploy.runtime.ort_backend import OrtBackend
    from srg_deploy.validate.cases import sample_cases

    onnx.save(fp32_model, str(tmp_path / "fp32.onnx"))
    with OrtBackend(tmp_path / "fp32.onnx") as backend:
        logits = backend.run(sample_cases(backend.config, backend.mode)[0].inputs)["object_logits"]
    a, b = int(logits[0].argmax()), int(logits[0].argmin())

    def swap(w: np.ndarray) -> np.ndarray:
        w[[a, b]] = w[[b, a]]
        return w

    tampered = with_initializer(with_initializer(fp32_model, "object_head.weight", swap), "object_head.bias", swap)
    verdict, _ = fp16_parity(fp32_model, fp16_from_onnx(tampered), FP16)
    assert not verdict
    assert any(f.output == "objects" and f.kind == AGREEMENT for f in verdict.failures), [
        failure_text(f) for f in verdict.failures
    ]
    assert verdict.agreements["objects"].near_ties == 0


def drop_first_roi(proto: onnx.ModelProto) -> onnx.ModelProto:
    """The fp16 model with the plugin's first RoI (the first box's region) pooled as zeros, as a kernel that skipped
    it would leave it."""
    out = copy.deepcopy(proto)
    graph = out.graph
    plugin = next(n for n in graph.node if n.op_type == PLUGIN_NAME)
    pooled = plugin.output[0]
    plugin.output[0] = f"{pooled}_all"
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.array(0, np.int64), "drop_zero"),
            numpy_helper.from_array(np.array(1, np.int64), "drop_one"),
            numpy_helper.from_array(np.array([-1, 1, 1, 1], np.int64), "drop_shape"),
        ]
    )
    nodes = [
        helper.make_node("Shape", [f"{pooled}_all"], ["drop_dims"]),
        helper.make_node("Gather", ["drop_dims", "drop_zero"], ["drop_rois"], axis=0),
        helper.make_node("Range", ["drop_zero", "drop_rois", "drop_one"], ["drop_index"]),
        helper.make_node("Greater", ["drop_index", "drop_zero"], ["drop_keep"]),
        helper.make_node("Cast", ["drop_keep"], ["drop_keep_f"], to=TensorProto.FLOAT),
        helper.make_node("CastLike", ["drop_keep_f", f"{pooled}_all"], ["drop_keep_t"]),
        helper.make_node("Reshape", ["drop_keep_t", "drop_shape"], ["drop_mask"]),
        helper.make_node("Mul", [f"{pooled}_all", "drop_mask"], [pooled]),
    ]
    at = list(graph.node).index(plugin) + 1
    for k, node in enumerate(nodes):
        graph.node.insert(at + k, node)
    return out


def test_a_dropped_roi_still_fails(fp32_model):
    verdict, _ = fp16_parity(fp32_model, drop_first_roi(fp16_from_onnx(fp32_model)), FP16)
    assert not verdict
    assert any(f.output == "features/region" and f.kind == REGION_COSINE for f in verdict.failures), [
        failure_text(f) for f in verdict.failures
    ]
