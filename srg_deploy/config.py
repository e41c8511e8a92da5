"""Checkpoint configuration: architecture, vocabularies, preprocessing and detector settings.

Everything that changes what the model computes lives here and is written to `config.json` beside the weights,
so a checkpoint folder is self-describing: other vocabularies (the paper's 20 grouped predicates, the 1600
bottom-up-attention objects) and other trunks' conventions (Caffe BGR means, 14x14 RoIs, dilated res5) are
configuration, not code.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from srg_deploy.errors import SRGError
from srg_deploy.vocab import vg50_predicates, vg150_objects

CONFIG_FORMAT = "srg-deploy/1"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
RUN_CHECKPOINT_DIR = "checkpoint"  # where `srg-deploy train` writes a run's trained model

# torchvision's ImageNet statistics, in 0..255 pixel units, RGB order.
IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)


@dataclass(frozen=True)
class Preprocessing:
    """How a frame becomes the `image` input: resize so the shorter side is `min_size` unless the longer side
    would exceed `max_size`, reorder channels, subtract `pixel_mean` and divide by `pixel_std` (0..255 units, in
    `channel_order`)."""

    min_size: int = 600
    max_size: int = 1000
    pixel_mean: tuple[float, float, float] = IMAGENET_MEAN
    pixel_std: tuple[float, float, float] = IMAGENET_STD
    channel_order: str = "RGB"

    def __post_init__(self) -> None:
        if self.channel_order not in ("RGB", "BGR"):
            raise SRGError(f"preprocessing.channel_order is {self.channel_order!r}; expected 'RGB' or 'BGR'")
        if self.min_size < 1 or self.max_size < self.min_size:
            raise SRGError(f"preprocessing sizes {self.min_size}/{self.max_size} are invalid; need 1 <= min <= max")


@dataclass(frozen=True)
class Architecture:
    """ResNet-101 C4: trunk = conv1..layer3 (res4b22, stride 16), RoI max pooling, pool5 = layer4 + mean.

    `res5_dilation=2` is the bottom-up-attention variant (res5 stride 1, dilation 2, usually on 14x14 RoIs);
    `stride_in_1x1` and `stem_pool="caffe"` reproduce MSRA/Caffe ResNets as detectron2 imports them.
    """

    trunk: str = "resnet101"
    roi_output_size: int = 7
    spatial_scale: float = 1.0 / 16.0
    res5_dilation: int = 1
    stride_in_1x1: bool = False
    stem_pool: str = "torchvision"
    embed_dim: int = 512

    def __post_init__(self) -> None:
        if self.trunk != "resnet101":
            raise SRGError(f"architecture.trunk is {self.trunk!r}; only 'resnet101' is supported")
        if self.res5_dilation not in (1, 2):
            raise SRGError(f"architecture.res5_dilation is {self.res5_dilation}; expected 1 or 2")
        if self.stem_pool not in ("torchvision", "caffe"):
            raise SRGError(f"architecture.stem_pool is {self.stem_pool!r}; expected 'torchvision' or 'caffe'")
        if self.roi_output_size < 1 or not self.spatial_scale > 0:
            raise SRGError("architecture.roi_output_size must be >= 1 and spatial_scale > 0")


@dataclass(frozen=True)
class Detector:
    """Faster R-CNN C4 on the shared trunk; defaults are detectron2's R101-C4 test settings, except that at most
    36 objects are kept (GCN-LSTM's region count)."""

    anchor_sizes: tuple[float, ...] = (32.0, 64.0, 128.0, 256.0, 512.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    anchor_offset: float = 0.0
    pre_nms_top_n: int = 3000  # detectron2 uses 6000; TensorRT's TopK needs K < 3840
    post_nms_top_n: int = 1000
    rpn_nms_threshold: float = 0.7
    rpn_box_weights: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)
    box_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    score_threshold: float = 0.05
    nms_threshold: float = 0.5
    max_detections: int = 36

    @property
    def num_anchors(self) -> int:
        return len(self.anchor_sizes) * len(self.anchor_ratios)


@dataclass(frozen=True)
class SRGConfig:
    """Everything `config.json` holds. `objects`/`predicates` exclude class 0 (background / no relation)."""

    architecture: Architecture = field(default_factory=Architecture)
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    detector: Detector = field(default_factory=Detector)
    objects: tuple[str, ...] = field(default_factory=lambda: tuple(vg150_objects()))
    predicates: tuple[str, ...] = field(default_factory=lambda: tuple(vg50_predicates()))
    trained: bool = False
    provenance: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.objects or not self.predicates:
            raise SRGError("config needs at least one object class and one predicate")

    @property
    def num_object_classes(self) -> int:
        """Classifier width, background included."""
        return len(self.objects) + 1

    @property
    def num_predicate_classes(self) -> int:
        """Classifier width, "no relation" included."""
        return len(self.predicates) + 1

    def to_dict(self) -> dict[str, Any]:
        return {"format": CONFIG_FORMAT, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SRGConfig:
        if data.get("format") != CONFIG_FORMAT:
            raise SRGError(f"config format is {data.get('format')!r}; expected {CONFIG_FORMAT!r}")
        try:
            return cls(
                architecture=Architecture(**_tuples(data["architecture"])),
                preprocessing=Preprocessing(**_tuples(data["preprocessing"])),
                detector=Detector(**_tuples(data["detector"])),
                objects=tuple(data["objects"]),
                predicates=tuple(data["predicates"]),
                trained=bool(data.get("trained", False)),
                provenance=dict(data.get("provenance", {})),
            )
        except (KeyError, TypeError) as e:
            raise SRGError(f"config is malformed: {e}") from None

    def save(self, path: Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: Path) -> SRGConfig:
        try:
            data = json.loads(Path(path).read_text())
        except FileNotFoundError:
            raise SRGError(f"no config.json at {path}") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SRGError(f"{path} is not valid JSON: {e}") from None
        return cls.from_dict(data)


def _tuples(section: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in section.items()}


def is_checkpoint(path: Path) -> bool:
    """A checkpoint folder: `config.json` (this module's format) beside `model.safetensors`."""
    return Path(path).is_dir() and (Path(path) / CONFIG_FILE).is_file()


def resolve_checkpoint(path: Path) -> Path:
    """`path` itself, or, for a training run folder, the trained model inside it (`RUN/checkpoint`), said in one line
    on stderr: the one rule every command that takes a checkpoint follows. A run folder without one is refused."""
    path = Path(path)
    inner = path / RUN_CHECKPOINT_DIR
    if is_checkpoint(path) or not path.is_dir():
        return path
    if is_checkpoint(inner):
        from srg_deploy.console import err

        err.print(f"{path} is a training run: using its trained model {inner}", markup=False)
        return inner
    if (path / "state").is_dir() or inner.exists():
        raise SRGError(f"{path} is a training run without a trained model yet: expected a checkpoint folder at {inner}")
    return path
