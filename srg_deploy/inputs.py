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
    data = np.fromfile(path, dtype=np.uint8)
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if image is None:
        raise SRGError(f"cannot decode image {path}: not an image file OpenCV can read, or corrupt")
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
    """`boxes.json`: either one list of boxes for every image/frame, or {image file name: list of boxes}."""

    def __init__(self, path: Path) -> None:
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SRGError(f"boxes file {path} does not exist") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise SRGError(f"boxes file {path} is not valid JSON: {e}") from None
        self.path = path
        if isinstance(data, dict):
            self.shared = None
            self.by_name = {str(k): parse_boxes(v, f"{path} [{k!r}]") for k, v in data.items()}
        else:
            self.shared = parse_boxes(data, str(path))
            self.by_name = {}

    def for_source(self, name: str) -> np.ndarray:
        if self.shared is not None:
            return self.shared
        if name not in self.by_name:
            raise SRGError(f"boxes file {self.path} has no entry for {name!r} (keys are image file names)")
        return self.by_name[name]
