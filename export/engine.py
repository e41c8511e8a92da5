"""ONNX -> TensorRT engine (10.9+ and 11.x), strongly typed, with the srg::roi_pool plugin, plus its JSON sidecar.

Precision comes from the ONNX itself (TensorRT 11 has no FP16 builder flag; strongly typed on 10.x too): an fp32
ONNX builds an fp32 engine (TF32 off: fp32 means fp32), an fp16 ONNX from `fp16.fp16_from_onnx` an fp16 engine, an
INT8 QDQ ONNX from `quantize.int8_from_onnx` an explicitly quantized one (NVIDIA: explicit quantization goes with
strong typing and no precision flags; the Q/DQ pairs say where int8 runs, the plugin reads float tensors).
TensorRT is imported only inside these functions, so everything else works where it is missing. What the runtime
shares with the builder (TensorRT and CUDA imports, GPU identity, the sidecar format) lives in
`srg_deploy.tensorrt_env` (core), so the runtime never imports this package and this package needs no runtime.
"""

from __future__ import annotations

import datetime
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import onnx

from srg_deploy import defaults
from srg_deploy.contract import onnx_metadata
from srg_deploy.errors import SRGError
from srg_deploy.plugins.spec import ATTRIBUTES, PLUGIN_ID, PLUGIN_VERSION
from srg_deploy.tensorrt_env import (
    SIDECAR_FORMAT,
    check_plugin_api,
    driver_cuda_version,
    gpu_identity,
    import_cudart,
    import_tensorrt,
    ptx_isa_text,
)


def _hw(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.split("x"))
    return height, width


