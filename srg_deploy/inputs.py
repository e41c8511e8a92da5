"""Reading what users hand us: images and boxes files, with one-line errors for every way they can be wrong."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np

from srg_deploy.errors import SRGError


def read_image(path: Path) -> np.ndarray:
    """BGR uint8 [H,W,3]; grey and alpha images are converted."""
    path = Path(path)
    if not path.is_file():
        raise SRGError(f"image {path} does not exist")
    return decode_image(np.fromfile(path, dtype=np.uint8), f"image {path}")


def decode_image(data: np.ndarray, what: str) -> np.ndarray:
    """Encoded bytes (uint8 [L]: a file's content, or a request's) -> BGR uint8 [H,W,3], as `read_image` reads."""
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise SRGError(f"cannot decode {what}: not an image file OpenCV can read, or corrupt")
    return image


def parse_size(text: str, what: str, example: str = "600x800") -> tuple[int, int]:
    """ "AxB" -> (A, B), two positive integers; `what` names the flag or field in the error."""
    try:
        a, b = (int(v) for v in text.strip().lower().split("x"))
    except ValueError:
        raise SRGError(f"{what} must look like {example}; got {text!r}") from None
    if a < 1 or b < 1:
        raise SRGError(f"{what} must be two positive sizes like {example}; got {text!r}")
    return a, b


def parse_boxes(value: object, where: str) -> np.ndarray:
    """A list of [x1, y1, x2, y2] (finite numbers, original-frame pixels) -> float64 [N,4]."""
    if not isinstance(value, list):
        raise SRGError(f"{where}: expected a list of [x1, y1, x2, y2] boxes, got {type(value).__name__}")
    for k, box in enumerate(value):
        if not isinstance(box, list) or len(box) != 4:
            raise SRGError(f"{where}: box {k} is {json.dumps(box)}; expected 4 numbers [x1, y1, x2, y2]")
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in box):
            raise SRGError(f"{where}: box {k} is {json.dumps(box)}; every coordinate must be a number")
        if not all(math.isfinite(v) for v in box):
            raise SRGError(f"{where}: box {k} has a non-finite coordinate ({box}); NaN and infinity are not boxes")
    return np.asarray(value, dtype=np.float64).reshape(-1, 4)


class BoxesFile:
    """`boxes.json`: one list of boxes for every image/frame, or {image file name: list of boxes}.

    A video can carry a list per frame instead: where a list of boxes may stand, a list of such lists (frame k gets
    entry k) — at the top level for any single source, or as a dict value for the video of that file name. Boxes
    that follow moving objects frame by frame need it; one list for the whole clip can only hold where each object
    ever goes. Read such a file with `for_frame`; `for_source` serves the forms that do not change over frames."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SRGError(f"boxes file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SRGError(f"boxes file {path} is not valid JSON: {e}") from None
        self.path = path
        self.per_frame: dict[str | None, list[np.ndarray]] = {}  # None: the top-level list, for every source
        if isinstance(data, dict):
            self.shared = None
            self.by_name = {}
            for k, v in data.items():
                if _is_per_frame(v):
                    self.per_frame[str(k)] = _parse_frames(v, f"{path} [{k!r}]")
                else:
                    self.by_name[str(k)] = parse_boxes(v, f"{path} [{k!r}]")
        elif _is_per_frame(data):
            self.shared = None
            self.by_name = {}
            self.per_frame[None] = _parse_frames(data, str(path))
        else:
            self.shared = parse_boxes(data, str(path))
            self.by_name = {}

    def for_source(self, name: str) -> np.ndarray:
        if self.shared is not None:
            return self.shared
        if name in self.per_frame or None in self.per_frame:
            raise SRGError(f"boxes file {self.path} gives boxes per frame for {name!r}; this command needs one list")
        if name not in self.by_name:
            raise SRGError(f"boxes file {self.path} has no entry for {name!r} (keys are image file names)")
        return self.by_name[name]

    def for_frame(self, name: str, index: int) -> np.ndarray:
        """The boxes of frame `index` (its position in the source) of the source file `name`, in any form."""
        frames = self.per_frame.get(name, self.per_frame.get(None))
        if frames is None:
            return self.for_source(name)
        if not 0 <= index < len(frames):
            raise SRGError(
                f"boxes file {self.path} has boxes for {len(frames)} frames of {name!r}; frame {index} has none"
            )
        return frames[index]


def _is_per_frame(value: object) -> bool:
    """A non-empty list whose every entry is a list of lists (a frame's boxes; [] is a frame without boxes). A box
    is a list of numbers, so a list of boxes never passes."""
    return (
        isinstance(value, list)
        and len(value) > 0
        and all(isinstance(frame, list) and all(isinstance(box, list) for box in frame) for frame in value)
    )


def _parse_frames(value: list, where: str) -> list[np.ndarray]:
    return [parse_boxes(frame, f"{where} frame {k}") for k, frame in enumerate(value)]
