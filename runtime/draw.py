"""Pictures of a scene-graph record, drawn with OpenCV alone: the annotated frame (boxes, labels, the top relations
as labelled arrows) and the graph itself (objects as nodes, relations as labelled edges)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

FONT = cv2.FONT_HERSHEY_SIMPLEX


@dataclass(frozen=True)
class Style:
    """Text and line sizes that stay legible from 64-pixel thumbnails to 4K frames."""

    scale: float
    thickness: int

    @classmethod
    def for_size(cls, width: int, height: int) -> Style:
        scale = min(max(min(width, height) / 600, 0.35), 1.2)
        return cls(scale, max(1, round(scale * 2)))


def colour(index: int) -> tuple[int, int, int]:
    """A bright BGR colour per object id, the same in every frame and in both pictures."""
    hsv = np.uint8([[[(index * 47) % 180, 200, 255]]])
    b, g, r = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0, 0]
    return int(b), int(g), int(r)


def annotate(image: np.ndarray, record: dict, top_relations: int = 5) -> np.ndarray:
    """A copy of the frame with every object's box and label and the `top_relations` best relations drawn as
    arrows from subject to object, labelled with predicate and score."""
    canvas = image.copy()
    height, width = canvas.shape[:2]
    style = Style.for_size(width, height)
    objects = record["objects"]
    for obj in objects:
        x1, y1, x2, y2 = (round(v) for v in obj["box"])
        cv2.rectangle(canvas, (x1, y1), (x2, y2), colour(obj["id"]), style.thickness, cv2.LINE_AA)
        score = "" if obj["score"] >= 1.0 else f" {obj['score']:.2f}"
        _label(canvas, f"{obj['id']} {obj['label']}{score}", (x1, y1), colour(obj["id"]), style, above=True)
    for rel in record["relations"][:top_relations]:
        start, end = _centre(objects[rel["subject"]]["box"]), _centre(objects[rel["object"]]["box"])
        start, end = _shifted(start, end, 5 * style.thickness)
        cv2.arrowedLine(
            canvas, _pt(start), _pt(end), colour(rel["subject"]), style.thickness, cv2.LINE_AA, tipLength=0.08
        )
        _label(canvas, f"{rel['predicate']} {rel['score']:.2f}", _along(start, end), colour(rel["subject"]), style)
    return canvas


def draw_graph(record: dict, size: tuple[int, int] = (640, 480), top_relations: int = 10) -> np.ndarray:
    """The scene graph as a picture: objects on a circle, the `top_relations` best relations as arrows between
    them labelled with the predicate, and a title naming the frame."""
    width, height = size
    canvas = np.full((height, width, 3), 32, np.uint8)
    style = Style.for_size(width, height)
    title = f"frame {record['frame']}  {record['source']}"
    cv2.putText(canvas, title, (8, int(22 * style.scale / 0.69)), FONT, style.scale, (230, 230, 230), 1, cv2.LINE_AA)
    objects = record["objects"]
    if not objects:
        _label(canvas, "no objects", (width // 2 - 40, height // 2), (200, 200, 200), style)
        return canvas
    centre, radius = (width / 2, height / 2 + 12), min(width, height - 24) * 0.36
    nodes: dict[int, tuple[tuple[float, float], tuple[float, float]]] = {}  # id -> (centre, half size)
    for k, obj in enumerate(objects):
        angle = -math.pi / 2 + 2 * math.pi * k / len(objects)
        position = (centre[0] + radius * math.cos(angle), centre[1] + radius * math.sin(angle))
        (tw, th), _ = cv2.getTextSize(_node_text(obj), FONT, style.scale, style.thickness)
        nodes[obj["id"]] = (position, (tw / 2 + 6, th / 2 + 6))
    for rel in record["relations"][:top_relations]:
        (a, half_a), (b, half_b) = nodes[rel["subject"]], nodes[rel["object"]]
        a, b = _shifted(a, b, 7 * style.thickness)
        start, end = _towards(a, b, half_a), _towards(b, a, half_b)
        cv2.arrowedLine(
            canvas, _pt(start), _pt(end), colour(rel["subject"]), style.thickness, cv2.LINE_AA, tipLength=0.06
        )
        _label(canvas, f"{rel['predicate']} {rel['score']:.2f}", _along(start, end), colour(rel["subject"]), style)
    for obj in objects:
        (x, y), (hw, hh) = nodes[obj["id"]]
        cv2.rectangle(canvas, _pt((x - hw, y - hh)), _pt((x + hw, y + hh)), colour(obj["id"]), -1)
        (tw, th), _ = cv2.getTextSize(_node_text(obj), FONT, style.scale, style.thickness)
        origin = _pt((x - tw / 2, y + th / 2))
        cv2.putText(canvas, _node_text(obj), origin, FONT, style.scale, (0, 0, 0), style.thickness, cv2.LINE_AA)
    return canvas


def _node_text(obj: dict) -> str:
    return f"{obj['id']} {obj['label']}"


def _label(
    canvas: np.ndarray,
    text: str,
    anchor: tuple[int, int],
    background: tuple[int, int, int],
    style: Style,
    above: bool = False,
) -> None:
    """Text on a filled box in `background`, kept inside the canvas: centred on `anchor`, or with `above` standing
    on it (a box's label on its top-left corner)."""
    (tw, th), base = cv2.getTextSize(text, FONT, style.scale * 0.8, 1)
    height, width = canvas.shape[:2]
    x = anchor[0] if above else anchor[0] - tw // 2 - 2
    x = min(max(x, 0), max(width - tw - 4, 0))
    y = anchor[1] - th - base - 4 if above else anchor[1] - (th + base) // 2
    y = min(max(y, 0), max(height - th - base - 4, 0))
    cv2.rectangle(canvas, (x, y), (x + tw + 4, y + th + base + 4), background, -1)
    ink = (0, 0, 0) if sum(background) > 380 else (255, 255, 255)
    cv2.putText(canvas, text, (x + 2, y + th + 2), FONT, style.scale * 0.8, ink, 1, cv2.LINE_AA)


def _centre(box: list[float]) -> tuple[float, float]:
    return (box[0] + box[2]) / 2, (box[1] + box[3]) / 2


def _shifted(
    a: tuple[float, float], b: tuple[float, float], offset: float
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The segment a->b moved `offset` to its left: i->j and j->i have opposite lefts, so they never overlap."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    length = math.hypot(dx, dy) or 1.0
    nx, ny = dy / length * offset, -dx / length * offset
    return (a[0] + nx, a[1] + ny), (b[0] + nx, b[1] + ny)


def _towards(a: tuple[float, float], b: tuple[float, float], half: tuple[float, float]) -> tuple[float, float]:
    """Where the segment from `a` to `b` leaves the rectangle of half size `half` centred on `a`."""
    dx, dy = b[0] - a[0], b[1] - a[1]
    t = min(half[0] / abs(dx) if dx else math.inf, half[1] / abs(dy) if dy else math.inf, 1.0)
    return a[0] + t * dx, a[1] + t * dy


def _along(start: tuple[float, float], end: tuple[float, float], t: float = 0.3) -> tuple[int, int]:
    """Where a relation's label goes: near its subject's end, so the labels of i->j and j->i do not collide."""
    return _pt((start[0] + t * (end[0] - start[0]), start[1] + t * (end[1] - start[1])))


def _pt(p: tuple[float, float]) -> tuple[int, int]:
    return round(p[0]), round(p[1])
