"""The field's Recall@K for any backend: dataset images through the same `Predictor` as `infer`, scored by
`SGGEvaluator` (Scene-Graph-Benchmark's sgg_eval.py). No torch here: an `.onnx` or `.engine` is evaluated on a
machine without PyTorch; a checkpoint folder brings torch in through `open_backend`.

Tasks (DESIGN.md §6): PredCls and SGCls give the model the ground-truth boxes and score every ordered pair (all
unordered pairs, both directions, as `infer` asks for them); PredCls then takes the ground-truth labels with score 1,
SGCls the object head's labels and scores (`object_scores`). SGDet takes the model's own detections, pairs and
scores from an sgdet graph, boxes converted back to original pixels. `train` scores its validation split with
`boxes_prediction` and `SGGEvaluator` too, so its R@K and `eval`'s are one computation.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from srg_deploy.datasets import Prediction, SGGEvaluator, SGGImage, VGSGGDataset, boxes_prediction
from srg_deploy.errors import SRGError
from srg_deploy.preprocess import to_frame_pixels
from srg_deploy.runtime.backend import Backend
from srg_deploy.runtime.predictor import Predictor
from srg_deploy.vocab import vocabulary_difference

TASKS = ("predcls", "sgcls", "sgdet")
BACKEND_MODE = {"predcls": "boxes", "sgcls": "boxes", "sgdet": "sgdet"}  # the graph each task needs
METRICS = ("recall", "no_graph_constraint_recall", "mean_recall", "no_graph_constraint_mean_recall")


def predict(predictor: Predictor, frame_bgr: np.ndarray, gt: SGGImage, task: str) -> Prediction:
    """One image through `predictor` as `infer` runs it (given boxes, or the model's own for SGDet)."""
    prepared = predictor.prepare(frame_bgr, None if task == "sgdet" else gt.boxes)
    outputs = predictor.backend.run(prepared.inputs)
    if task == "sgdet":
        return Prediction(
            to_frame_pixels(outputs["boxes"], prepared.scale),
            outputs["labels"].astype(np.int64),
            outputs["scores"].astype(np.float64),
            outputs["pairs"],
            outputs["relation_logits"],
        )
    return boxes_prediction(gt, task, prepared.inputs["pairs"], outputs["object_logits"], outputs["relation_logits"])


def check_model(backend: Backend, name: str, task: str, dataset: VGSGGDataset) -> None:
    """One line when `backend` cannot be scored on `dataset` for `task`: the wrong graph or another vocabulary."""
    if task not in TASKS:
        raise SRGError(f"unknown --mode {task!r}; expected one of {', '.join(TASKS)}")
    needed = BACKEND_MODE[task]
    if backend.mode != needed:
        how = "an sgdet-mode one (export --mode sgdet)" if needed == "sgdet" else "a boxes-mode one (export's default)"
        raise SRGError(
            f"{name} is {'an sgdet' if backend.mode == 'sgdet' else 'a boxes'}-mode model; {task} needs {how}"
        )
    difference = vocabulary_difference(
        backend.config.objects, backend.config.predicates, dataset.objects, dataset.predicates
    )
    if difference:
        raise SRGError(f"{name} and {dataset.root} have different vocabularies: {difference}")


@dataclass
class ModelScore:
    """One model's evaluation: its evaluator and the seconds each image took (preprocess, model, outputs)."""

    name: str
    predictor: Predictor
    evaluator: SGGEvaluator
    seconds: list[float] = field(default_factory=list)

    def result(self) -> dict:
        return {
            "model": self.name,
            "backend": self.predictor.backend.describe(),
            "precision": self.predictor.backend.precision,
            **self.evaluator.result(),
            "seconds_per_image": float(np.mean(self.seconds)) if self.seconds else 0.0,
        }


def evaluate(
    dataset: VGSGGDataset,
    models: Sequence[tuple[str, Backend]],
    task: str,
    on_image: Callable[[int], None] | None = None,
) -> list[dict]:
    """Every model on every image of `dataset`, image by image (each image is read once for all models); one
    result per model, in order, each after the first with `delta`: its metrics minus the first model's."""
    for name, backend in models:
        check_model(backend, name, task, dataset)
    scores = [
        ModelScore(name, Predictor(backend, max_pairs=None), SGGEvaluator(dataset.predicates))
        for name, backend in models
    ]
    for k in range(len(dataset)):
        gt, frame = dataset[k], dataset.read_image(k)
        for score in scores:
            started = time.perf_counter()
            prediction = predict(score.predictor, frame, gt, task)
            score.seconds.append(time.perf_counter() - started)
            score.evaluator.add(gt, prediction)
        if on_image:
            on_image(k + 1)
    results = [score.result() for score in scores]
    for result in results[1:]:
        result["delta"] = {
            metric: {k: result[metric][k] - results[0][metric][k] for k in result[metric]} for metric in METRICS
        }
    return results
