"""The one backend contract: named numpy inputs in, named numpy outputs out (docs/DESIGN.md §3).

Every backend (eager torch, ONNX Runtime, TensorRT) subclasses `Backend`, declares the inputs its loaded model
takes, and writes only `_run` (and `_close` if it holds resources). The guards live here, so no backend can drift
from the contract, and one contract test (tests/test_backend_contract.py) runs against all of them:
- a loaded model must declare exactly the contract's inputs for its mode (names, dtypes, ranks);
- each call's inputs must match what the model declares: a float64 box array is refused with a message, not cast,
  so a caller's bug cannot hide behind a silent conversion;
- image [1,3,H,W], boxes [N,4], pairs [P,2] with indices in [0, N); N = 0 and P = 0 are valid;
- outputs come back complete, named, in contract order; a closed backend refuses to run.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import ClassVar

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.contract import FIXED_DIMS, MODES, TensorSpec, input_specs, output_names
from srg_deploy.errors import SRGError


class Backend(ABC):
    """A loaded model. `mode` is "boxes" (image, boxes, pairs in) or "sgdet" (image in, detector inside).

    `declared` is what the loaded model itself says it takes (ONNX graph inputs, engine I/O tensors); it must equal
    the contract for `mode`, else the model is refused when it is opened."""

    name: ClassVar[str]
    max_pairs: int | None = None  # the pair budget an sgdet graph was built with; a reference must use the same

    def __init__(
        self, config: SRGConfig, mode: str, device: str, declared: Mapping[str, TensorSpec] | None = None
    ) -> None:
        if mode not in MODES:
            raise SRGError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        self.config, self.mode, self.device = config, mode, device
        self.inputs = dict(declared) if declared is not None else input_specs(mode)
        contract = input_specs(mode)
        problems = [
            f"{name}: declares {self.inputs[name].describe() if name in self.inputs else 'nothing'},"
            f" the {mode}-mode contract is {spec.describe()}"
            for name, spec in contract.items()
            if name not in self.inputs or self.inputs[name].dtype != spec.dtype or self.inputs[name].rank != spec.rank
        ]
        problems += [f"unexpected input {name!r}" for name in self.inputs if name not in contract]
        if problems:
            raise SRGError(f"{self.name}: the model's inputs do not follow the contract: {'; '.join(problems)}")
        self._closed = False

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(input_specs(self.mode))

    @property
    def output_names(self) -> tuple[str, ...]:
        return output_names(self.mode)

    @property
    def precision(self) -> str:
        """ "fp32" unless the deployed model was converted (fp16 ONNX, fp16 engine)."""
        return "fp32"

    def describe(self) -> str:
        return f"{self.name} ({self.device}, {self.precision}, {self.mode} mode)"

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Check the inputs against what the model declares, run, and check the outputs came back complete."""
        if self._closed:
            raise RuntimeError(f"{self.name} backend used after close()")
        self.check_inputs(inputs)
        outputs = self._run({name: np.ascontiguousarray(inputs[name]) for name in self.input_names})
        missing = [n for n in self.output_names if n not in outputs]
        if missing:
            raise RuntimeError(f"{self.name} returned no {missing}")
        return {n: outputs[n] for n in self.output_names}

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Names, types, dtypes, ranks and fixed dims as declared; pair indices inside [0, N)."""
        if set(inputs) != set(self.inputs):
            raise SRGError(f"{self.name}: inputs are {sorted(inputs)}; the model takes {sorted(self.inputs)}")
        for name, spec in self.inputs.items():
            array = inputs[name]
            if not isinstance(array, np.ndarray):
                raise SRGError(f"{self.name}: input {name!r} is a {type(array).__name__}; expected a numpy array")
            if array.dtype != spec.dtype:
                raise SRGError(
                    f"{self.name}: input {name!r} is {array.dtype}; the model declares {spec.dtype} (convert it first)"
                )
            fixed = FIXED_DIMS.get(name, {})
            if array.ndim != spec.rank or any(array.shape[axis] != size for axis, size in fixed.items()):
                expected = ["1", "3", "H", "W"] if name == "image" else ["N", "4"] if name == "boxes" else ["P", "2"]
                raise SRGError(
                    f"{self.name}: input {name!r} has shape {list(array.shape)}; expected [{','.join(expected)}]"
                )
        if "pairs" in inputs and inputs["pairs"].size:
            n = inputs["boxes"].shape[0]
            low, high = int(inputs["pairs"].min()), int(inputs["pairs"].max())
            if low < 0 or high >= n:
                raise SRGError(f"{self.name}: pairs index boxes {low}..{high} but there are {n} boxes")

    @abstractmethod
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]: ...

    def _close(self) -> None:
        """Release sessions, engines and device memory (backends that hold any override this)."""

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._close()

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
