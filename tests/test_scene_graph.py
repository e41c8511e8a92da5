"""The scene-graph semantics of docs/DESIGN.md §3, on hand-made boxes and logits."""

from __future__ import annotations

import math

import numpy as np
import pytest

from srg_deploy import scene_graph as sg
from srg_deploy.config import Preprocessing
from srg_deploy.preprocess import preprocess, resized_size, to_frame_pixels, to_model_pixels

IMAGE = (1000, 1000)  # diagonal ~1414, so centres up to ~707 px apart get a direction


def box_at(cx: float, cy: float, half: float = 10.0) -> list[float]:
    return [cx - half, cy - half, cx + half, cy + half]


def classes_for(bi: list[float], bj: list[float], image=IMAGE) -> int:
    return int(sg.spatial_classes(np.array([bi, bj]), image)[0, 1])


def test_inside_covers_overlaps():
    big, small = [100, 100, 300, 300], [150, 150, 200, 200]
    assert classes_for(small, big) == 1  # inside
    assert classes_for(big, small) == 2  # covers
    a, b = [0, 0, 100, 100], [10, 0, 110, 100]  # IoU = 90/110
    assert classes_for(a, b) == 3 and classes_for(b, a) == 3
    assert classes_for(a, a) == 1  # identical boxes: "inside" is the first rule that holds


@pytest.mark.parametrize("k", range(8))
def test_every_direction(k):
    angle = math.radians(45 * k + 22.5)  # middle of sector k, measured counter-clockwise with y up
    dx, dy = 200 * math.cos(angle), -200 * math.sin(angle)  # image y points down
    cls = classes_for(box_at(500, 500), box_at(500 + dx, 500 + dy))
    assert cls == 4 + k
    assert sg.SPATIAL_CLASSES[cls] == f"dir_{k}"


def test_direction_sector_boundaries():
    assert classes_for(box_at(500, 500), box_at(700, 500)) == 4  # theta = 0 -> dir_0
    assert classes_for(box_at(500, 500), box_at(500, 300)) == 6  # straight up: theta = 90 -> dir_2
    assert classes_for(box_at(500, 500), box_at(300, 500)) == 8  # theta = 180 -> dir_4
    assert classes_for(box_at(500, 500), box_at(500, 700)) == 10  # straight down: theta = 270 -> dir_6


def test_far_apart_is_no_relation():
    far = classes_for(box_at(10, 10), box_at(990, 990))  # distance ~1386 > 0.5 * 1414
    assert far == 0
    near_limit = classes_for(box_at(100, 500), box_at(100 + 707, 500))
    assert near_limit == 4


def test_all_eleven_classes_and_none_in_one_graph():
    boxes = np.array(
        [[100, 100, 300, 300], [150, 150, 200, 200], [0, 0, 100, 100], [10, 0, 110, 100], [900, 900, 999, 999]]
    )
    classes = sg.spatial_classes(boxes, IMAGE)
    assert classes[1, 0] == 1 and classes[0, 1] == 2 and classes[2, 3] == 3
    assert classes[2, 4] == 0 and (np.diag(classes) == 0).all()


def test_all_pairs_and_budget():
    assert sg.all_pairs(4).tolist() == [[0, 1], [0, 2], [0, 3], [1, 2], [1, 3], [2, 3]]
    assert sg.all_pairs(0).shape == (0, 2) and sg.all_pairs(1).shape == (0, 2)
    scores = np.array([0.9, 0.1, 0.8, 0.5])
    assert sg.select_pairs(scores, 2).tolist() == [[0, 2], [0, 3]]  # 0.72, 0.45
    assert len(sg.select_pairs(scores, 100)) == 6
    assert sg.select_pairs(np.ones(4), 3).tolist() == [[0, 1], [0, 2], [0, 3]]  # ties keep row-major order


def test_triplet_scoring():
    scores = np.array([0.5, 0.8])
    logits = np.full((1, 2, 4), -10.0)
    logits[0, 0, 2] = 2.0  # 0 -> 1: predicate 2
    logits[0, 1, 0] = 9.0  # 1 -> 0: "no relation" dominates but is excluded; predicate 3 is best of the rest
    logits[0, 1, 3] = 1.0
    triplets = sg.score_triplets(scores, np.array([[0, 1]]), logits)
    p = sg.softmax(logits, -1)
    expected = {(0, 1, 2): 0.4 * p[0, 0, 2], (1, 0, 3): 0.4 * p[0, 1, 3]}
    assert {(int(s), int(o), int(k)): sc for s, o, k, sc in triplets} == pytest.approx(expected)
    assert triplets[0, 3] >= triplets[1, 3]
    assert sg.score_triplets(scores, np.zeros((0, 2), np.int64), np.zeros((0, 2, 4))).shape == (0, 4)


def test_record_schema():
    objects = sg.Objects(np.array([[0, 0, 10, 10], [5, 5, 8, 8]], float), np.array([1.0, 1.0]), np.array([1, 2]))
    logits = np.zeros((1, 2, 3))
    logits[0, 0, 1] = 3
    rec = sg.build_record(
        frame=3,
        source="x.png",
        timestamp_ms=12.5,
        image_size=(40, 30),
        objects=objects,
        pairs=np.array([[0, 1]]),
        relation_logits=logits,
        object_names=["man", "horse"],
        predicate_names=["on", "riding"],
        latency_ms={"model": 1.0},
    )
    assert list(rec) == [
        "frame",
        "source",
        "timestamp_ms",
        "image_size",
        "objects",
        "relations",
        "spatial",
        "latency_ms",
    ]
    assert rec["image_size"] == [40, 30]
    assert rec["objects"][1] == {"id": 1, "box": [5.0, 5.0, 8.0, 8.0], "label": "horse", "score": 1.0}
    assert rec["relations"][0]["predicate"] == "on" and rec["relations"][0]["subject"] == 0
    assert [r["score"] for r in rec["relations"]] == sorted((r["score"] for r in rec["relations"]), reverse=True)
    assert {"subject": 1, "object": 0, "relation": "inside", "class": 1} in rec["spatial"]


def test_preprocess_sizes_and_box_round_trip():
    pp = Preprocessing()
    assert resized_size(640, 480, pp) == (800, 600)
    assert resized_size(2000, 500, pp) == (1000, 250)  # longer side capped
    frame = np.zeros((37, 53, 3), np.uint8)
    image, scale = preprocess(frame, pp)
    assert image.shape == (1, 3, *resized_size(53, 37, pp)[::-1]) and image.dtype == np.float32
    boxes = np.array([[1.0, 2.0, 30.0, 36.0]])
    np.testing.assert_allclose(to_frame_pixels(to_model_pixels(boxes, scale), scale), boxes, rtol=1e-6)


def test_preprocess_channel_order_and_normalisation():
    frame = np.zeros((600, 600, 3), np.uint8)
    frame[..., 0] = 255  # blue in BGR
    rgb, _ = preprocess(frame, Preprocessing())
    bgr, _ = preprocess(frame, Preprocessing(pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1), channel_order="BGR"))
    assert bgr[0, 0].min() == 255 and bgr[0, 2].max() == 0
    assert rgb[0, 2, 0, 0] == pytest.approx((255 - 103.53) / 57.375)
