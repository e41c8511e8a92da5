"""Model path -> backend: checkpoint folder -> eager torch, `.onnx` -> ONNX Runtime (or OpenVINO when asked for),
`.engine` -> TensorRT."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srg_deploy.defaults import OPENVINO_DEVICE, OPENVINO_PRECISION
from srg_deploy.errors import SRGError
from srg_deploy.runtime.backend import Backend

BACKENDS = ("torch", "onnxruntime", "openvino", "tensorrt")


PRECISIONS = ("fp32", "bf16", "fp16")  # what `--precision` and a model spec may ask OpenVINO for


@dataclass(frozen=True)
class ModelSpec:
    """`[BACKEND[:PRECISION]:]PATH` as `eval` takes it: `model.onnx`, `openvino:bf16:model.onnx`,
    `onnxruntime:model-int8.onnx`, `openvino:model.onnx` (OpenVINO at its default precision)."""

    text: str
    path: Path
    backend: str | None = None
    precision: str | None = None

    @classmethod
    def parse(cls, text: str) -> ModelSpec:
        """A path that exists as written is a path (even with a colon in its name); otherwise a leading backend
        name, then a precision, are taken off."""
        text = str(text)
        if Path(text).exists():
            return cls(text, Path(text))
        backend, precision, rest = None, None, text
        head, sep, tail = rest.partition(":")
        if sep and head in BACKENDS:
            backend, rest = head, tail
            head, sep, tail = rest.partition(":")
            if sep and head in PRECISIONS:
                precision, rest = head, tail
        elif sep and head in PRECISIONS:
            raise SRGError(f"{text}: a precision needs its backend first, e.g. openvino:{head}:{tail}")
        if not rest:
            raise SRGError(f"{text}: no model path after the backend and precision")
        return cls(text, Path(rest), backend, precision)


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
    precision: str | None = None,
    device: str | None = None,
    cache_dir: Path | None = None,
) -> Backend:
    """Load `path` with `backend` (chosen from the path when None). `mode` and `max_pairs` matter only for an eager
    checkpoint, which can run either mode; exported files carry their mode. `threads` bounds ONNX Runtime's intra-op
    threads (several workers on one machine each get their share; None: ONNX Runtime's default, every core).
    `precision` (fp32, bf16, fp16), `device` (CPU, GPU, NPU, AUTO) and `cache_dir` are OpenVINO's; None: fp32 on
    the CPU. Another backend runs the file's own precision, so asking it for one is refused rather than ignored."""
    path = existing_model(path)
    backend = backend or backend_for(path)
    if backend not in BACKENDS:
        raise SRGError(f"unknown backend {backend!r}; expected one of {', '.join(BACKENDS)}")
    if backend != "openvino":
        given = [f"--{n.replace('_', '-')} {v}" for n, v in (("precision", precision), ("device", device),
                 ("cache_dir", cache_dir)) if v is not None]  # fmt: skip
        if given:
            raise SRGError(
                f"{' '.join(given)} applies to --backend openvino; {backend} runs {path.name} at the precision it"
                " was exported or built with"
            )
    if backend == "openvino":
        if path.suffix != ".onnx":
            raise SRGError(f"--backend openvino runs an exported .onnx file; got {path}")
        from srg_deploy.runtime.openvino_backend import OpenVinoBackend

        return OpenVinoBackend(
            path,
            precision=precision or OPENVINO_PRECISION,
            device=device or OPENVINO_DEVICE,
            cache_dir=cache_dir,
            threads=threads,
        )
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
