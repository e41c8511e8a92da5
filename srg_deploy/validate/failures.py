"""What a failed gate is: a typed record (which output, what kind of failure, the value measured, the bound it
broke), so that code branches on `kind`/`output` and text is made only where a person reads it (render.py)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

# kinds
SHAPE = "shape"  # the deployed output's shape differs from the reference's
NONFINITE = "nonfinite"  # the deployed model produced NaN or infinity
MAX_ABS = "max_abs"  # max|got - ref| beyond atol + rtol x max|ref|
COSINE = "cosine"  # the whole output's cosine below the gate
REGION_COSINE = "region_cosine"  # the worst region (row of `features`) below the gate
SCALE = "scale"  # |<got,ref>/<ref,ref> - 1| beyond the gate
AGREEMENT = "agreement"  # pooled top-1 / triplet / detection agreement below the gate
DETECTIONS = "detections"  # sgdet with identical detections required: a different count
PAIRS = "pairs"  # sgdet with identical detections required: other region pairs chosen

KINDS = (SHAPE, NONFINITE, MAX_ABS, COSINE, REGION_COSINE, SCALE, AGREEMENT, DETECTIONS, PAIRS)
STRUCTURAL = frozenset({SHAPE, DETECTIONS, PAIRS})  # the model computed something else, not a worse number


@dataclass(frozen=True)
class Failure:
    """One gate one output broke. `output` is the output's name (`features`, `object_logits`, ...), an agreement's
    name (`objects`, `relations`, `triplets@50`, `labels`, `detections`) or `features/region`; `value` is what was
    measured and `bound` the gate (None where there is no number, e.g. a shape); `detail` is context for the reader
    (how the bound was made, the shapes); `frame`/`source` say which frame (None for pooled agreement)."""

    output: str
    kind: str
    value: float | None = None
    bound: float | None = None
    detail: str = ""
    frame: int | None = None
    source: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown failure kind {self.kind!r}")

    def at(self, frame: int, source: str) -> Failure:
        """This failure, placed on a frame."""
        return Failure(self.output, self.kind, self.value, self.bound, self.detail, frame, source)

    def to_dict(self) -> dict[str, object]:
        return asdict(self)
