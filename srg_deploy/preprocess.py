"""A frame -> the inputs every backend is fed (`prepare`), and boxes between original-frame and model pixels.

Every backend gets the same preprocessed array, so parity checks compare models, not resizers.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from srg_deploy import scene_graph
from srg_deploy.config import Preprocessing, SRGConfig
from srg_deploy.errors import SRGError


def resized_size(width: int, height: int, pp: Preprocessing) -> tuple[int, int]:
    """(W, H) after scaling the shorter side to `min_size`, capped so the longer side is at most `max_size`."""
    scale = pp.min_size / min(width, height)
    if max(width, height) * scale > pp.max_size:
        scale = pp.max_size / max(width, height)
    return max(int(width * scale + 0.5), 1), max(int(height * scale + 0.5), 1)


def preprocess(frame_bgr: np.ndarray, pp: Preprocessing) -> tuple[np.ndarray, np.ndarray]:
    """BGR uint8 frame [H,W,3] -> (`image` float32 [1,3,h,w], scale [sx, sy] from original to model pixels)."""
    if frame_bgr.ndim != 3 or frame_bgr.shape[2] != 3 or frame_bgr.shape[0] < 1 or frame_bgr.shape[1] < 1:
        raise SRGError(f"expected a colour frame [H,W,3]; got an array of shape {frame_bgr.shape}")
    height, width = frame_bgr.shape[:2]
    new_w, new_h = resized_size(width, height, pp)
    resized = cv2.resize(frame_bgr, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    if pp.channel_order == "RGB":
        resized = resized[:, :, ::-1]
    mean = np.asarray(pp.pixel_mean, np.float32)
    std = np.asarray(pp.pixel_std, np.float32)
    image = (resized.astype(np.float32) - mean) / std
    return np.ascontiguousarray(image.transpose(2, 0, 1)[None]), np.array([new_w / width, new_h / height])


def to_model_pixels(boxes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Original-frame boxes [N,4] -> float32 boxes in the resized `image`."""
    return (np.asarray(boxes, np.float64).reshape(-1, 4) * np.tile(scale, 2)).astype(np.float32)


def to_frame_pixels(boxes: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Boxes in the resized `image` -> original-frame pixels."""
    return np.asarray(boxes, np.float64).reshape(-1, 4) / np.tile(scale, 2)


@dataclass
class Prepared:
    """A frame ready for any backend; verification feeds the same `inputs` to two backends."""

    inputs: dict[str, np.ndarray]
    scale: np.ndarray  # original -> model pixels, [sx, sy]
    image_size: tuple[int, int]  # original (W, H)
    boxes: np.ndarray | None  # given boxes, original pixels


def prepare(
    config: SRGConfig, mode: str, frame_bgr: np.ndarray, boxes: np.ndarray | None, max_pairs: int | None = None
) -> Prepared:
    """A frame as the inputs of a `mode` model of `config`: what every backend is fed (no model needed)."""
    image, scale = preprocess(frame_bgr, config.preprocessing)
    size = (frame_bgr.shape[1], frame_bgr.shape[0])
    if mode == "sgdet":
        if boxes is not None:
            raise SRGError("this model detects its own boxes (sgdet mode); drop --boxes or use a boxes-mode model")
        return Prepared({"image": image}, scale, size, None)
    if boxes is None:
        raise SRGError("this model was exported in boxes mode and needs --boxes; export with --mode sgdet to detect")
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    pairs = scene_graph.select_pairs(np.ones(len(boxes)), max_pairs)
    inputs = {"image": image, "boxes": to_model_pixels(boxes, scale), "pairs": pairs}
    return Prepared(inputs, scale, size, boxes)
