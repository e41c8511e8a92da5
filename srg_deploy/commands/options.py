"""Options that several commands take, declared once: the same name, help and default (from the library's constant)
wherever they appear. A command writes `top_k: TopK = TOP_K` (TOP_K from srg_deploy.defaults)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

ModelPath = Annotated[
    Path, typer.Argument(help="Checkpoint folder (torch), .onnx (ONNX Runtime) or .engine (TensorRT).")
]
TopK = Annotated[int, typer.Option(min=1, help="Triplets per frame in the output.")]
MaxPairs = Annotated[Optional[int], typer.Option(min=1, help="Keep the K pairs with the highest score product.")]
Backend = Annotated[
    Optional[str],
    typer.Option(
        help="onnxruntime | openvino | torch | tensorrt (default: from the path: a folder runs torch, .onnx ONNX"
        " Runtime, .engine TensorRT; OpenVINO runs a .onnx when asked for)."
    ),
]
Precision = Annotated[
    Optional[str],
    typer.Option(
        help="OpenVINO's inference precision: fp32 | bf16 | fp16 (default fp32); refused when the device cannot run"
        " it. Other backends run the file's own precision."
    ),
]
Device = Annotated[Optional[str], typer.Option(help="OpenVINO device: CPU | GPU | NPU | AUTO (default CPU).")]
CacheDir = Annotated[
    Optional[Path], typer.Option(help="OpenVINO's model cache folder: a compiled model is reused by later runs.")
]
