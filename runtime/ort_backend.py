"""ONNX Runtime: the exported file as is, on the CUDA provider when onnxruntime-gpu and a GPU are present.

Everything this backend needs to know about the file (mode, config, precision, pair budget) is read from the
model's metadata through ONNX Runtime itself, so the runtime needs neither the `onnx` package nor torch.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.contract import TensorSpec, input_specs, read_metadata
from srg_deploy.errors import SRGError
from srg_deploy.runtime.backend import Backend

# ONNX Runtime's type strings ("tensor(float)") -> numpy, so a declared input can be named in an error message.
ORT_DTYPES = {
    f"tensor({name})": np.dtype(dtype)
    for name, dtype in (
        ("float", np.float32), ("double", np.float64), ("float16", np.float16), ("bool", np.bool_),
        *((t, t) for t in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")),
    )
}  # fmt: skip


def import_onnxruntime():
    try:
        import onnxruntime
    except ImportError:
        raise SRGError(
            'ONNX Runtime is not installed: pip install "srg-deploy[cpu]" (or "srg-deploy[gpu]" for CUDA)'
        ) from None
    return onnxruntime


def providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (onnxruntime-gpu); ORT falls back to CPU without a GPU, and
    the session's `get_providers()` then tells what is really used."""
    ort = import_onnxruntime()
    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def open_session(path: Path, threads: int | None = None, options=None):
    """An InferenceSession of `path`, or one line saying why not (missing, truncated, not ONNX, invalid graph)."""
    ort = import_onnxruntime()
    path = Path(path)
    if not path.is_file():
        raise SRGError(f"ONNX file {path} does not exist")
    options = options or ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    try:
        return ort.InferenceSession(str(path), options, providers=providers())
    except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph types
        lines = [line for line in str(e).splitlines() if line.strip()]
        raise SRGError(f"ONNX Runtime cannot load {path}: {lines[0] if lines else type(e).__name__}") from None


def declared_inputs(session, mode: str) -> dict[str, TensorSpec]:
    """The graph's inputs as the contract's TensorSpecs (dtype and rank from the file, dynamic names from the
    contract); an input of a type the contract never uses is declared as object so the contract check names it."""
    contract = input_specs(mode)
    specs = {}
    for arg in session.get_inputs():
        dtype = np.dtype(ORT_DTYPES.get(arg.type, object))
        dynamic = contract[arg.name].dynamic if arg.name in contract else {}
        specs[arg.name] = TensorSpec(arg.name, dtype, len(arg.shape), dynamic)
    return specs


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        self.session = open_session(path, threads)
        meta = read_metadata(self.session.get_modelmeta().custom_metadata_map)
        if "config" not in meta or "mode" not in meta:
            raise SRGError(
                f"{path} was not exported by srg-deploy (no srg_deploy.config metadata); run `srg-deploy export`"
            )
        device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        config = SRGConfig.from_dict(json.loads(meta["config"]))
        if meta["mode"] not in ("boxes", "sgdet"):
            raise SRGError(f"{path}: unknown mode {meta['mode']!r} in its metadata")
        super().__init__(config, meta["mode"], device, declared_inputs(self.session, meta["mode"]))
        self._precision = meta.get("precision", "fp32")
        self.max_pairs = int(meta["max_pairs"]) if meta.get("max_pairs") else None
        self.path = Path(path)

    @property
    def precision(self) -> str:
        return self._precision

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(list(self.output_names), inputs)
        return dict(zip(self.output_names, outputs))

    def _close(self) -> None:
        del self.session
