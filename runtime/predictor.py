"""Frame in, scene-graph record out, on any backend: preprocess -> backend -> scene graph (docs/DESIGN.md §3)."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from srg_deploy import scene_graph
from srg_deploy.config import SRGConfig
from srg_deploy.defaults import TOP_K
from srg_deploy.errors import SRGError
from srg_deploy.preprocess import preprocess, to_frame_pixels, to_model_pixels
from srg_deploy.runtime.backend import Backend


@dataclass
class Prepared:
    """A frame ready for any backend; verification feeds the same `inputs` to two backends."""

    inputs: dict[str, np.ndarray]
    scale: np.ndarray  # original -> model pixels, [sx, sy]
    image_size: tuple[int, int]  # original (W, H)
    boxes: np.ndarray | None  # given boxes, original pixels


def prepare(
    config: SRGConfig, mode: str, frame_bgr: np.ndarray, boxes: np.ndarray | None, max_pairs: int | None = None
) -> Prepared:
    """A frame as the inputs of a `mode` model of `config`: what every backend is fed (no model needed)."""
    image, scale = preprocess(frame_bgr, config.preprocessing)
    size = (frame_bgr.shape[1], frame_bgr.shape[0])
    if mode == "sgdet":
        if boxes is not None:
            raise SRGError("this model detects its own boxes (sgdet mode); drop --boxes or use a boxes-mode model")
        return Prepared({"image": image}, scale, size, None)
    if boxes is None:
        raise SRGError("this model was exported in boxes mode and needs --boxes; export with --mode sgdet to detect")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    pairs = scene_graph.select_pairs(np.ones(len(boxes)), max_pairs)
    inputs = {"image": image, "boxes": to_model_pixels(boxes, scale), "pairs": pairs}
    return Prepared(inputs, scale, size, boxes)


class Predictor:
    """Runs one backend with the shared scene-graph semantics. `max_pairs` bounds the pairs asked for in boxes
    mode (an sgdet graph bakes its own budget at export); `top_k` bounds the triplets per record."""

    def __init__(self, backend: Backend, max_pairs: int | None = None, top_k: int | None = TOP_K) -> None:
        self.backend, self.max_pairs, self.top_k = backend, max_pairs, top_k
        self.config = backend.config

    def prepare(self, frame_bgr: np.ndarray, boxes: np.ndarray | None) -> Prepared:
        return prepare(self.config, self.backend.mode, frame_bgr, boxes, self.max_pairs)

    def record(self, prepared: Prepared, outputs: dict[str, np.ndarray], **meta: object) -> dict:
        """Outputs of any backend -> the JSON record; boxes reported in original-frame pixels."""
        if prepared.boxes is not None:
            objects = scene_graph.objects_from_logits(prepared.boxes, outputs["object_logits"])
            pairs = prepared.inputs["pairs"]
        else:
            objects = scene_graph.Objects(
                to_frame_pixels(outputs["boxes"], prepared.scale),
                outputs["scores"].astype(np.float64),
                outputs["labels"],
            )
            pairs = outputs["pairs"]
        return scene_graph.build_record(
            image_size=prepared.image_size,
            objects=objects,
            pairs=pairs,
            relation_logits=outputs["relation_logits"],
            object_names=self.config.objects,
            predicate_names=self.config.predicates,
            top_k=self.top_k,
            **meta,
        )

    def predict(
        self,
        frame_bgr: np.ndarray,
        boxes: np.ndarray | None = None,
        *,
        frame: int = 0,
        source: str = "",
        timestamp_ms: float = 0.0,
    ) -> tuple[dict, dict[str, np.ndarray]]:
        """(record, raw outputs) for one frame, with per-stage latency in the record."""
        t0 = time.perf_counter()
        prepared = self.prepare(frame_bgr, boxes)
        t1 = time.perf_counter()
        outputs = self.backend.run(prepared.inputs)
        t2 = time.perf_counter()
        latency = {"preprocess": (t1 - t0) * 1e3, "model": (t2 - t1) * 1e3}
        record = self.record(
            prepared, outputs, frame=frame, source=source, timestamp_ms=timestamp_ms, latency_ms=latency
        )
        record["latency_ms"]["postprocess"] = round((time.perf_counter() - t2) * 1e3, 3)
        return record, outputs
