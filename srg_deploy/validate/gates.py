"""The gates: one set of pass/fail thresholds per precision, and what each output's numbers fail.

`GATES` is a plain mapping precision -> `Gates`; a new precision (e.g. OpenVINO's bf16) is one more entry here,
with the reason for each threshold in docs/validation.md. Why the values are what they are:
- fp32: every output within max|got - ref| <= rtol x max|ref| (rtol 1e-4); top-1 and triplet agreement 100%;
  sgdet detections identical, their boxes within 0.25 px more (box coordinates pass through exp() and are scaled
  by anchors up to 512 px, so two fp32 runtimes differ by hundredths of a pixel; 0.25 px is 1/64 of a feature cell).
- fp16: cosine >= 0.999 per output, >= 0.99 per region of `features` (what fp16 itself can do: a faithful
  conversion of a BatchNorm-calibrated random model through PyTorch's `.half()` reaches ~0.994 per region on
  noise frames); |scale error| <= 0.006 per output (the systematic part of the difference, <got,ref>/<ref,ref> - 1:
  fp16 rounding stays below 0.003 on ordinary and noise frames, a conv layer scaled by 1.05 moves it by 0.011 or
  more while its cosine stays above 0.9998); agreement >= 95%, near-tie flips excepted (compare.py); sgdet
  detections matched by label and IoU >= 0.5.
- bf16 (OpenVINO's inference precision, `--backend openvino --precision bf16`): cosine >= 0.999 per output, >= 0.98
  per region; |scale error| <= 0.006; agreement >= 80%, near ties excepted; sgdet detections matched. Set from what
  bf16 itself can do (8 bits of mantissa against fp16's 11): PyTorch's bf16 autocast of the same BatchNorm-calibrated
  random models (the peer) and a faithful OpenVINO bf16 run stay above 0.99997 cosine per output with scale errors
  up to 0.0031 (OpenVINO) / 0.0027 (PyTorch) on sample and noise frames, while a conv scaled by 1.05 moves the scale
  of every frame's outputs by 0.008-0.0135; PyTorch's own bf16 agrees on 85% of triplets@20 (pooled over two frames,
  one seed of three), and single regions of 480x640 and 600x1000 frames with 24-36 random boxes drop to 0.9944
  (PyTorch) and 0.9948 (OpenVINO) cosine (benchmarks/openvino_bench.py; docs/validation.md).
- int8 (`srg-deploy quantize`): cosine >= 0.95 per output, >= 0.9 per region; agreement >= 70%; no scale gate;
  sgdet detections matched. Set from what a faithful INT8 model measures against eager: a model trained on a
  generated dataset (random ResNet trunk, whose heavy-tailed activations are int8's hardest case), calibrated on 6
  of its images, measured cosine 0.977 (features) to 0.998 (object logits), worst region 0.96, top-1 and triplet
  agreement 0.79-0.81, and a systematic scale of +5% to +11% (rounding of heavy tails, hence no scale gate).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from srg_deploy.errors import SRGError
from srg_deploy.validate.compare import OutputDiff
from srg_deploy.validate.failures import COSINE, MAX_ABS, NONFINITE, SCALE, SHAPE, Failure

FP16_MAX = 65504.0  # fp16's largest finite value: anything beyond is stored as infinity


@dataclass(frozen=True)
class Gates:
    """Pass/fail thresholds; None turns a gate off. See the module docstring for the defaults and why."""

    precision: str = "fp32"
    rtol: float | None = 1e-4  # max|got - ref| <= atol + rtol x max|ref|, per output
    atol: float | None = None
    min_cosine: float | None = None  # whole output as one vector
    min_region_cosine: float | None = None  # each region (row) of `features`
    max_scale_error: float | None = None  # |<got,ref>/<ref,ref> - 1|, per output
    min_agreement: float = 1.0  # top-1, triplet recall@K, detection labels (pooled over frames; near ties excepted)
    match_detections: bool = False  # sgdet: compare detections matched by label and IoU, not identical lists
    box_atol_px: float | None = None  # sgdet `boxes`: pixels allowed on top of the relative bound

    @classmethod
    def for_precision(cls, precision: str, **overrides: float | None) -> Gates:
        """The precision's gates, with any threshold given (not None) replacing its default."""
        if precision not in GATES:
            raise SRGError(f"unknown precision {precision!r}; expected one of {', '.join(GATES)}")
        given = {k: v for k, v in overrides.items() if v is not None}
        unknown = set(given) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise TypeError(f"unknown gate(s) {sorted(unknown)}")
        return dataclasses.replace(GATES[precision], **given)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)

    def atol_for(self, output: str) -> float:
        """The absolute part of the error bound for `output` (sgdet boxes get `box_atol_px` more)."""
        return (self.atol or 0.0) + (self.box_atol_px or 0.0 if output == "boxes" else 0.0)

    def output_failures(self, d: OutputDiff) -> list[Failure]:
        """What output `d` fails of the error, cosine and scale gates (empty when it passes)."""
        if not d.same_shape:
            return [Failure(d.name, SHAPE, detail=f"shape {list(d.shape_got)} != reference {list(d.shape_ref)}")]
        if not math.isfinite(d.max_abs_got):
            return [Failure(d.name, NONFINITE, detail=self.precision)]
        failures = []
        if self.rtol is not None or self.atol is not None:
            atol = self.atol_for(d.name)
            tolerance = atol + (self.rtol or 0.0) * d.scale
            if not d.max_abs <= tolerance:
                detail = f"atol {atol:g} + rtol {self.rtol or 0:g} x max|ref| {d.scale:.3g}"
                failures.append(Failure(d.name, MAX_ABS, d.max_abs, tolerance, detail))
        if self.min_cosine is not None and not d.cosine >= self.min_cosine:
            failures.append(Failure(d.name, COSINE, d.cosine, self.min_cosine))
        if self.max_scale_error is not None and not abs(d.scale_error) <= self.max_scale_error:
            failures.append(Failure(d.name, SCALE, d.scale_error, self.max_scale_error))
        return failures


GATES: dict[str, Gates] = {
    "fp32": Gates(box_atol_px=0.25),
    "fp16": Gates(
        precision="fp16",
        rtol=None,
        min_cosine=0.999,
        min_region_cosine=0.99,
        max_scale_error=0.006,
        min_agreement=0.95,
        match_detections=True,
    ),
    "bf16": Gates(
        precision="bf16",
        rtol=None,
        min_cosine=0.999,
        min_region_cosine=0.98,
        max_scale_error=0.006,
        min_agreement=0.8,
        match_detections=True,
    ),
    "int8": Gates(
        precision="int8",
        rtol=None,
        min_cosine=0.95,
        min_region_cosine=0.9,
        max_scale_error=None,
        min_agreement=0.7,
        match_detections=True,
    ),
}
