"""OpenVINO: the exported `.onnx` (fp32, or build-engine's fp16 ONNX) on an Intel CPU, iGPU or NPU, at the inference
precision asked for (docs/openvino.md).

Two things stand between the exported file and OpenVINO, and this module does both on load:
- OpenVINO's ONNX frontend does not expand model-local functions, so the `srg::roi_pool` node would stay
  unconverted; the file is read with `onnx`, its local functions inlined (`onnx.inliner`), and OpenVINO maps the
  inlined `MaxRoiPool` to its ROIPooling op.
- At bf16 or f16 the CPU plugin would run ROIPooling in that precision, box coordinates included (bf16 keeps 8 bits:
  an edge at 700 px moves by up to 2 px), and the ops that compute the coordinates (union boxes, the detector's box
  decoding) too. ROIPooling and that whole coordinate path are marked `precise` (OpenVINO's "keep original
  precision" runtime attribute, read from the IR's rt_info; constant Slices on the path become Gathers, which the
  plugin does not fuse away) so they run in f32 whatever the precision, and the compiled model is checked: a
  ROIPooling or coordinate op that did not stay f32 is refused, not run.

The precision is an explicit request, never a silent downgrade: a device that cannot run it is refused with one line,
and so is a compiled model whose inference precision is not the one asked for.
"""

from __future__ import annotations

import html
import json
import re
import tempfile
import time
from pathlib import Path

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.contract import TensorSpec, input_specs, onnx_metadata
from srg_deploy.defaults import OPENVINO_DEVICE, OPENVINO_PRECISION
from srg_deploy.errors import SRGError, first_line
from srg_deploy.runtime.backend import Backend

DEVICES = ("CPU", "GPU", "NPU", "AUTO")
# --precision -> OpenVINO's INFERENCE_PRECISION_HINT, and the OPTIMIZATION_CAPABILITIES entry a device must list.
PRECISIONS = {"fp32": ("f32", "FP32"), "bf16": ("bf16", "BF16"), "fp16": ("f16", "FP16")}
# Coarsest wins when the file's own precision (fp16 ONNX, int8 QDQ) meets the inference precision.
COARSENESS = ("fp32", "fp16", "bf16", "int8")
ROI_OP = "ROIPooling"


def import_openvino():
    try:
        import openvino
    except ImportError:
        raise SRGError('OpenVINO is not installed: pip install "srg-deploy[openvino]"') from None
    return openvino


def check_device(core, device: str) -> str:
    """`device` upper-cased when OpenVINO has it here (AUTO picks among those present); else one line naming what
    is available."""
    name = device.upper()
    available = list(core.available_devices)
    if name.split(".")[0] not in DEVICES:
        raise SRGError(f"unknown OpenVINO device {device!r}; expected one of {', '.join(DEVICES)}")
    if name != "AUTO" and name not in available and not any(d.split(".")[0] == name for d in available):
        raise SRGError(f"OpenVINO device {name} is not available here; available: {', '.join(available)}")
    return name


def check_precision(core, device: str, precision: str) -> None:
    """Refuse a precision the device cannot run (OPTIMIZATION_CAPABILITIES), e.g. bf16 on a CPU without
    AVX512-BF16/AMX or f16 on a CPU."""
    if precision not in PRECISIONS:
        raise SRGError(f"unknown precision {precision!r}; expected one of {', '.join(PRECISIONS)}")
    if device == "AUTO":
        return  # checked on the devices AUTO chose, once compiled
    capabilities = [str(c) for c in core.get_property(device, "OPTIMIZATION_CAPABILITIES")]
    if PRECISIONS[precision][1] not in capabilities:
        raise SRGError(
            f"OpenVINO {device} cannot run {precision} here (its capabilities: {', '.join(capabilities)});"
            f" choose another --precision or --device"
        )


