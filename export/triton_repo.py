"""A Triton Inference Server model repository for an exported model: `DIR/NAME/config.pbtxt` and `DIR/NAME/1/...`,
served by the platform asked for (`--model-platform`), and optionally the image-to-scene-graph ensemble
(`export/triton_ensemble.py`).

Everything a config says comes from the model file itself, so the config cannot drift from the model: names,
dtypes and dims from the ONNX graph's inputs/outputs, or from the engine sidecar's `io` (which `build-engine` wrote
from the same ONNX with the same `io_spec`). Our tensors have no batch dimension (`image` is [1,3,H,W], boxes and
pairs are per frame), so `max_batch_size: 0` and the dims are the full shapes, with -1 for every dynamic axis.

Platforms (what the server must have is written in each config's header):
- onnxruntime: `onnxruntime_onnx`. ONNX Runtime inlines the model-local function `srg.roi_pool` (a MaxRoiPool), so
  the server needs no custom-op library.
- tensorrt: `tensorrt_plan`. The RoI pooling plugin is compiled into the plan (TensorRT's AOT Python plugins, 10.9+),
  so the server needs no plugin library and no Python; a plan runs only under the TensorRT version and on the GPU
  architecture it was built for, which the config's header states (from the sidecar).
- openvino: Triton's OpenVINO backend reading `model.onnx` with `srg.roi_pool` inlined (OpenVINO's ONNX frontend
  does not expand model-local functions; the MaxRoiPool inside maps to its ROIPooling).
- python: srg-deploy's own runtime in Triton's python backend (`runtime/triton_python.py`), for servers that have
  only that backend; the server's Python must have srg-deploy installed.

Imports: onnx, json and the light `engine`/`tensorrt_env` helpers (no torch, no TensorRT), so a serving machine can
build its repository with the runtime install.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from srg_deploy.contract import read_metadata
from srg_deploy.errors import SRGError
from srg_deploy.export.engine import io_spec
from srg_deploy.export.triton_config import KINDS, TRITON_TYPES, ModelEntry, TensorConfig, config_pbtxt
from srg_deploy.tensorrt_env import read_sidecar, sidecar_path

VERSION = "1"
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")
PLATFORMS = ("onnxruntime", "tensorrt", "openvino", "python")
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")  # a model name is a folder name and appears in URLs
TENSOR_NAME = re.compile(r"[A-Za-z0-9_.:/-]+")
NO_BATCH_NOTE = (
    "No batch dimension (max_batch_size 0): one frame per request, image [1,3,H,W], boxes [N,4], pairs [P,2]."
)
REQUEST_AXIS_NOTE = (
    "An ensemble step: one frame per request, each tensor with a leading request axis of 1 that `reshape` removes."
)
# What Triton 24.10 (tritonserver 2.51.0) pairs with, from its release build map (server build.py) and notes.
SERVER_VERSIONS = "Triton 24.10 (tritonserver 2.51.0) ships ONNX Runtime 1.19.2, TensorRT 10.x and OpenVINO 2024.4."
PYTHON_NOTE = (
    "The server's Python (its python backend stub's interpreter) needs `pip install srg-deploy[cpu]`; with Triton"
    " 24.10-24.11 also numpy<2 (their python backend passes zeroed tensors under numpy 2, python_backend#384)."
)


@dataclass(frozen=True)
class ModelFile:
    """What an exported model says about itself: the file, its I/O, mode, checkpoint config and provenance."""

    path: Path
    is_engine: bool
    mode: str
    config: dict
    io: dict
    summary: str  # one line for the config header
    proto: onnx.ModelProto | None = None  # ONNX only


def read_model(model: Path) -> ModelFile:
    """An exported `.onnx` or a built `.engine`, read for its I/O and metadata; refuses anything else in one line."""
    model = Path(model)
    if not model.exists():
        raise SRGError(f"model {model} does not exist")
    if model.is_dir():
        raise SRGError(
            f"{model} is a checkpoint folder; Triton serves exported models: `srg-deploy export {model} -o model.onnx`"
            " first (and `build-engine` for TensorRT)"
        )
    suffix = model.suffix.lower()
    if suffix == ".onnx":
        return _read_onnx(model)
    if suffix in ENGINE_SUFFIXES:
        return _read_engine(model)
    raise SRGError(
        f"cannot serve {model}: expected an .onnx file from `srg-deploy export` or an .engine from `build-engine`"
    )


def _read_onnx(model: Path) -> ModelFile:
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
    summary = (
        f"srg-deploy export-triton: {model.name}, {meta['mode']} mode, {meta.get('precision', 'fp32')}, ONNX opset "
        f"{opset}, IR {proto.ir_version}."
    )
    return ModelFile(model, False, meta["mode"], json.loads(meta["config"]), io_spec(proto), summary, proto)


def _read_engine(model: Path) -> ModelFile:
    sidecar = read_sidecar(model)
    if "io" not in sidecar:
        raise SRGError(f"{sidecar_path(model)} has no `io` section; rebuild the engine with `srg-deploy build-engine`")
    gpu = sidecar.get("gpu", {})
    summary = (
        f"srg-deploy export-triton: {model.name}, {sidecar.get('mode')} mode, {sidecar.get('precision', 'fp32')},"
        f" built with TensorRT {sidecar.get('tensorrt_version', '?')} for {gpu.get('name', '?')} (compute capability"
        f" {gpu.get('compute_capability', '?')})."
    )
    return ModelFile(model, True, str(sidecar.get("mode")), sidecar["config"], sidecar["io"], summary)


def default_platform(model: ModelFile) -> str:
    return "tensorrt" if model.is_engine else "onnxruntime"


def entry_for(
    model: Path | ModelFile,
    name: str | None = None,
    instances: int = 1,
    kind: str | None = None,
    platform: str | None = None,
) -> ModelEntry:
    """The repository entry serving `model` on `platform` (default: onnxruntime for ONNX, tensorrt for engines)."""
    info = model if isinstance(model, ModelFile) else read_model(model)
    name = info.path.stem if name is None else name
    check_name(name)
    if instances < 1:
        raise SRGError(f"--instances must be at least 1; got {instances}")
    if kind is not None and kind not in KINDS:
        raise SRGError(f"--kind must be cpu or gpu; got {kind!r}")
    platform = platform or default_platform(info)
    if platform not in PLATFORMS:
        raise SRGError(f"--model-platform must be one of {', '.join(PLATFORMS)}; got {platform!r}")
    kind = kind or ("gpu" if info.is_engine else "cpu")
    if info.is_engine and kind != "gpu":
        raise SRGError(f"{info.path} is a TensorRT engine, which runs on a GPU only: drop --kind cpu")
    if info.is_engine and platform in ("onnxruntime", "openvino"):
        raise SRGError(f"--model-platform {platform} serves an .onnx file; {info.path} is a TensorRT engine")
    if not info.is_engine and platform == "tensorrt":
        raise SRGError(
            f"--model-platform tensorrt serves a TensorRT engine: `srg-deploy build-engine {info.path}` first"
        )
    build = {"onnxruntime": _onnxruntime, "tensorrt": _tensorrt, "openvino": _openvino, "python": _python}[platform]
    return build(info, name, instances, kind)


def check_name(name: str) -> None:
    if not NAME.fullmatch(name):
        raise SRGError(f"--name {name!r} is not a usable model name: letters, digits, '_', '.', '-' (a folder name)")


def _onnxruntime(info: ModelFile, name: str, instances: int, kind: str) -> ModelEntry:
    opset = next(o.version for o in info.proto.opset_import if o.domain in ("", "ai.onnx"))
    notes = (
        info.summary,
        "ONNX Runtime inlines the model-local function srg.roi_pool (a MaxRoiPool), so no custom-op library is needed.",
        f"The server's ONNX Runtime must support opset {opset} and model-local functions. {SERVER_VERSIONS}",
        NO_BATCH_NOTE,
    )
    return _entry(info, name, "onnxruntime_onnx", kind, instances, notes, {"model.onnx": info.path})


def _tensorrt(info: ModelFile, name: str, instances: int, kind: str) -> ModelEntry:
    sidecar = read_sidecar(info.path)
    version = sidecar.get("tensorrt_version", "?")
    capability = sidecar.get("gpu", {}).get("compute_capability", "?")
    notes = (
        info.summary,
        f"The server must run TensorRT {version} exactly (the tritonserver release that ships it) on a GPU of compute"
        f" capability {capability}; a plan built for another version or GPU does not load. {SERVER_VERSIONS}",
        "The srg::roi_pool plugin is compiled into the plan (AOT), so the server needs no plugin library and no Python.",
        NO_BATCH_NOTE,
    )
    files = {"model.plan": info.path, sidecar_path(Path("model.plan")).name: sidecar_path(info.path)}
    return _entry(info, name, "tensorrt_plan", kind, instances, notes, files)


def _openvino(info: ModelFile, name: str, instances: int, kind: str) -> ModelEntry:
    from onnx import inliner

    if kind != "cpu":
        raise SRGError("Triton's OpenVINO backend runs on Intel CPUs (KIND_CPU) in NVIDIA's images: drop --kind gpu")
    inlined = inliner.inline_selected_functions(info.proto, [("srg", "roi_pool")])
    notes = (
        info.summary,
        "model.onnx here has srg.roi_pool inlined (OpenVINO's ONNX frontend does not expand model-local functions);"
        " its MaxRoiPool becomes OpenVINO's ROIPooling (torchvision's formula).",
        f"Served by Triton's openvino backend. {SERVER_VERSIONS} Its parameters offer no f32 hint (only HINT_BF16):"
        " CPUs with AMX or AVX512-BF16 compute in bf16 by OpenVINO's default, box coordinates included.",
        NO_BATCH_NOTE,
    )
    return _entry(info, name, "openvino", kind, instances, notes, {"model.onnx": inlined.SerializeToString()})


def _python(info: ModelFile, name: str, instances: int, kind: str) -> ModelEntry:
    model_file = "model.plan" if info.is_engine else "model.onnx"
    files: dict[str, Path | bytes] = {
        "model.py": python_model_source("SceneGraphModel", "the model on srg-deploy's runtime"),
        model_file: info.path,
        "srg_deploy.json": json.dumps({"model": model_file}).encode(),
    }
    if info.is_engine:
        files[sidecar_path(Path(model_file)).name] = sidecar_path(info.path)
    runtime = "TensorRT (srg-deploy[trt])" if info.is_engine else "ONNX Runtime"
    notes = (
        info.summary,
        f"Served by Triton's python backend: srg-deploy's runtime ({runtime}) inside the server's python stub.",
        PYTHON_NOTE,
        NO_BATCH_NOTE,
    )
    return _entry(info, name, "python", kind, instances, notes, files)


def python_model_source(cls: str, what: str) -> bytes:
    """A python-backend model.py: one import of srg-deploy's own model class (runtime/triton_python.py)."""
    return (
        f'"""Written by srg-deploy export-triton: {what}. The code is srg-deploy\'s own."""\n\n'
        f"from srg_deploy.runtime.triton_python import {cls} as TritonPythonModel  # noqa: F401\n"
    ).encode()


