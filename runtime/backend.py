"""The one backend contract: named numpy inputs in, named numpy outputs out (DESIGN.md §3).

Every backend (eager torch, ONNX Runtime, TensorRT) subclasses `Backend` and writes only `_run`; the guards live
here, so a backend cannot drift from the contract, and one contract test runs against all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.detector import SGDET_OUTPUT_NAMES
from srg_deploy.errors import SRGError
from srg_deploy.model import OUTPUT_NAMES

INPUTS = {
    "boxes": {"image": np.float32, "boxes": np.float32, "pairs": np.int64},
    "sgdet": {"image": np.float32},
}
OUTPUTS = {"boxes": OUTPUT_NAMES, "sgdet": SGDET_OUTPUT_NAMES}
MODES = tuple(INPUTS)


class Backend(ABC):
    """A loaded model. `mode` is "boxes" (image, boxes, pairs in) or "sgdet" (image in, detector inside)."""

    name: ClassVar[str]
    max_pairs: int | None = None  # the pair budget an sgdet graph was built with; a reference must use the same

    def __init__(self, config: SRGConfig, mode: str, device: str) -> None:
        if mode not in INPUTS:
            raise SRGError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.config, self.mode, self.device = config, mode, device

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(INPUTS[self.mode])

    @property
    def output_names(self) -> tuple[str, ...]:
        return OUTPUTS[self.mode]

    @property
    def precision(self) -> str:
        """ "fp32" unless the deployed model was converted (fp16 ONNX, fp16 engine)."""
        return "fp32"

    def describe(self) -> str:
        return f"{self.name} ({self.device}, {self.precision}, {self.mode} mode)"

    def run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check names, ranks and dtypes against the contract, run, and check the outputs came back complete."""
        expected = INPUTS[self.mode]
        if set(inputs) != set(expected):
            raise SRGError(f"{self.name}: inputs are {sorted(inputs)}; expected {sorted(expected)}")
        checked = {}
        for name, dtype in expected.items():
            array = np.ascontiguousarray(inputs[name], dtype=dtype)
            rank = {"image": 4, "boxes": 2, "pairs": 2}[name]
            if array.ndim != rank or (name != "image" and array.shape[1] != (4 if name == "boxes" else 2)):
                raise SRGError(
                    f"{self.name}: input {name!r} has shape {array.shape}; see DESIGN.md §3 for the contract"
                )
            checked[name] = array
        if checked["image"].shape[:2] != (1, 3):
            raise SRGError(f"{self.name}: image has shape {checked['image'].shape}; expected [1,3,H,W]")
        outputs = self._run(checked)
        missing = [n for n in self.output_names if n not in outputs]
        if missing:
            raise RuntimeError(f"{self.name} returned no {missing}")
        return {n: outputs[n] for n in self.output_names}

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def close(self) -> None:
        """Release sessions, engines and device memory."""

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
