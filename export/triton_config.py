"""Triton's model configuration (`config.pbtxt`, the ModelConfig protobuf in text format), written from plain data.

A model of a repository is a `ModelEntry`: what its config says and which files its version folder holds. The text
is produced by one small writer (`pbtxt`) from nested dicts and lists, so every config of a repository (a model,
a python-backend step, an ensemble) is spelled the same way; the tests parse it with Triton's own schema.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

KINDS = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
# numpy dtype name -> Triton model-config data type (Triton's model_configuration.md, "Datatypes").
TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "int8": "TYPE_INT8",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "object": "TYPE_STRING",  # Triton's BYTES: numpy object arrays of bytes
}


class Enum(str):
    """A protobuf enum value (TYPE_FP32, KIND_CPU): written without quotes."""


@dataclass(frozen=True)
class TensorConfig:
    """One input or output. `reshape` is the shape the model itself sees when it differs from `dims` (Triton reshapes
    between the two); `ragged` lets the dynamic batcher put requests of different shapes in one batch."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    reshape: tuple[int, ...] | None = None
    ragged: bool = False

    def to_dict(self) -> dict:
        d: dict = {"name": self.name, "data_type": Enum(self.data_type), "dims": list(self.dims)}
        if self.reshape is not None:
            d["reshape"] = {"shape": list(self.reshape)}
        if self.ragged:
            d["allow_ragged_batch"] = True
        return d


@dataclass(frozen=True)
class Step:
    """One step of an ensemble: the model, its inputs and outputs mapped to the ensemble's tensor names."""

    model_name: str
    input_map: dict[str, str]
    output_map: dict[str, str]


@dataclass(frozen=True)
class ModelEntry:
    """One model of a repository, ready to write. `platform` is Triton's `platform` (onnxruntime_onnx, tensorrt_plan,
    ensemble) or, for backends named by `backend` (python, openvino), the backend's name."""

    name: str
    platform: str
    kind: str
    count: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    notes: tuple[str, ...]  # the config's comment header: what the server needs
    files: dict[str, Path | bytes] = field(default_factory=dict)  # version folder: file name -> source or content
    max_batch_size: int = 0
    dynamic_batching: bool = False
    steps: tuple[Step, ...] = ()

    @property
    def uses_backend_field(self) -> bool:
        return self.platform in ("python", "openvino")

    @property
    def filename(self) -> str | None:
        """The file Triton loads (the python backend's is model.py), or None for an ensemble."""
        return next(iter(self.files), None)


def config_pbtxt(entry: ModelEntry) -> str:
    """The entry's config.pbtxt: Triton's ModelConfig in protobuf text format, comment header first."""
    config: dict = {"name": entry.name}
    config["backend" if entry.uses_backend_field else "platform"] = entry.platform
    config["max_batch_size"] = entry.max_batch_size
    config["input"] = [t.to_dict() for t in entry.inputs]
    config["output"] = [t.to_dict() for t in entry.outputs]
    if entry.steps:
        config["ensemble_scheduling"] = {
            "step": [
                {
                    "model_name": step.model_name,
                    "model_version": -1,
                    "input_map": [{"key": k, "value": v} for k, v in step.input_map.items()],
                    "output_map": [{"key": k, "value": v} for k, v in step.output_map.items()],
                }
                for step in entry.steps
            ]
        }
    else:
        config["instance_group"] = [{"count": entry.count, "kind": Enum(entry.kind)}]
        config["default_model_filename"] = entry.filename
    if entry.dynamic_batching:
        config["dynamic_batching"] = {}
    lines = [f"# {note}" for note in entry.notes]
    return "\n".join([*lines, *pbtxt(config)]) + "\n"


def pbtxt(message: dict, indent: str = "") -> list[str]:
    """Protobuf text format of `message`: dicts are messages, lists of dicts repeated messages, lists of numbers
    repeated scalars, `Enum` values bare words, str quoted (JSON escaping is valid text-format escaping)."""
    lines = []
    for key, value in message.items():
        if isinstance(value, dict):
            lines += [f"{indent}{key} {{", *pbtxt(value, indent + "  "), f"{indent}}}"]
        elif isinstance(value, list) and value and isinstance(value[0], dict):
            lines.append(f"{indent}{key} [")
            for k, item in enumerate(value):
                close = "}," if k < len(value) - 1 else "}"
                lines += [f"{indent}  {{", *pbtxt(item, indent + "    "), f"{indent}  {close}"]
            lines.append(f"{indent}]")
        elif isinstance(value, list):
            lines.append(f"{indent}{key}: [ {', '.join(str(v) for v in value)} ]")
        elif isinstance(value, bool):
            lines.append(f"{indent}{key}: {'true' if value else 'false'}")
        elif isinstance(value, Enum | int):
            lines.append(f"{indent}{key}: {value}")
        else:
            lines.append(f"{indent}{key}: {json.dumps(str(value))}")
    return lines