def _entry(
    info: ModelFile, name: str, platform: str, kind: str, count: int, notes: tuple[str, ...], files: dict
) -> ModelEntry:
    return ModelEntry(
        name=name,
        platform=platform,
        kind=KINDS[kind],
        count=count,
        inputs=tuple(_tensor(t, info.path) for t in info.io["inputs"]),
        outputs=tuple(_tensor(t, info.path) for t in info.io["outputs"]),
        notes=notes,
        files=files,
    )


def with_request_axis(entry: ModelEntry) -> ModelEntry:
    """The model as an ensemble step between batching python steps: every tensor they exchange carries a leading
    request axis of 1, so each input and output without one gets it in `dims`, and `reshape` gives the model its own
    shape back (Triton reshapes both ways)."""

    def add(t: TensorConfig) -> TensorConfig:
        if t.dims[:1] == (1,):  # image [1,3,H,W]: its 1 is the request axis already
            return t
        return replace(t, dims=(1, *t.dims), reshape=t.dims)

    notes = tuple(REQUEST_AXIS_NOTE if note == NO_BATCH_NOTE else note for note in entry.notes)
    return replace(entry, inputs=tuple(map(add, entry.inputs)), outputs=tuple(map(add, entry.outputs)), notes=notes)


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


def write_repository(entries: list[ModelEntry], repository: Path) -> list[Path]:
    """Add `entries` to the repository at `repository` (created if missing); returns their folders.

    Each model is built in a hidden temporary folder inside the repository and renamed into place, so the server
    (which may be polling the repository) never sees a half-written model; a failure removes what this call wrote."""
    repository = Path(repository)
    _check_repository(repository)
    for entry in entries:
        if (repository / entry.name).exists():
            raise SRGError(
                f"{repository / entry.name} already exists; choose another --name or remove that model first"
            )
    created = not repository.exists()
    repository.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    try:
        for entry in entries:
            written.append(_write_model(entry, repository))
    except BaseException:
        for folder in written:
            shutil.rmtree(folder, ignore_errors=True)
        if created and not any(repository.iterdir()):
            repository.rmdir()
        raise
    return written


