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