def inlined_onnx(path: Path):
    """The file as an onnx ModelProto with its local functions (srg::roi_pool) inlined, and its srg_deploy
    metadata; one line when it is not an ONNX model."""
    try:
        import onnx
        import onnx.inliner
    except ImportError:
        raise SRGError(
            'the OpenVINO backend reads ONNX with the onnx package: pip install "srg-deploy[openvino]"'
        ) from None
    try:
        proto = onnx.load(str(path))
    except Exception as e:  # DecodeError and friends from protobuf
        raise SRGError(f"OpenVINO cannot read {path}: not an ONNX model ({first_line(e)})") from None
    meta = onnx_metadata(proto)
    if proto.functions:
        proto = onnx.inliner.inline_local_functions(proto)
    return proto, meta


def read_model(core, path: Path):
    """OpenVINO's model of the exported file, RoI pooling inlined and marked to stay in f32."""
    ov = import_openvino()
    proto, meta = inlined_onnx(path)
    with tempfile.TemporaryDirectory(prefix="srg-openvino-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(proto.SerializeToString())
        del proto
        try:
            model = core.read_model(str(onnx_path))
        except Exception as e:
            raise SRGError(f"OpenVINO cannot read {path}: {first_line(e)}") from None
        keep = coordinate_chain(model)
        slices_to_gathers(model, keep)
        if keep:
            # Python cannot create OpenVINO's typed precision attribute; its IR reader can: round-trip through IR
            # with `precise` (fp16 compression disabled, i.e. keep the original f32) on each ROIPooling and on every
            # op that computes its box coordinates.
            xml, weights = Path(tmp) / "model.xml", Path(tmp) / "model.bin"
            ov.save_model(model, str(xml), compress_to_fp16=False)
            marked = 0

            def mark(layer: re.Match) -> str:
                nonlocal marked
                if html.unescape(layer["name"]) not in keep:
                    return layer[0]
                marked += 1
                return layer[0] + '<rt_info><attribute name="precise" version="0" /></rt_info>'

            xml.write_text(
                re.sub(r'<layer id="\d+" name="(?P<name>[^"]*)" type="\w+" version="\w+">', mark, xml.read_text())
            )
            model = core.read_model(str(xml), str(weights))
            kept = [op for op in model.get_ordered_ops() if op.get_friendly_name() in keep]
            if marked != len(keep) or not all(op.get_rt_info() for op in kept):
                raise SRGError(f"{path}: could not keep OpenVINO's RoI pooling in f32; not running it at low precision")
    return model, meta


COMPUTE_OPS = ("Convolution", "GroupConvolution", "MatMul")  # where coordinates come from features (RPN deltas)


def coordinate_chain(model) -> set[str]:
    """Friendly names of each ROIPooling and of every op that computes its `rois` (union boxes, the detector's box
    decoding), walking upstream until a compute op, a parameter or a constant: what must run in f32."""
    names: set[str] = set()
    pools = [op for op in model.get_ordered_ops() if op.get_type_name() == ROI_OP]
    names.update(op.get_friendly_name() for op in pools)
    stack = [op.input_value(1).get_node() for op in pools]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in names or node.get_type_name() in (*COMPUTE_OPS, "Parameter", "Constant"):
            continue
        names.add(name)
        stack.extend(node.input_value(k).get_node() for k in range(node.get_input_size()))
    return names


def slices_to_gathers(model, names: set[str]) -> None:
    """Each constant Slice among `names` becomes the equivalent Gather (same name). The CPU plugin fuses Slices of one
    tensor into a VariadicSplit, a new node without the `precise` attribute, which it then runs at the inference
    precision: the box coordinates would be rounded to bf16 right at the `boxes` input. A Gather is not fused."""
    from openvino import opset13 as ops

    for op in model.get_ordered_ops():
        if op.get_type_name() != "Slice" or op.get_friendly_name() not in names or op.get_input_size() != 5:
            continue
        args = [op.input_value(k).get_node() for k in range(1, 5)]
        dims = op.input_value(0).get_partial_shape()
        if any(a.get_type_name() != "Constant" for a in args) or len(args[3].get_data()) != 1:
            continue
        start, stop, step, axis = (int(a.get_data().reshape(-1)[0]) for a in args)
        axis = axis % dims.rank.get_length()
        if not dims[axis].is_static or step < 1:
            continue
        indices = np.arange(*slice(start, stop, step).indices(dims[axis].get_length()), dtype=np.int64)
        gather = ops.gather(op.input_value(0), ops.constant(indices), ops.constant(np.int64(axis)))
        gather.set_friendly_name(op.get_friendly_name())
        op.output(0).replace(gather.output(0))
    model.validate_nodes_and_infer_types()


def compile_config(precision: str, threads: int | None) -> dict[str, str]:
    config = {"INFERENCE_PRECISION_HINT": PRECISIONS[precision][0]}
    if precision == "fp32":
        config["EXECUTION_MODE_HINT"] = "ACCURACY"
    if threads:
        config["INFERENCE_NUM_THREADS"] = str(threads)
    return config


# Runtime layers that may run below f32 on the coordinate path: the compute ops coordinates come from, the reorders
# that convert their output back, and shape-only ops.
LOW_PRECISION_ALLOWED = ("Convolution", "FullyConnected", "MatMul", "Reorder", "ShapeOf", "Const", "Input")


def coordinate_precisions(compiled) -> dict[str, str]:
    """Layer type -> runtime precision of every compiled layer on the path that computes ROIPooling's `rois`
    (where the plugin reports layer types), those allowed below f32 left out."""
    found = {}
    pools = [op for op in compiled.get_runtime_model().get_ordered_ops() if _info(op, "layerType") == ROI_OP]
    stack, seen = [op.input_value(1).get_node() for op in pools], set()
    while stack:
        node = stack.pop()
        if node.get_friendly_name() in seen:
            continue
        seen.add(node.get_friendly_name())
        kind = _info(node, "layerType")
        if kind in (*COMPUTE_OPS, "FullyConnected"):
            continue
        if kind not in LOW_PRECISION_ALLOWED:
            found[f"{kind} {node.get_friendly_name()}"] = (_info(node, "runtimePrecision") or "").lower()
        stack.extend(node.input_value(k).get_node() for k in range(node.get_input_size()))
    return found


def _info(op, key: str) -> str | None:
    info = op.get_rt_info()
    return str(info[key].astype(str)) if key in info else None


def roi_pool_precisions(compiled) -> list[str]:
    """The runtime precision of each ROIPooling in the compiled model (where the plugin reports layer types)."""
    found = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        if "layerType" in info and str(info["layerType"].astype(str)) == ROI_OP and "runtimePrecision" in info:
            found.append(str(info["runtimePrecision"].astype(str)).lower())
    return found


def matmul_peak_gflops(precision: str, size: int = 2048, repeats: int = 10) -> float:
    """The machine's practical bf16 or int8 peak: the best of `repeats` size^3 matrix products by OpenVINO's CPU
    plugin (bf16: an f32 MatMul compiled at INFERENCE_PRECISION_HINT bf16, AMX/AVX512-BF16; int8: activations and
    weights through FakeQuantize, which the plugin runs as a u8 x i8 FullyConnected, AMX-INT8/VNNI). A matrix
    product is what convolutions reduce to, so this is the floor a bf16 or int8 model's GFLOP/s is measured against."""
    ov = import_openvino()
    from openvino import opset13 as ops

    rng = np.random.default_rng(0)
    a = ops.parameter([size, size], np.float32)
    if precision == "int8":
        low, high = ops.constant(np.float32(-4)), ops.constant(np.float32(4))
        weights = ops.constant(rng.uniform(-4, 4, (size, size)).astype(np.float32))
        product = ops.matmul(
            ops.fake_quantize(a, low, high, low, high, 256),
            ops.fake_quantize(weights, low, high, low, high, 255),
            False,
            True,
        )
        model, hint, inputs = ov.Model([product], [a]), "f32", [rng.standard_normal((size, size), np.float32)]
    else:
        b = ops.parameter([size, size], np.float32)
        model, hint = ov.Model([ops.matmul(a, b, False, False)], [a, b]), {"bf16": "bf16", "fp16": "f16"}[precision]
        inputs = [rng.standard_normal((size, size), np.float32) for _ in range(2)]
    request = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": hint}).create_infer_request()
    request.infer(inputs)
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        request.infer(inputs)
        best = min(best, time.perf_counter() - t0)
    return 2 * size**3 / best / 1e9


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(
        self,
        path: Path,
        precision: str = OPENVINO_PRECISION,
        device: str = OPENVINO_DEVICE,
        cache_dir: Path | None = None,
        threads: int | None = None,
    ) -> None:
        ov = import_openvino()
        path = Path(path)
        if not path.is_file():
            raise SRGError(f"ONNX file {path} does not exist")
        core = ov.Core()
        device = check_device(core, device)
        check_precision(core, device, precision)
        model, meta = read_model(core, path)
        if "config" not in meta or "mode" not in meta:
            raise SRGError(
                f"{path} was not exported by srg-deploy (no srg_deploy.config metadata); run `srg-deploy export`"
            )
        if meta["mode"] not in ("boxes", "sgdet"):
            raise SRGError(f"{path}: unknown mode {meta['mode']!r} in its metadata")
        if cache_dir:
            Path(cache_dir).mkdir(parents=True, exist_ok=True)
            core.set_property({"CACHE_DIR": str(cache_dir)})
        try:
            self.compiled = core.compile_model(model, device, compile_config(precision, threads))
        except Exception as e:
            raise SRGError(f"OpenVINO cannot compile {path} for {device} at {precision}: {first_line(e)}") from None
        self._check_compiled(path, device, precision)
        super().__init__(SRGConfig.from_dict(json.loads(meta["config"])), meta["mode"], device, self._declared(meta))
        self.request = self.compiled.create_infer_request()
        self.inference_precision = precision
        file_precision = meta.get("precision", "fp32")
        self._precision = max(file_precision, precision, key=lambda p: COARSENESS.index(p) if p in COARSENESS else 0)
        self.max_pairs = int(meta["max_pairs"]) if meta.get("max_pairs") else None
        self.path = path

    def _check_compiled(self, path: Path, device: str, precision: str) -> None:
        """What was compiled is what was asked for: the inference precision, on a device that can run it, with RoI
        pooling in f32."""
        if device == "AUTO":  # AUTO reports neither the hint nor a runtime model: check the devices it chose
            core = import_openvino().Core()
            for chosen in self.compiled.get_property("EXECUTION_DEVICES"):
                check_precision(core, str(chosen).split("(")[0].strip(), precision)
            return
        got = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        hint = got.get_type_name() if hasattr(got, "get_type_name") else str(got)
        if hint != PRECISIONS[precision][0]:
            raise SRGError(f"OpenVINO compiled {path} at {hint} on {device}, not the {precision} asked for")
        pools = roi_pool_precisions(self.compiled)
        coordinates = coordinate_precisions(self.compiled)
        low = sorted({p for p in (*pools, *coordinates.values()) if p in ("bf16", "f16", "fp16")})
        if precision != "fp32" and low:
            raise SRGError(
                f"OpenVINO would compute box coordinates or RoI pooling of {path} at {', '.join(low)} on {device}"
                " (box coordinates must stay fp32); use --precision fp32 on this device"
            )

    def _declared(self, meta: dict[str, str]) -> dict[str, TensorSpec]:
        contract = input_specs(meta["mode"])
        specs = {}
        for port in self.compiled.inputs:
            names = port.get_names()
            name = next((n for n in names if n in contract), port.get_any_name())
            try:
                dtype = np.dtype(port.get_element_type().to_dtype())
            except Exception:
                dtype = np.dtype(object)
            dynamic = contract[name].dynamic if name in contract else {}
            specs[name] = TensorSpec(name, dtype, port.get_partial_shape().rank.get_length(), dynamic)
        return specs

    @property
    def precision(self) -> str:
        return self._precision

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        results = self.request.infer(inputs)
        by_name = {name: value for port, value in results.items() for name in port.get_names()}
        return {name: np.array(by_name[name], copy=True) for name in self.output_names if name in by_name}

    def _close(self) -> None:
        del self.request
        del self.compiled
