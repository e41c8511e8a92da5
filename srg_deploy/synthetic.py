"""Generated frames: the moving scene of the `synthetic:WxH` source, the demo's sample video and the soak
benchmark; the still sample and noise frames that `export` and `build-engine` check models on.

Three coloured shapes jitter around fixed anchors over a textured background. Each shape stays inside its own
region in every frame, so one list of boxes (`regions`) is right for the whole clip: the list form of boxes.json.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from srg_deploy.errors import SRGError

SHAPES = ("square", "circle", "triangle")  # the scene's shapes, in drawing order


class SyntheticScene:
    """Frame `k` of a `width` x `height` clip; the same (size, seed, k) always renders the same pixels."""

    def __init__(self, width: int, height: int, seed: int = 0) -> None:
        if width < 16 or height < 16:
            raise SRGError(f"a synthetic scene needs at least 16x16 pixels; got {width}x{height}")
        self.width, self.height = width, height
        rng = np.random.default_rng(seed)
        yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
        texture = rng.normal(0, 12, (height, width, 3)).astype(np.float32)
        background = np.stack([60 + 80 * xx / width, 70 + 60 * yy / height, 90 + 40 * (xx + yy) / (width + height)], -1)
        self.background = np.clip(background + texture, 0, 255).astype(np.uint8)
        # (centre x, centre y, half-extent) as fractions of the frame; jitter stays inside the region.
        self.anchors = ((0.25, 0.35, 0.16), (0.68, 0.40, 0.18), (0.45, 0.72, 0.14))
        self.colours = ((40, 80, 230), (230, 170, 30), (60, 200, 90))
        self.phases = rng.uniform(0, 2 * math.pi, (len(self.anchors), 2))

    def regions(self) -> list[list[float]]:
        """[x1, y1, x2, y2] per shape, in pixels: where that shape is in every frame."""
        scale = min(self.width, self.height)
        boxes = []
        for cx, cy, half in self.anchors:
            r = half * scale * 1.6  # shape extent + jitter amplitude
            x, y = cx * self.width, cy * self.height
            boxes.append(
                [max(0.0, x - r), max(0.0, y - r), min(self.width - 1.0, x + r), min(self.height - 1.0, y + r)]
            )
        return [[round(v, 1) for v in box] for box in boxes]

    def render(self, index: int, shapes: Sequence[int] | None = None) -> np.ndarray:
        """BGR uint8 [H, W, 3]. `shapes` draws only those shapes (indices into `SHAPES`, drawn in index order); the
        generated dataset uses it for frames with one shape or none."""
        return self.draw(self.placements(index, shapes))

    def boxes(self, index: int, shapes: Sequence[int] | None = None) -> list[list[float]]:
        """Each drawn shape's tight box [x1, y1, x2, y2] in frame `index`, in inclusive pixel coordinates (the
        first and last pixel column and row the shape covers before anti-aliasing), clipped to the frame."""
        return self.placement_boxes(self.placements(index, shapes))

    def draw(self, placements: Sequence[tuple[int, float, float, float]]) -> np.ndarray:
        """The background with each (shape, centre x, centre y, half-extent) drawn on it, in that order."""
        frame = self.background.copy()
        for k, x, y, size in placements:
            colour = self.colours[k]
            if k == 0:
                cv2.rectangle(frame, _pt(x - size, y - size), _pt(x + size, y + size), colour, -1)
            elif k == 1:
                cv2.circle(frame, _pt(x, y), max(1, int(size)), colour, -1, cv2.LINE_AA)
            else:
                cv2.fillConvexPoly(frame, self._triangle(x, y, size), colour, cv2.LINE_AA)
        return frame

    def placement_boxes(self, placements: Sequence[tuple[int, float, float, float]]) -> list[list[float]]:
        """The tight box of each placement as `draw` draws it (see `boxes`)."""
        boxes = []
        for k, x, y, size in placements:
            if k == 0:
                (x1, y1), (x2, y2) = _pt(x - size, y - size), _pt(x + size, y + size)
            elif k == 1:
                (cx, cy), r = _pt(x, y), max(1, int(size))
                x1, y1, x2, y2 = cx - r, cy - r, cx + r, cy + r
            else:
                triangle = self._triangle(x, y, size)
                (x1, y1), (x2, y2) = triangle.min(axis=0), triangle.max(axis=0)
            w, h = self.width - 1, self.height - 1
            boxes.append([float(min(max(x1, 0), w)), float(min(max(y1, 0), h)), float(min(x2, w)), float(min(y2, h))])
        return boxes

    def placements(self, index: int, shapes: Sequence[int] | None = None) -> list[tuple[int, float, float, float]]:
        """(shape, centre x, centre y, half-extent) of each anchored shape in frame `index`: one source of truth for
        `render` and `boxes`."""
        scale = min(self.width, self.height)
        placed = []
        for k in range(len(self.anchors)) if shapes is None else sorted(shapes):
            cx, cy, half = self.anchors[k]
            amplitude = half * scale * 0.5
            x = cx * self.width + amplitude * math.sin(0.21 * index + self.phases[k, 0])
            y = cy * self.height + amplitude * math.cos(0.17 * index + self.phases[k, 1])
            placed.append((k, x, y, half * scale))
        return placed

    @staticmethod
    def _triangle(x: float, y: float, size: float) -> np.ndarray:
        return np.array([_pt(x, y - size), _pt(x - size, y + size), _pt(x + size, y + size)], np.int32)


def sample_frame(height: int = 300, width: int = 420, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A seeded synthetic BGR frame (smooth gradients, shapes, noise) and boxes covering ordinary and awkward
    cases (overlapping, nested, touching the border, tiny), in frame pixels."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    frame = np.stack([xx * 255 / width, yy * 255 / height, (xx + yy) % 128 * 2], -1)
    frame = frame + rng.normal(0, 12, frame.shape)
    frame[40:160, 60:200] = (30, 90, 220)
    frame[120:280, 220:400] = (200, 160, 40)
    boxes = np.array(
        [
            [60, 40, 200, 160],
            [220, 120, 400, 280],
            [90, 70, 140, 120],
            [0, 0, width - 1, height - 1],
            [180, 100, 260, 200],
            [300, 10, 304, 14],
        ],
        dtype=np.float64,
    )
    return np.clip(frame, 0, 255).astype(np.uint8), boxes


def noise_frame(height: int, width: int, seed: int = 0) -> np.ndarray:
    """Uniform pixel noise: no camera produces it, which makes it the input where fp16 errors are largest."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x), round(y)
