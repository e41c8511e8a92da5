"""A Triton Inference Server model repository entry for an exported model: `DIR/NAME/config.pbtxt` and
`DIR/NAME/1/model.onnx` (ONNX Runtime backend) or `DIR/NAME/1/model.plan` (TensorRT backend) plus the engine's
sidecar beside it.

Everything the config says comes from the model file itself, so the config cannot drift from the model: names,
dtypes and dims from the ONNX graph's inputs/outputs, or from the engine sidecar's `io` (which `build-engine` wrote
from the same ONNX with the same `io_spec`). Our tensors have no batch dimension (`image` is [1,3,H,W], boxes and
pairs are per frame), so `max_batch_size: 0` and the dims are the full shapes, with -1 for every dynamic axis.

- ONNX: platform `onnxruntime_onnx`. ONNX Runtime inlines the model-local function `srg.roi_pool` (a MaxRoiPool),
  so the server needs no custom-op library.
- Engines: platform `tensorrt_plan`. The RoI pooling plugin is compiled into the plan (TensorRT's AOT Python
  plugins, 10.9+), so the server needs no plugin library and no Python; a plan runs only under the TensorRT version
  and on the GPU architecture it was built for, which the config's header states (from the sidecar).

Imports: onnx, json and the light `engine`/`trt_backend` helpers (no torch, no TensorRT), so a serving machine can
build its repository with the runtime install.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from srg_deploy.contract import read_metadata
from srg_deploy.errors import SRGError
from srg_deploy.export.engine import io_spec
from srg_deploy.runtime.tensorrt_env import read_sidecar, sidecar_path

VERSION = "1"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
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
}
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a model name is a folder name and appears in URLs
TENSOR_NAME = re.compile(r"[A-Za-z0-9_.:/-]+")
NO_BATCH_NOTE = (
    "No batch dimension (max_batch_size 0): one frame per request, image [1,3,H,W], boxes [N,4], pairs [P,2]."
)


@dataclass(frozen=True)
class TensorConfig:
    name: str
    data_type: str
    dims: tuple[int, ...]


@dataclass(frozen=True)
class ModelEntry:
    """One model of a repository, ready to write."""

    name: str
    platform: str
    kind: str
    count: int
    inputs: tuple[TensorConfig, ...]
    outputs: tuple[TensorConfig, ...]
    notes: tuple[str, ...]  # the config's comment header: what the server needs
    files: dict[str, Path] = field(default_factory=dict)  # file name in the version folder -> source

    @property
    def filename(self) -> str:
        return next(iter(self.files))


def entry_for(model: Path, name: str | None = None, instances: int = 1, kind: str | None = None) -> ModelEntry:
    """The repository entry for an exported `.onnx` or a built `.engine`; refuses anything else with one line."""
    model = Path(model)
    if not model.exists():
        raise SRGError(f"model {model} does not exist")
    if model.is_dir():
        raise SRGError(
            f"{model} is a checkpoint folder; Triton serves exported models: `srg-deploy export {model} -o model.onnx`"
            " first (and `build-engine` for TensorRT)"
        )
    name = model.stem if name is None else name
    if not NAME.fullmatch(name):
        raise SRGError(f"--name {name!r} is not a usable model name: letters, digits, '_', '.', '-' (a folder name)")
    if instances < 1:
        raise SRGError(f"--instances must be at least 1; got {instances}")
    if kind is not None and kind not in KINDS:
        raise SRGError(f"--kind must be cpu or gpu; got {kind!r}")
    suffix = model.suffix.lower()
    if suffix == ".onnx":
        return _onnx_entry(model, name, instances, kind or "cpu")
    if suffix in ENGINE_SUFFIXES:
        return _engine_entry(model, name, instances, kind or "gpu")
    raise SRGError(
        f"cannot serve {model}: expected an .onnx file from `srg-deploy export` or an .engine from `build-engine`"
    )


def _onnx_entry(model: Path, name: str, instances: int, kind: str) -> ModelEntry:
    try:
        proto = onnx.load(str(model), load_external_data=False)
    except Exception as e:  # protobuf raises DecodeError, onnx its own types
        raise SRGError(f"{model} is not a readable ONNX model: {_first_line(e)}") from None
    meta = read_metadata({p.key: p.value for p in proto.metadata_props})
    if "mode" not in meta or "config" not in meta:
        raise SRGError(
            f"{model} was not exported by srg-deploy (no srg_deploy.mode/config metadata): `srg-deploy export` it"
        )
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer):
        raise SRGError(f"{model} keeps its weights in external data files; export it as one file to serve it")
    opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), "?")
    notes = (
        f"srg-deploy export-triton: {model.name}, {meta['mode']} mode, {meta.get('precision', 'fp32')}, ONNX opset "
        f"{opset}, IR {proto.ir_version}.",
        "ONNX Runtime inlines the model-local function srg.roi_pool (a MaxRoiPool), so no custom-op library is needed.",
        f"The server's ONNX Runtime must support opset {opset} and model-local functions.",
        NO_BATCH_NOTE,
    )
    io = io_spec(proto)
    return _entry(name, "onnxruntime_onnx", kind, instances, io, notes, {"model.onnx": model}, model)


def _engine_entry(model: Path, name: str, instances: int, kind: str) -> ModelEntry:
    if kind != "gpu":
        raise SRGError(f"{model} is a TensorRT engine, which runs on a GPU only: drop --kind cpu")
    sidecar = read_sidecar(model)
    if "io" not in sidecar:
        raise SRGError(f"{sidecar_path(model)} has no `io` section; rebuild the engine with `srg-deploy build-engine`")
    gpu = sidecar.get("gpu", {})
    version = sidecar.get("tensorrt_version", "?")
    capability = gpu.get("compute_capability", "?")
    notes = (
        f"srg-deploy export-triton: {model.name}, {sidecar.get('mode')} mode, {sidecar.get('precision', 'fp32')},"
        f" built with TensorRT {version} for {gpu.get('name', '?')} (compute capability {capability}).",
        f"The server must run TensorRT {version} exactly (the tritonserver release that ships it) on a GPU of compute"
        f" capability {capability}; a plan built for another version or GPU does not load.",
        "The srg::roi_pool plugin is compiled into the plan (AOT), so the server needs no plugin library and no Python.",
        NO_BATCH_NOTE,
    )
    files = {"model.plan": model, sidecar_path(Path("model.plan")).name: sidecar_path(model)}
    return _entry(name, "tensorrt_plan", kind, instances, sidecar["io"], notes, files, model)


def _entry(
    name: str, platform: str, kind: str, count: int, io: dict, notes: tuple[str, ...], files: dict, model: Path
) -> ModelEntry:
    return ModelEntry(
        name=name,
        platform=platform,
        kind=KINDS[kind],
        count=count,
        inputs=tuple(_tensor(t, model) for t in io["inputs"]),
        outputs=tuple(_tensor(t, model) for t in io["outputs"]),
        notes=notes,
        files=files,
    )


def _tensor(spec: dict, model: Path) -> TensorConfig:
    name, dtype, shape = str(spec["name"]), str(spec["dtype"]), list(spec["shape"])
    if not TENSOR_NAME.fullmatch(name):
        raise SRGError(f"{model}: tensor name {name!r} cannot be written in a Triton config")
    if dtype not in TRITON_TYPES:
        raise SRGError(f"{model}: tensor {name!r} is {dtype}, which Triton has no model-config type for")
    if not shape:
        raise SRGError(f"{model}: tensor {name!r} is a scalar; Triton needs every tensor to have rank >= 1")
    # A named (symbolic) or unknown axis is dynamic: -1. Our contract has no axis of fixed size 0.
    dims = tuple(d if isinstance(d, int) and d > 0 else -1 for d in shape)
    return TensorConfig(name, TRITON_TYPES[dtype], dims)


def config_pbtxt(entry: ModelEntry) -> str:
    """The entry's config.pbtxt: Triton's ModelConfig in protobuf text format, comment header first."""

    def tensors(field_name: str, items: tuple[TensorConfig, ...]) -> list[str]:
        lines = [f"{field_name} ["]
        for k, t in enumerate(items):
            lines += [
                "  {",
                f'    name: "{t.name}"',
                f"    data_type: {t.data_type}",
                f"    dims: [ {', '.join(str(d) for d in t.dims)} ]",
                "  }" + ("," if k < len(items) - 1 else ""),
            ]
        return [*lines, "]"]

    lines = [f"# {note}" for note in entry.notes]
    lines += [
        f'name: "{entry.name}"',
        f'platform: "{entry.platform}"',
        "max_batch_size: 0",
        *tensors("input", entry.inputs),
        *tensors("output", entry.outputs),
        "instance_group [",
        "  {",
        f"    count: {entry.count}",
        f"    kind: {entry.kind}",
        "  }",
        "]",
        f'default_model_filename: "{entry.filename}"',
    ]
    return "\n".join(lines) + "\n"


def write_repository(entry: ModelEntry, repository: Path) -> Path:
    """Add `entry` to the repository at `repository` (created if missing); returns the model's folder.

    Built in a hidden temporary folder inside the repository and renamed into place, so the server (which may be
    polling the repository) never sees a half-written model, and a failure leaves nothing behind."""
    repository = Path(repository)
    _check_repository(repository)
    target = repository / entry.name
    if target.exists():
        raise SRGError(f"{target} already exists; choose another --name or remove that model first")
    created = not repository.exists()
    repository.mkdir(parents=True, exist_ok=True)
    tmp = repository / f".{entry.name}.{secrets.token_hex(6)}.tmp"
    try:
        (tmp / VERSION).mkdir(parents=True)
        for filename, source in entry.files.items():
            shutil.copyfile(source, tmp / VERSION / filename)
        (tmp / "config.pbtxt").write_text(config_pbtxt(entry))
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if created and not any(repository.iterdir()):
            repository.rmdir()
        raise
    return target


def _check_repository(repository: Path) -> None:
    """A new or empty folder, or one that already looks like a model repository: model folders only."""
    if not repository.exists():
        return
    if not repository.is_dir():
        raise SRGError(f"--repository {repository} is a file; expected a folder (a Triton model repository)")
    for entry in sorted(repository.iterdir()):
        if entry.name.startswith("."):
            continue
        is_model = entry.is_dir() and (
            (entry / "config.pbtxt").is_file() or any(p.is_dir() and p.name.isdigit() for p in entry.iterdir())
        )
        if not is_model:
            raise SRGError(
                f"--repository {repository} is not a Triton model repository ({entry.name} is not a model folder);"
                " use a new or empty folder, or an existing repository"
            )


def _first_line(error: BaseException) -> str:
    lines = [line for line in str(error).splitlines() if line.strip()]
    return lines[0] if lines else type(error).__name__


def describe(entry: ModelEntry, target: Path) -> list[str]:
    """What was written and how to serve it, for the command's output."""
    files = ", ".join(f"{VERSION}/{name}" for name in entry.files)
    return [
        f"wrote {target}/: config.pbtxt ({entry.platform}, {entry.count} x {entry.kind}), {files}",
        f"inputs: {', '.join(_shape(t) for t in entry.inputs)}",
        f"outputs: {', '.join(_shape(t) for t in entry.outputs)}",
        f"serve it: tritonserver --model-repository {target.parent}",
        *(f"note: {line}" for line in entry.notes[1:]),
    ]


def _shape(t: TensorConfig) -> str:
    return f"{t.name} {t.data_type.removeprefix('TYPE_')} [{','.join(str(d) for d in t.dims)}]"