def _write_model(entry: ModelEntry, repository: Path) -> Path:
    target = repository / entry.name
    tmp = repository / f".{entry.name}.{secrets.token_hex(6)}.tmp"
    try:
        (tmp / VERSION).mkdir(parents=True)
        for filename, source in entry.files.items():
            if isinstance(source, bytes):
                (tmp / VERSION / filename).write_bytes(source)
            else:
                shutil.copyfile(source, tmp / VERSION / filename)
        (tmp / "config.pbtxt").write_text(config_pbtxt(entry))
        os.rename(tmp, target)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
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


def describe(entries: list[ModelEntry], targets: list[Path]) -> list[str]:
    """What was written and how to serve it, for the command's output."""
    lines = []
    for entry, target in zip(entries, targets):
        files = ", ".join(f"{VERSION}/{name}" for name in entry.files)
        where = (
            f"{entry.count} x {entry.kind}"
            if not entry.steps
            else "steps " + " -> ".join(s.model_name for s in entry.steps)
        )
        lines += [
            f"wrote {target}/: config.pbtxt ({entry.platform}, {where})" + (f", {files}" if files else ""),
            f"  inputs: {', '.join(_shape(t) for t in entry.inputs)}",
            f"  outputs: {', '.join(_shape(t) for t in entry.outputs)}",
        ]
    lines.append(f"serve it: tritonserver --model-repository {targets[0].parent}")
    notes = dict.fromkeys(note for entry in entries for note in entry.notes[1:])
    return lines + [f"note: {note}" for note in notes]


def _shape(t: TensorConfig) -> str:
    return f"{t.name} {t.data_type.removeprefix('TYPE_')} [{','.join(str(d) for d in t.dims)}]"
