"""ONNX Runtime: the exported file as is, on the CUDA provider when onnxruntime-gpu and a GPU are present."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from srg_deploy.config import SRGConfig
from srg_deploy.errors import SRGError
from srg_deploy.runtime.backend import Backend


def read_onnx(path: Path) -> onnx.ModelProto:
    """Load an ONNX file or fail with one line (missing, truncated, not ONNX)."""
    path = Path(path)
    if not path.is_file():
        raise SRGError(f"ONNX file {path} does not exist")
    try:
        return onnx.load(str(path))
    except Exception as e:  # protobuf raises DecodeError, onnx raises its own types
        raise SRGError(
            f"{path} is not a readable ONNX model: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
        ) from None


def providers() -> list[str]:
    """CUDA first when this onnxruntime build has it (onnxruntime-gpu); ORT falls back to CPU without a GPU, and
    the session's `get_providers()` then tells what is really used."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" in ort.get_available_providers():
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


class OrtBackend(Backend):
    name = "onnxruntime"

    def __init__(self, path: Path, threads: int | None = None) -> None:
        import onnxruntime as ort

        from srg_deploy.export.onnx_export import metadata

        proto = read_onnx(path)
        meta = metadata(proto)
        if "config" not in meta or "mode" not in meta:
            raise SRGError(
                f"{path} was not exported by srg-deploy (no srg_deploy.config metadata); run `srg-deploy export`"
            )
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(proto.SerializeToString(), options, providers=providers())
        except Exception as e:  # onnxruntime raises its own Fail/InvalidGraph types
            raise SRGError(f"ONNX Runtime cannot load {path}: {str(e).splitlines()[0]}") from None
        device = "cuda" if self.session.get_providers()[0] == "CUDAExecutionProvider" else "cpu"
        super().__init__(SRGConfig.from_dict(json.loads(meta["config"])), meta["mode"], device)
        self._precision = meta.get("precision", "fp32")
        self.max_pairs = int(meta["max_pairs"]) if meta.get("max_pairs") else None
        self.path = Path(path)

    @property
    def precision(self) -> str:
        return self._precision

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        outputs = self.session.run(list(self.output_names), inputs)
        return dict(zip(self.output_names, outputs))
