"""The model's I/O contract, the metadata every exported file carries and the config fingerprint (docs/DESIGN.md
§3).

Where the exporter (which needs torch) and the runtime (which must not) agree on names, dtypes, ranks and dynamic
axes, and on when two configs run the same model. numpy only.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

FEATURE_DIM = 2048  # pool5: ResNet-101 res5 output channels
MODES = ("boxes", "sgdet")
DISCRETE_OUTPUTS = ("labels", "pairs")  # sgdet outputs compared for equality, not by tolerance
# The config entries that decide the computation (two configs equal on these run the same model up to weights).
COMPUTATION_KEYS = ("architecture", "preprocessing", "detector", "objects", "predicates")
METADATA_PREFIX = "srg_deploy."  # ONNX metadata_props keys: srg_deploy.mode, .config, .precision, .max_pairs


@dataclass(frozen=True)
class TensorSpec:
    """One input or output: name, dtype, rank and the names of its dynamic axes (axis -> name)."""

    name: str
    dtype: np.dtype
    rank: int
    dynamic: Mapping[int, str]

    def describe(self) -> str:
        return f"{self.name} {np.dtype(self.dtype).name} rank {self.rank}"


def _spec(name: str, dtype: type, rank: int, **dynamic: str) -> TensorSpec:
    return TensorSpec(name, np.dtype(dtype), rank, {int(k.removeprefix("axis")): v for k, v in dynamic.items()})


INPUTS: dict[str, tuple[TensorSpec, ...]] = {
    "boxes": (
        _spec("image", np.float32, 4, axis2="height", axis3="width"),
        _spec("boxes", np.float32, 2, axis0="num_boxes"),
        _spec("pairs", np.int64, 2, axis0="num_pairs"),
    ),
    "sgdet": (_spec("image", np.float32, 4, axis2="height", axis3="width"),),
}
OUTPUTS: dict[str, tuple[TensorSpec, ...]] = {
    "boxes": (
        _spec("features", np.float32, 2, axis0="num_boxes"),
        _spec("object_logits", np.float32, 2, axis0="num_boxes"),
        _spec("relation_logits", np.float32, 3, axis0="num_pairs"),
    ),
    "sgdet": (
        _spec("boxes", np.float32, 2, axis0="num_detections"),
        _spec("scores", np.float32, 1, axis0="num_detections"),
        _spec("labels", np.int64, 1, axis0="num_detections"),
        _spec("features", np.float32, 2, axis0="num_detections"),
        _spec("object_logits", np.float32, 2, axis0="num_detections"),
        _spec("pairs", np.int64, 2, axis0="num_pairs"),
        _spec("relation_logits", np.float32, 3, axis0="num_pairs"),
    ),
}
# Fixed sizes of the last axis: image [1,3,H,W], boxes [N,4], pairs [P,2].
FIXED_DIMS = {"image": {0: 1, 1: 3}, "boxes": {1: 4}, "pairs": {1: 2}}


def input_specs(mode: str) -> dict[str, TensorSpec]:
    return {s.name: s for s in INPUTS[mode]}


def output_names(mode: str) -> tuple[str, ...]:
    return tuple(s.name for s in OUTPUTS[mode])


def dynamic_axes(mode: str) -> dict[str, dict[int, str]]:
    """torch.onnx.export's `dynamic_axes` for `mode`."""
    return {s.name: dict(s.dynamic) for s in (*INPUTS[mode], *OUTPUTS[mode]) if s.dynamic}


def read_metadata(props: Mapping[str, str]) -> dict[str, str]:
    """The srg_deploy.* entries of an ONNX model's metadata (from onnx or from ONNX Runtime), prefix removed."""
    return {k.removeprefix(METADATA_PREFIX): v for k, v in props.items() if k.startswith(METADATA_PREFIX)}


def onnx_metadata(proto: Any) -> dict[str, str]:
    """The srg_deploy.* metadata of an exported ONNX model (an `onnx.ModelProto`, read without importing onnx),
    prefix removed: mode, config (JSON), precision, max_pairs and whatever a later step added."""
    return read_metadata({p.key: p.value for p in proto.metadata_props})


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """SHA-256 of what makes two models comparable (architecture, preprocessing, detector, vocabularies): the same
    fingerprint means the same computation up to weights. Seed, provenance and `trained` do not count."""
    canonical = json.dumps({k: config[k] for k in COMPUTATION_KEYS}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()
