"""Frame in, scene-graph record out, on any backend: preprocess -> backend -> scene graph (docs/DESIGN.md §3)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np

from srg_deploy import scene_graph
from srg_deploy.defaults import TOP_K
from srg_deploy.preprocess import Prepared, prepare, to_frame_pixels
from srg_deploy.runtime.backend import Backend

if TYPE_CHECKING:
    from srg_deploy.config import SRGConfig


def record_from_outputs(
    config: SRGConfig, prepared: Prepared, outputs: dict[str, np.ndarray], top_k: int | None = TOP_K, **meta: object
) -> dict:
    """Outputs of any backend -> the JSON record; boxes reported in original-frame pixels. Shared by `Predictor`
    and the Triton post-processing model, which gets `prepared` back from the pre-processing model's tensors."""
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
        object_names=config.objects,
        predicate_names=config.predicates,
        top_k=top_k,
        **meta,
    )


class Predictor:
    """Runs one backend with the shared scene-graph semantics. `max_pairs` bounds the pairs asked for in boxes
    mode (an sgdet graph bakes its own budget at export); `top_k` bounds the triplets per record."""

    def __init__(self, backend: Backend, max_pairs: int | None = None, top_k: int | None = TOP_K) -> None:
        self.backend, self.max_pairs, self.top_k = backend, max_pairs, top_k
        self.config = backend.config

    def prepare(self, frame_bgr: np.ndarray, boxes: np.ndarray | None) -> Prepared:
        return prepare(self.config, self.backend.mode, frame_bgr, boxes, self.max_pairs)

    def record(self, prepared: Prepared, outputs: dict[str, np.ndarray], **meta: object) -> dict:
        return record_from_outputs(self.config, prepared, outputs, self.top_k, **meta)

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
