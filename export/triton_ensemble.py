"""The image-to-scene-graph ensemble: a client sends an encoded image (and boxes) and gets `infer`'s record.

    scene_graph (ensemble)
      preprocess  (python)   image bytes [1,L], boxes [1,N,4] -> model_image, model_boxes, pairs, scale, image_size
      NAME        (--model-platform: onnxruntime | tensorrt | openvino | python)   the exported model
      postprocess (python)   the model's outputs -> scene_graph: the JSON record, BYTES [1,1]

Pre- and post-processing are python-backend models whose code is srg-deploy's (`runtime/triton_python.py`), so
decoding, resizing, pair selection and the scene-graph semantics are `infer`'s. They batch (`max_batch_size` 8,
ragged inputs) and `--dynamic-batching` lets Triton's dynamic batcher hand them several requests at once; every
tensor between the steps carries a leading request axis of 1, which the model step's `reshape` removes (the model
itself has no batch axis). The client-facing shapes are the same either way. The ensemble's inputs follow the
model's mode: boxes mode takes `image` and `boxes` (float64, frame pixels), sgdet mode `image` only.
"""

from __future__ import annotations

import json

from srg_deploy.export.triton_config import ModelEntry, Step, TensorConfig
from srg_deploy.export.triton_repo import PYTHON_NOTE, entry_for, python_model_source, read_model, with_request_axis

ENSEMBLE, PREPROCESS, POSTPROCESS = "scene_graph", "preprocess", "postprocess"
STEP_BATCH = 8  # the python steps' max_batch_size: how many requests the dynamic batcher may hand over at once


def ensemble_entries(
    model, name: str | None = None, instances: int = 1, kind: str | None = None, platform: str | None = None,
    dynamic_batching: bool = False,
) -> list[ModelEntry]:  # fmt: skip
    """The model step, `preprocess`, `postprocess` and the `scene_graph` ensemble for `model`."""
    info = read_model(model)
    step = with_request_axis(entry_for(info, name=name, instances=instances, kind=kind, platform=platform))
    settings = json.dumps({"mode": info.mode, "config": info.config}).encode()
    boxes_mode = info.mode == "boxes"
    model_outputs = {t.name: t for t in step.outputs}

    pre_outputs = [
        TensorConfig("model_image", "TYPE_FP32", (3, -1, -1)),
        TensorConfig("scale", "TYPE_FP64", (2,)),
        TensorConfig("image_size", "TYPE_INT64", (2,)),
    ]
    pre_inputs = [TensorConfig("image", "TYPE_UINT8", (-1,), ragged=True)]
    if boxes_mode:
        pre_inputs.append(TensorConfig("boxes", "TYPE_FP64", (-1, 4), ragged=True))
        pre_outputs += [TensorConfig("model_boxes", "TYPE_FP32", (-1, 4)), TensorConfig("pairs", "TYPE_INT64", (-1, 2))]

    # What the record needs from the model: object logits (boxes mode) or the detections (sgdet), and relations.
    needed = ("object_logits", "relation_logits") if boxes_mode else ("boxes", "scores", "labels", "pairs")
    needed = tuple(dict.fromkeys((*needed, "relation_logits")))
    post_inputs = [TensorConfig(n, model_outputs[n].data_type, model_outputs[n].dims[1:], ragged=True) for n in needed]
    post_inputs += [TensorConfig("scale", "TYPE_FP64", (2,)), TensorConfig("image_size", "TYPE_INT64", (2,))]
    if boxes_mode:  # the request's boxes and the pairs asked for
        post_inputs += [
            TensorConfig("boxes", "TYPE_FP64", (-1, 4), ragged=True),
            TensorConfig("pairs", "TYPE_INT64", (-1, 2), ragged=True),
        ]

    def python_step(step_name: str, cls: str, what: str, inputs, outputs) -> ModelEntry:
        notes = (
            f"srg-deploy export-triton: the {what} of the {ENSEMBLE} ensemble ({info.mode} mode, {info.path.name}).",
            PYTHON_NOTE,
            f"Batching python step (max_batch_size {STEP_BATCH}): each tensor has a leading request axis of 1.",
        )
        files = {
            "model.py": python_model_source(cls, f"the {what} of the {ENSEMBLE} ensemble"),
            "srg_deploy.json": settings,
        }
        return ModelEntry(
            name=step_name, platform="python", kind="KIND_CPU", count=instances, inputs=tuple(inputs),
            outputs=tuple(outputs), notes=notes, files=files, max_batch_size=STEP_BATCH,
            dynamic_batching=dynamic_batching,
        )  # fmt: skip

    preprocess = python_step(PREPROCESS, "Preprocess", "pre-processing", pre_inputs, pre_outputs)
    postprocess = python_step(
        POSTPROCESS, "Postprocess", "post-processing", post_inputs, [TensorConfig("scene_graph", "TYPE_STRING", (1,))]
    )

    feeds = {"image": "model_image", "boxes": "model_boxes", "pairs": "pairs"}
    steps = (
        Step(PREPROCESS, {t.name: t.name for t in pre_inputs}, {t.name: t.name for t in pre_outputs}),
        Step(step.name, {t.name: feeds[t.name] for t in step.inputs}, {n: _detected(n) for n in needed}),
        Step(POSTPROCESS, {t.name: _post_source(t.name, boxes_mode) for t in post_inputs}, {"scene_graph": "scene_graph"}),
    )  # fmt: skip
    ensemble_inputs = [TensorConfig("image", "TYPE_UINT8", (1, -1))]
    if boxes_mode:
        ensemble_inputs.append(TensorConfig("boxes", "TYPE_FP64", (1, -1, 4)))
    ensemble = ModelEntry(
        name=ENSEMBLE,
        platform="ensemble",
        kind="",
        count=0,
        inputs=tuple(ensemble_inputs),
        outputs=(TensorConfig("scene_graph", "TYPE_STRING", (1, 1)),),
        notes=(
            f"srg-deploy export-triton: image in, infer's scene-graph record out (JSON bytes), {info.mode} mode.",
            f"Steps: {PREPROCESS} (python) -> {step.name} ({step.platform}) -> {POSTPROCESS} (python).",
            "Send image: the encoded file's bytes as UINT8 [1,L]"
            + ("; boxes: FP64 [1,N,4] x1,y1,x2,y2 in the image's pixels." if boxes_mode else "."),
        ),
        steps=steps,
    )
    return [step, preprocess, postprocess, ensemble]


def _detected(output: str) -> str:
    """The ensemble tensor of a model output: an sgdet model's `boxes` and `pairs` are renamed, since in boxes mode
    those names are the request's boxes and the pairs pre-processing chose."""
    return f"detected_{output}" if output in ("boxes", "pairs") else output


def _post_source(post_input: str, boxes_mode: bool) -> str:
    return post_input if boxes_mode else _detected(post_input)