@dataclass(frozen=True)
class Profile:
    """One optimization profile: image height/width bounds and the box/pair counts (min is always 0)."""

    min_hw: tuple[int, int] = _hw(defaults.ENGINE_MIN_SIZE)
    opt_hw: tuple[int, int] = _hw(defaults.ENGINE_OPT_SIZE)
    max_hw: tuple[int, int] = _hw(defaults.ENGINE_MAX_SIZE)
    opt_boxes: int = defaults.ENGINE_OPT_BOXES
    max_boxes: int = defaults.ENGINE_MAX_BOXES
    opt_pairs: int = defaults.ENGINE_OPT_PAIRS
    max_pairs: int = defaults.ENGINE_MAX_PAIRS

    def shapes(self, mode: str) -> dict[str, tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
        """Input name -> (min, opt, max) shapes."""
        if not (
            self.min_hw[0] <= self.opt_hw[0] <= self.max_hw[0] and self.min_hw[1] <= self.opt_hw[1] <= self.max_hw[1]
        ):
            raise SRGError(
                f"image sizes must satisfy min <= opt <= max; got {self.min_hw}, {self.opt_hw}, {self.max_hw}"
            )
        if not (self.opt_boxes <= self.max_boxes and self.opt_pairs <= self.max_pairs):
            raise SRGError("--max-boxes/--max-pairs must be at least their opt values")
        shapes = {"image": ((1, 3, *self.min_hw), (1, 3, *self.opt_hw), (1, 3, *self.max_hw))}
        if mode == "boxes":
            shapes["boxes"] = ((0, 4), (self.opt_boxes, 4), (self.max_boxes, 4))
            shapes["pairs"] = ((0, 2), (self.opt_pairs, 2), (self.max_pairs, 2))
        return shapes


def onnx_for_tensorrt(proto: onnx.ModelProto) -> bytes:
    """The model without its local functions: TensorRT must map each srg::roi_pool node to the registered plugin
    (the function body, MaxRoiPool, is for ONNX Runtime and is not a TensorRT op)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    del copy.functions[:]
    return copy.SerializeToString()


@dataclass(frozen=True)
class PluginBuild:
    """How an engine runs srg::roi_pool: the kernel compiled into it ("aot", with its PTX ISA, e.g. 85) or a call
    back into Python ("jit", TensorRT 10.6-10.8). The runtime imports the plugin module for JIT engines only."""

    implementation: str
    ptx_isa: int | None


def engine_from_onnx(
    proto: onnx.ModelProto,
    mode: str,
    profile: Profile,
    *,
    timing_cache: Path | None = None,
    opt_level: int | None = None,
) -> tuple[bytes, PluginBuild]:
    """Parse, configure and build; returns the serialized engine and how its plugin runs. Errors name the failing
    node or setting."""
    trt = import_tensorrt()
    check_plugin_api(trt.__version__)
    from srg_deploy.plugins import trt_plugin  # registers srg::roi_pool before parsing

    trt_plugin.compiled_kernels.clear()
    trt_plugin.refusals.clear()

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)  # ignored (always on) in 11.x
    if hasattr(trt.NetworkDefinitionCreationFlag, "PREFER_AOT_PYTHON_PLUGINS"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.PREFER_AOT_PYTHON_PLUGINS)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_for_tensorrt(proto)):
        errors = "; ".join(str(parser.get_error(k)) for k in range(min(parser.num_errors, 3)))
        raise SRGError(f"TensorRT's ONNX parser rejected the model: {errors}")
    config = builder.create_builder_config()
    if hasattr(trt.BuilderFlag, "TF32"):
        config.clear_flag(trt.BuilderFlag.TF32)
    if opt_level is not None:
        if not 0 <= opt_level <= 5:
            raise SRGError(f"--opt-level must be 0..5; got {opt_level}")
        config.builder_optimization_level = opt_level
    trt_profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in profile.shapes(mode).items():
        trt_profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(trt_profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache and timing_cache.is_file() else b"")
    config.set_timing_cache(cache, True)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        if trt_plugin.refusals:  # our own one-line reason, which TensorRT only logged
            raise trt_plugin.refusals[0]
        raise SRGError("TensorRT failed to build the engine (see the TensorRT messages above)")
    if timing_cache:
        from srg_deploy.atomic import write_bytes

        write_bytes(timing_cache, bytes(memoryview(config.get_timing_cache().serialize())))
    kernels = trt_plugin.compiled_kernels  # filled by aot_impl when TensorRT chose the AOT implementation
    plugin = PluginBuild("aot", max(k.ptx_isa for k in kernels)) if kernels else PluginBuild("jit", None)
    return bytes(memoryview(serialized)), plugin


def sidecar(
    proto: onnx.ModelProto,
    onnx_bytes_sha256: str,
    mode: str,
    precision: str,
    profile: Profile,
    plugin: PluginBuild,
    build_flags: dict,
) -> dict[str, object]:
    """What `model.engine.json` records: enough to refuse a mismatched runtime and to rebuild the engine.
    `srg_deploy.tensorrt_env.read_sidecar` reads it back."""
    cudart = import_cudart()
    cuda = driver_cuda_version(cudart)
    meta = onnx_metadata(proto)
    return {
        "format": SIDECAR_FORMAT,
        "mode": mode,
        "precision": precision,
        "max_pairs": int(meta["max_pairs"]) if meta.get("max_pairs") else None,
        "config": json.loads(meta["config"]),
        "io": io_spec(proto),
        "profile": {name: [list(s) for s in shapes] for name, shapes in profile.shapes(mode).items()},
        "tensorrt_version": import_tensorrt().__version__,
        "gpu": gpu_identity(cudart),
        "cuda_driver": f"{cuda[0]}.{cuda[1]}",
        "plugin": {
            "id": PLUGIN_ID,
            "version": PLUGIN_VERSION,
            "attributes": list(ATTRIBUTES),
            "implementation": plugin.implementation,
            "ptx_isa": ptx_isa_text(plugin.ptx_isa) if plugin.ptx_isa is not None else None,
        },
        "source_onnx_sha256": onnx_bytes_sha256,
        "build_flags": build_flags,
        "built_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def io_spec(proto: onnx.ModelProto) -> dict[str, list[dict[str, object]]]:
    """Graph inputs/outputs: name, shape (dim names for dynamic axes) and dtype."""

    def describe(v: onnx.ValueInfoProto) -> dict[str, object]:
        t = v.type.tensor_type
        shape = [d.dim_param or d.dim_value for d in t.shape.dim]
        return {"name": v.name, "shape": shape, "dtype": onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name}

    return {"inputs": [describe(v) for v in proto.graph.input], "outputs": [describe(v) for v in proto.graph.output]}


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
