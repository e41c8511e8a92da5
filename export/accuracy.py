"""Accuracy control: the INT8 model's price in the metric users read (R@50 on a VG-SGG split), kept within a bound by
putting the layers that cost the most back in float.

Ranking: each quantized layer's own share of the error. On a few calibration frames both models run with every
layer's input and output exposed; a layer's cost is the relative squared error of its output minus that of its
input (int8 vs fp32), i.e. the error the layer adds rather than the error it inherits. One pass ranks every layer
(NNCF's `quantize_with_accuracy_control` instead re-validates per group: many more passes over the val split).

Search: 0 layers in float, then 1, 2, 4, ... of the ranking until the drop is within bound, then bisection between
the last failing and the first passing count; every count is measured on the whole val split with the project's
own evaluator (`runtime/evaluate.py`). A count beyond `max_float` is never tried: then it fails with the best drop.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnx

from srg_deploy.errors import SRGError
from srg_deploy.export.quantize import keep_float, quantizable_layers

if TYPE_CHECKING:
    from srg_deploy.datasets import VGSGGDataset

RANKING_FRAMES = 2  # frames for the per-layer error: the ranking needs an order, not a precise figure
TASK_FOR_MODE = {"boxes": "predcls", "sgdet": "sgdet"}
METRIC_K = "50"


@dataclass
class Trial:
    float_layers: int
    recall: dict[str, float]  # R@K of this variant, K as a string ("20", "50", "100")
    drop: float  # fp32 R@50 - this R@50


@dataclass
class Controlled:
    """The chosen model and how it was found."""

    proto: onnx.ModelProto
    float_layers: list[str]
    reference: dict[str, float]  # fp32 R@K
    chosen: Trial
    trials: list[Trial] = field(default_factory=list)


def layer_costs(
    fp32: onnx.ModelProto, qdq: onnx.ModelProto, cases: Sequence[dict[str, np.ndarray]]
) -> dict[str, float]:
    """Quantizable layer -> the relative squared error it adds (output's minus input's), averaged over `cases`."""
    nodes = {n.name: n for n in fp32.graph.node}
    layers = quantizable_layers(fp32)
    tensors = sorted({name for layer in layers for name in (nodes[layer].input[0], nodes[layer].output[0])})
    runs = [_tensors(model, tensors, cases[:RANKING_FRAMES]) for model in (fp32, qdq)]
    costs = {}
    for layer in layers:
        x, y = nodes[layer].input[0], nodes[layer].output[0]
        added = [_rel_error(q[y], f[y]) - _rel_error(q[x], f[x]) for f, q in zip(*runs)]
        costs[layer] = float(np.mean(added))
    return costs


def _rel_error(got: np.ndarray, ref: np.ndarray) -> float:
    denominator = float(np.sum(np.square(ref, dtype=np.float64)))
    return float(np.sum(np.square(got - ref, dtype=np.float64))) / denominator if denominator > 0 else 0.0


def _tensors(proto: onnx.ModelProto, names: Sequence[str], cases) -> list[dict[str, np.ndarray]]:
    """Run `proto` in ONNX Runtime with `names` added as outputs; one dict per case."""
    import onnxruntime as ort

    model = onnx.ModelProto()
    model.CopyFrom(proto)
    present = {o.name for o in model.graph.output}
    model.graph.output.extend(
        onnx.helper.make_tensor_value_info(n, onnx.TensorProto.FLOAT, None) for n in names if n not in present
    )
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return [dict(zip(names, session.run(list(names), case))) for case in cases]


def recall_of(
    proto: onnx.ModelProto, dataset: VGSGGDataset, task: str, on_image: Callable[[int], None] | None = None
) -> dict[str, float]:
    """R@K of `proto` on `dataset` through ONNX Runtime, as `srg-deploy eval` measures it."""
    from srg_deploy.runtime.evaluate import evaluate  # the datasets layer (h5py) only when accuracy is measured
    from srg_deploy.runtime.ort_backend import OrtBackend

    with tempfile.TemporaryDirectory(prefix="srg-accuracy-") as tmp:
        path = Path(tmp) / "model.onnx"
        path.write_bytes(proto.SerializeToString())
        backend = OrtBackend(path)
        try:
            return evaluate(dataset, [(str(path), backend)], task, on_image=on_image)[0]["recall"]
        finally:
            backend.close()


def control_accuracy(
    fp32: onnx.ModelProto,
    qdq: onnx.ModelProto,
    mode: str,
    dataset: VGSGGDataset,
    cases: Sequence[dict[str, np.ndarray]],
    max_drop: float,
    max_float: int | None = None,
    on_step: Callable[[str], Callable[[int], None] | None] | None = None,
) -> Controlled:
    """The fewest top-ranked layers in float that keep fp32 R@50 - int8 R@50 <= `max_drop` on `dataset`, at most
    `max_float` of them (default: half the quantized layers); SRGError naming the best drop reached otherwise.
    `on_step(label)` may return a per-image callback for that evaluation pass (a progress bar)."""
    task = TASK_FOR_MODE[mode]
    if max_drop < 0:
        raise SRGError(f"--max-drop must be 0 or more (an absolute R@50 drop, e.g. 0.01); got {max_drop}")
    layers = quantizable_layers(fp32)
    limit = len(layers) // 2 if max_float is None else min(max_float, len(layers))

    def step(label: str):
        return on_step(label) if on_step else None

    reference = recall_of(fp32, dataset, task, step("fp32 reference"))
    trials: dict[int, tuple[Trial, onnx.ModelProto]] = {}
    ranking: list[str] = []

    def trial(k: int) -> Trial:
        if k not in trials:
            proto = keep_float(qdq, fp32, ranking[:k]) if k else qdq
            recall = recall_of(proto, dataset, task, step(f"int8, {k} layer{'s' if k != 1 else ''} in float"))
            trials[k] = (Trial(k, recall, reference[METRIC_K] - recall[METRIC_K]), proto)
        return trials[k][0]

    def controlled(k: int) -> Controlled:
        ordered = [trials[n][0] for n in sorted(trials)]
        return Controlled(trials[k][1], ranking[:k], reference, trials[k][0], ordered)

    if trial(0).drop <= max_drop:
        return controlled(0)
    if limit:
        costs = layer_costs(fp32, qdq, cases)
        ranking = sorted(layers, key=lambda name: -costs[name])
    passing, failing, k = None, 0, 1
    while k <= limit:
        if trial(k).drop <= max_drop:
            passing = k
            break
        failing = k
        if k == limit:
            break
        k = min(2 * k, limit)
    if passing is None:
        best = min((t for t, _ in trials.values()), key=lambda t: t.drop)
        raise SRGError(
            f"INT8 cannot keep the R@{METRIC_K} drop within {max_drop:g} on {dataset.split}: the best reached was"
            f" {best.drop:.4f} ({reference[METRIC_K]:.4f} -> {best.recall[METRIC_K]:.4f}) with {best.float_layers}"
            f" of {len(layers)} layers in float (at most {limit} tried); raise --max-drop or --max-float-layers"
        )
    while passing - failing > 1:
        middle = (passing + failing) // 2
        if trial(middle).drop <= max_drop:
            passing = middle
        else:
            failing = middle
    return controlled(passing)
