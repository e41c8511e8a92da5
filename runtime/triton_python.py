"""srg-deploy's own code as Triton python-backend models: the `model.py` files `export-triton` writes are one import
of a class here, so preprocessing, the runtime and the scene graph inside the server are `infer`'s, not copies.

- `Preprocess`: encoded image bytes (+ boxes in frame pixels, boxes mode) -> the model's inputs, with the scale and
  the frame size the post-processing needs (`predictor.prepare`, as `infer` does).
- `SceneGraphModel`: the model itself on srg-deploy's runtime (ONNX Runtime, or TensorRT for an engine), for servers
  without the onnxruntime/tensorrt backends.
- `Postprocess`: the model's outputs -> `infer`'s record as JSON bytes (`predictor.record_from_outputs`).

Each request is answered on its own; a bad one (an image that does not decode, a NaN box) gets an error response
naming the problem and the others in the same batch are unaffected. Pre- and post-processing run with Triton's
batching (`max_batch_size` > 0), so every tensor they see carries a leading request axis of 1. Settings (mode,
checkpoint config, model file) come from `srg_deploy.json` beside `model.py`, written from the model's own metadata.

`triton_python_backend_utils` exists only inside the server's python stub; it is imported when a model starts.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.errors import SRGError
from srg_deploy.inputs import decode_image, parse_boxes
from srg_deploy.runtime.predictor import Prepared, prepare, record_from_outputs

SETTINGS = "srg_deploy.json"
TOP_K = 20  # `infer`'s default


class _PythonModel(ABC):
    """The python backend's TritonPythonModel protocol: `initialize(args)`, `execute(requests)`; subclasses map one
    request's named arrays to named arrays in `run`."""

    def initialize(self, args: dict) -> None:
        import triton_python_backend_utils as pb_utils

        self.pb = pb_utils
        self.folder = Path(args["model_repository"]) / args["model_version"]
        self.settings = json.loads((self.folder / SETTINGS).read_text())
        self.setup()

    def setup(self) -> None:
        """Load what `run` needs once per model instance."""

    @abstractmethod
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def execute(self, requests: list) -> list:
        responses = []
        for request in requests:
            try:
                outputs = self.run({tensor.name(): tensor.as_numpy() for tensor in request.inputs()})
            except SRGError as e:
                responses.append(self.pb.InferenceResponse(error=self.pb.TritonError(str(e))))
                continue
            tensors = [self.pb.Tensor(name, np.ascontiguousarray(array)) for name, array in outputs.items()]
            responses.append(self.pb.InferenceResponse(output_tensors=tensors))
        return responses


class _Pipeline(_PythonModel):
    def setup(self) -> None:
        self.mode = self.settings["mode"]
        self.config = SRGConfig.from_dict(self.settings["config"])


class Preprocess(_Pipeline):
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        frame = decode_image(np.ascontiguousarray(inputs["image"][0], np.uint8), "the request's image")
        boxes = parse_boxes(inputs["boxes"][0].tolist(), "boxes") if self.mode == "boxes" else None
        prepared = prepare(self.config, self.mode, frame, boxes)
        outputs = {
            "model_image": prepared.inputs["image"],  # [1,3,h,w]: its 1 is the request axis
            "scale": prepared.scale[None],
            "image_size": np.array([prepared.image_size], np.int64),
        }
        if self.mode == "boxes":
            outputs["model_boxes"] = prepared.inputs["boxes"][None]
            outputs["pairs"] = prepared.inputs["pairs"][None]
        return outputs


class Postprocess(_Pipeline):
    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        one = {name: array[0] for name, array in inputs.items()}
        # `boxes` is the request's boxes (frame pixels) in boxes mode, the detected boxes (model pixels) in sgdet mode.
        width, height = (int(v) for v in one["image_size"])
        boxes = one["boxes"].astype(np.float64) if self.mode == "boxes" else None
        model_inputs = {"pairs": one["pairs"]} if self.mode == "boxes" else {}
        prepared = Prepared(model_inputs, one["scale"], (width, height), boxes)
        outputs = {name: one[name] for name in one if name not in ("image_size", "scale")}
        record = record_from_outputs(self.config, prepared, outputs, TOP_K, frame=0, source="", timestamp_ms=0.0)
        return {"scene_graph": np.array([[json.dumps(record).encode()]], dtype=np.object_)}


class SceneGraphModel(_PythonModel):
    def setup(self) -> None:
        from srg_deploy.runtime.loader import open_backend

        self.backend = open_backend(self.folder / self.settings["model"])

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.backend.run(inputs)

    def finalize(self) -> None:
        self.backend.close()
