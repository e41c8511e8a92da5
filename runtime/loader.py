"""Model path -> backend: checkpoint folder -> eager torch, `.onnx` -> ONNX Runtime, `.engine` -> TensorRT."""

from __future__ import annotations

from pathlib import Path

from srg_deploy.errors import SRGError
from srg_deploy.runtime.backend import Backend

BACKENDS = ("torch", "onnxruntime", "tensorrt")


def existing_model(path: Path) -> Path:
    """`path` when it exists; otherwise the one error every command gives for a model that is not there."""
    path = Path(path)
    if not path.exists():
        raise SRGError(f"model {path} does not exist")
    return path


def backend_for(path: Path) -> str:
    path = Path(path)
    if path.is_dir():
        return "torch"
    if path.suffix == ".onnx":
        return "onnxruntime"
    if path.suffix in (".engine", ".plan", ".trt"):
        return "tensorrt"
    raise SRGError(f"cannot tell the backend of {path}: expected a checkpoint folder, a .onnx file or a .engine file")


def open_backend(
    path: Path,
    backend: str | None = None,
    mode: str = "boxes",
    max_pairs: int | None = None,
    threads: int | None = None,
) -> Backend:
    """Load `path` with `backend` (chosen from the path when None). `mode` and `max_pairs` matter only for an eager
    checkpoint, which can run either mode; exported files carry their mode. `threads` bounds ONNX Runtime's intra-op
    threads (several workers on one machine each get their share; None: ONNX Runtime's default, every core)."""
    path = existing_model(path)
    backend = backend or backend_for(path)
    if backend == "torch":
        from srg_deploy.checkpoint import load_model
        from srg_deploy.runtime.torch_backend import TorchBackend

        return TorchBackend(load_model(path), mode=mode, max_pairs=max_pairs)
    if backend == "onnxruntime":
        from srg_deploy.runtime.ort_backend import OrtBackend

        return OrtBackend(path, threads=threads)
    if backend == "tensorrt":
        from srg_deploy.runtime.trt_backend import TrtBackend

        return TrtBackend(path)
    raise SRGError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
