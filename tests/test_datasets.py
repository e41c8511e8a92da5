"""The VG-SGG reader and the dataset generator, on real files written in tmp_path."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import cv2
import h5py
import numpy as np
import pytest

from srg_deploy.commands.dataset import describe_dataset, generate_dataset
from srg_deploy.datasets import Prediction, SGGEvaluator, VGSGGDataset
from srg_deploy.datasets.generate import PREDICATES, layout_relations, vg_image_ids, write_dataset
from srg_deploy.defaults import VAL_IMAGES
from srg_deploy.errors import SRGError
from srg_deploy.synthetic import SyntheticScene

# The demo layout's graph, written out by hand from the rule in generate.py (boxes: 0 square, 1 circle, 2 triangle).
LAYOUT_GRAPH = [
    (0, 1, "left of"),
    (0, 2, "above left of"),
    (1, 0, "right of"),
    (1, 2, "above right of"),
    (2, 0, "below right of"),
    (2, 1, "below left of"),
]


def one_line_error(excinfo: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def edit_h5(root: Path, key: str, change) -> None:
    """Replace dataset `key` of the generated h5 by change(its array); change returns None to delete it."""
    with h5py.File(root / "VG-SGG-with-attri.h5", "a") as f:
        value = change(f[key][()])
        del f[key]
        if value is not None:
            f.create_dataset(key, data=value)


def ids(dataset: VGSGGDataset) -> list[int]:
    return [im.image_id for im in dataset]


# --- the generator -----------------------------------------------------------------------------------------------


def test_generated_files_have_the_vg_sgg_keys_and_dtypes(tmp_path):
    root = tmp_path / "vg"
    write_dataset(root, 6, test_fraction=0.5, empty_images=1, no_relation_images=1)
    boxes, rels = 4 * 3 + 1, 4 * 6  # four full images (3 shapes, 6 relations), one with one shape, one empty
    expected = {
        "split": (np.int32, (6,)),
        "img_to_first_box": (np.int32, (6,)),
        "img_to_last_box": (np.int32, (6,)),
        "img_to_first_rel": (np.int32, (6,)),
        "img_to_last_rel": (np.int32, (6,)),
        "labels": (np.int64, (boxes, 1)),
        "attributes": (np.int64, (boxes, 10)),
        "boxes_1024": (np.int32, (boxes, 4)),
        "boxes_512": (np.int32, (boxes, 4)),
        "relationships": (np.int32, (rels, 2)),
        "predicates": (np.int64, (rels, 1)),
    }
    with h5py.File(root / "VG-SGG-with-attri.h5") as f:
        assert {key: (f[key].dtype, f[key].shape) for key in f} == expected
        assert sorted(f["split"][()].tolist()) == [0, 0, 0, 2, 2, 2]
        assert (f["img_to_first_box"][()] == -1).sum() == 1 and (f["img_to_first_rel"][()] == -1).sum() == 2
    dicts = json.loads((root / "VG-SGG-dicts-with-attri.json").read_text())
    assert dicts["idx_to_label"] == {"1": "square", "2": "circle", "3": "triangle"}
    assert dicts["label_to_idx"] == {"square": 1, "circle": 2, "triangle": 3}
    assert dicts["idx_to_predicate"] == {str(k): name for k, name in enumerate(PREDICATES, 1)}
    assert dicts["predicate_to_idx"]["below left of"] == 5
    assert dicts["idx_to_attribute"] == {"1": "red", "2": "blue", "3": "green"} and "attribute_to_idx" in dicts
    entries = json.loads((root / "image_data.json").read_text())
    assert [(e["image_id"], e["width"], e["height"]) for e in entries] == [(k, 320, 240) for k in range(1, 7)]
    image = cv2.imread(str(root / "VG_100K" / "1.jpg"))
    assert image.shape == (240, 320, 3)


def test_generator_is_reproducible_and_avoids_the_corrupted_ids(tmp_path):
    a = write_dataset(tmp_path / "a", 3, seed=5)
    b = write_dataset(tmp_path / "b", 3, seed=5)
    for name in ("VG-SGG-with-attri.h5", "image_data.json", "VG_100K/2.jpg"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    assert [im.image_id for im in a.images] == [im.image_id for im in b.images] == [1, 2, 3]
    image_ids = vg_image_ids(4700)
    assert image_ids[1590:1592] == [1591, 1593] and image_ids[-1] == 4704  # 1592, 1722, 4616, 4617 left out
    assert len(set(image_ids)) == 4700


def test_tight_boxes_cover_the_rendered_shapes():
    for seed in range(6):
        scene = SyntheticScene(320, 240, seed=seed)
        for index in (0, 17):
            for k in range(3):
                drawn = np.any(scene.render(index, [k]) != scene.background, axis=2)
                ys, xs = np.nonzero(drawn)
                box = scene.boxes(index, [k])[0]
                # exact for the square; anti-aliased circle and triangle edges may tint one more pixel
                assert np.abs(np.array([xs.min(), ys.min(), xs.max(), ys.max()]) - box).max() <= (0 if k == 0 else 1)
    scene = SyntheticScene(320, 240, seed=3)
    assert np.array_equal(scene.render(4), scene.render(4, [0, 1, 2]))
    assert np.array_equal(scene.render(4, []), scene.background)


def test_layout_rule_gives_six_predicates_that_hold_in_every_frame():
    scene = SyntheticScene(320, 240)
    got = [(s, o, PREDICATES[p - 1]) for s, o, p in layout_relations(scene, [0, 1, 2]).tolist()]
    assert got == LAYOUT_GRAPH
    assert layout_relations(scene, [1]).shape == (0, 3)
    # The rule reads the anchors; the jitter must never make a predicate false. Worst case by hand at 320x240:
    # anchors x 80, 217.6, 144 and y 84, 96, 172.8; jitter amplitude = 0.5 x half-extent x 240 = 19.2, 21.6, 16.8.
    assert (144 - 16.8) - (80 + 19.2) > 0  # square always left of triangle (28 px)
    assert (217.6 - 21.6) - (144 + 16.8) > 0  # triangle always left of circle (35.2 px)
    assert (172.8 - 16.8) - (84 + 19.2) > 0 and (172.8 - 16.8) - (96 + 21.6) > 0  # triangle below both (>= 38.4 px)
    for seed in range(1, 60):
        scene = SyntheticScene(320, 240, seed=seed)
        for index in range(0, 300, 23):
            centre = [((x1 + x2) / 2, (y1 + y2) / 2) for x1, y1, x2, y2 in scene.boxes(index)]
            (sx, sy), (cx, cy), (tx, ty) = centre
            assert sx < tx < cx and ty > sy and ty > cy


def test_untrained_heads_recall_at_most_a_sixth_on_the_generated_scene(tmp_path):
    """PredCls R@50 on the generated test split: an oracle head 1.0; a head that always answers the same predicate
    exactly 1/6 (each image has six triplets with six different predicates); random logits well below 0.35."""
    root = tmp_path / "vg"
    write_dataset(root, 24, test_fraction=0.5)
    test = VGSGGDataset(root, "test")
    rng = np.random.default_rng(0)

    def r50(logits_for) -> float:
        evaluator = SGGEvaluator(test.predicates)
        for gt in test:
            pairs = np.array([[0, 1], [0, 2], [1, 2]])
            pred = Prediction(gt.boxes, gt.labels, np.ones(3), pairs, logits_for(gt, pairs))
            evaluator.add(gt, pred)
        return evaluator.result()["recall"]["50"]

    def oracle(gt, pairs):
        logits = np.zeros((3, 2, 7))
        for s, o, p in gt.relations:
            row = [tuple(q) for q in pairs.tolist()].index((min(s, o), max(s, o)))
            logits[row, int(s > o), p] = 10.0
        return logits

    assert r50(oracle) == 1.0
    for constant in range(1, 7):
        logits = np.zeros((3, 2, 7))
        logits[..., constant] = 5.0
        assert r50(lambda gt, pairs, logits=logits: logits) == pytest.approx(1 / 6)
    assert r50(lambda gt, pairs: rng.normal(0, 3, (3, 2, 7))) < 0.35


# --- the reader: boxes, splits, filters --------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(320, 240), (240, 320)])
def test_boxes_decode_to_the_pixels_written(tmp_path, size):
    root = tmp_path / "vg"
    info = write_dataset(root, 5, test_fraction=0.0, size=size)
    dataset = VGSGGDataset(root, "train", val_images=0)
    assert len(dataset) == 5
    unit = max(size) / 1024  # one step of the h5's 1024 grid, in pixels
    for got, written in zip(dataset, info.images):
        assert (got.image_id, got.width, got.height) == (written.image_id, *size)
        assert got.path == root / "VG_100K" / f"{written.image_id}.jpg"
        assert got.boxes.dtype == np.float64 and got.labels.dtype == np.int64 and got.relations.dtype == np.int64
        np.testing.assert_array_equal(got.labels, [1, 2, 3])
        np.testing.assert_array_equal(got.relations, written.relations)
        # the decoded box holds the written one and is at most one grid step larger on each side
        assert np.all(got.boxes[:, :2] <= written.boxes[:, :2]) and np.all(got.boxes[:, 2:] >= written.boxes[:, 2:])
        assert np.abs(got.boxes - written.boxes).max() < unit
    assert dataset.read_image(0).shape == (size[1], size[0], 3)


def test_box_decoding_follows_load_graphs_by_hand(tmp_path):
    """(cx, cy, w, h) in the 1024 frame -> x1 = trunc(cx - w/2), x2 = x1 + w, then x 320/1024, clipped to the image."""
    root = tmp_path / "vg"
    write_dataset(root, 1, test_fraction=0.0)
    hand = np.array([[101, 50, 21, 10], [5, 3, 11, 7], [1015, 700, 30, 20]], np.int32)
    edit_h5(root, "boxes_1024", lambda b: np.vstack([hand, b[3:]]))
    boxes = VGSGGDataset(root, val_images=0)[0].boxes
    expected = [
        [90 * 0.3125, 45 * 0.3125, 111 * 0.3125, 55 * 0.3125],  # 101 - 10.5 = 90.5 truncates to 90
        [0.0, 0.0, 11 * 0.3125, 7 * 0.3125],  # 5 - 5.5 = -0.5 truncates toward zero: 0, not -1
        [1000 * 0.3125, 690 * 0.3125, 319.0, 710 * 0.3125],  # x2 = 321.875 clipped to width - 1
    ]
    np.testing.assert_array_equal(boxes, expected)


def test_boxes_empty_after_clipping_leave_the_train_split_with_their_relations(tmp_path):
    """SGB's training targets (clip_to_image(remove_empty=True)); evaluation keeps every box, as SGB's."""
    root = tmp_path / "vg"
    write_dataset(root, 2, test_fraction=0.0)
    # Image 0's circle (box 1) moved wholly right of the 320-px frame: clipped to x1 = x2 = 319.
    edit_h5(root, "boxes_1024", lambda b: np.vstack([b[:1], [[1100, 300, 40, 40]], b[2:]]).astype(np.int32))
    first = write_dataset(tmp_path / "same", 2, test_fraction=0.0).images[0]
    train = VGSGGDataset(root, val_images=0)[0]
    np.testing.assert_array_equal(train.boxes, VGSGGDataset(root, val_images=1, split="val")[0].boxes[[0, 2]])
    assert train.labels.tolist() == [1, 3]
    # square -> triangle and triangle -> square survive, renumbered (triangle was box 2, now 1)
    kept = [(s, o, p) for s, o, p in first.relations.tolist() if 1 not in (s, o)]
    assert train.relations.tolist() == [[s, min(o, 1), p] if o == 2 else [min(s, 1), o, p] for s, o, p in kept]
    assert len(VGSGGDataset(root, val_images=1, split="val")[0].boxes) == 3


def test_splits_val_images_and_filters(tmp_path):
    root = tmp_path / "vg"
    info = write_dataset(root, 14, test_fraction=0.25, empty_images=2, no_relation_images=3, seed=3)
    train0 = [im for im in info.images if im.split == 0]
    assert any(len(im.boxes) == 0 for im in train0) and any(len(im.boxes) == 1 for im in train0)  # precondition
    full0 = [im.image_id for im in train0 if len(im.relations)]
    boxed0 = [im.image_id for im in train0 if len(im.boxes)]
    full_test = [im.image_id for im in info.images if im.split == 2 and len(im.relations)]

    assert ids(VGSGGDataset(root, "val", val_images=2)) == full0[:2]
    assert ids(VGSGGDataset(root, "train", val_images=2)) == full0[2:]
    assert ids(VGSGGDataset(root, "test", val_images=2)) == full_test
    assert ids(VGSGGDataset(root, "train", val_images=0)) == full0
    # without the empty-relation filter: images with one box and no relation come back; images without boxes never
    kept = VGSGGDataset(root, "train", val_images=0, filter_empty_rels=False)
    assert ids(kept) == boxed0
    lone = [im for im in kept if len(im.labels) == 1]
    assert lone and all(im.relations.shape == (0, 3) for im in lone)
    assert ids(VGSGGDataset(root, "val", val_images=3, filter_empty_rels=False)) == boxed0[:3]

    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, "val", val_images=0)
    one_line_error(e, "val_images is 0", "no val split")
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, "train", val_images=len(full0))
    one_line_error(e, f"all {len(full0)} split-0 images with boxes and relations are taken by val_images")
    with pytest.raises(SRGError, match="unknown split 'dev'"):
        VGSGGDataset(root, "dev")


def test_max_images_and_describe(tmp_path):
    root = tmp_path / "vg"
    write_dataset(root, 8, test_fraction=0.0)
    dataset = VGSGGDataset(root, "train", val_images=2, max_images=3)
    assert ids(dataset) == [3, 4, 5]
    assert (
        dataset.describe()
        == f"{root}: train split, 3 images, 9 boxes, 18 relations (3 object classes, 6 predicates; VG-SGG-with-attri.h5)"
    )
    with pytest.raises(IndexError):
        dataset[3]


def test_duplicate_relations_keep_one_predicate_on_train_only(tmp_path):
    root = tmp_path / "vg"
    info = write_dataset(root, 8, test_fraction=0.5, duplicate_relations=True)
    written = {im.image_id: im.relations for im in info.images}
    assert all(len(r) == 7 and r[0, :2].tolist() == r[6, :2].tolist() for r in written.values())  # pair 0 -> 1 twice

    train = VGSGGDataset(root, "train", val_images=0)
    for im in train:
        pairs = im.relations[:, :2].tolist()
        assert len(pairs) == 6 and len({tuple(p) for p in pairs}) == 6
        np.testing.assert_array_equal(im.relations[1:], written[im.image_id][1:6])  # order of first appearance
        assert im.relations[0].tolist() in ([0, 1, 1], [0, 1, 2])  # "left of" or its duplicate "right of"
    again = VGSGGDataset(root, "train", val_images=0)
    assert all(np.array_equal(a.relations, b.relations) for a, b in zip(train, again))  # same seed, same choice
    chosen = {int(VGSGGDataset(root, "train", val_images=0, seed=s)[0].relations[0, 2]) for s in range(20)}
    assert chosen == {1, 2}
    assert "24 relations" in train.describe()

    kept = VGSGGDataset(root, "train", val_images=0, filter_duplicate_rels=False)
    assert all(np.array_equal(im.relations, written[im.image_id]) for im in kept)
    test = VGSGGDataset(root, "test")
    assert all(np.array_equal(im.relations, written[im.image_id]) for im in test)
    assert "28 relations" in test.describe()


def test_non_overlap_filter_uses_the_plus_one_convention(tmp_path):
    root = tmp_path / "vg"
    write_dataset(root, 2, test_fraction=0.0)
    # image 0: the triangle's box touches the square's (x 0..100 and 100..200: one shared pixel column with +1),
    # the circle's touches neither. image 1: three boxes two pixels apart, no relation overlaps: the image goes.
    image0 = [[50, 50, 100, 100], [550, 50, 100, 100], [150, 50, 100, 100]]
    image1 = [[50, 50, 100, 100], [550, 50, 100, 100], [152, 50, 100, 100]]
    edit_h5(root, "boxes_1024", lambda b: np.array([*image0, *image1], np.int32))
    dataset = VGSGGDataset(root, "train", val_images=0, filter_non_overlap=True)
    assert ids(dataset) == [1]
    assert dataset[0].relations.tolist() == [[0, 2, 3], [2, 0, 6]]  # square -> triangle, triangle -> square
    assert "1 images, 3 boxes, 2 relations" in dataset.describe()
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, "test", filter_non_overlap=True)
    one_line_error(e, "train split only")


# --- the reader: every way the files can be wrong ----------------------------------------------------------------


def test_corrupted_names_are_skipped_as_scene_graph_benchmark_does(tmp_path):
    root = tmp_path / "vg"
    write_dataset(root, 4, test_fraction=0.0)
    entries = json.loads((root / "image_data.json").read_text())
    shutil.copy(root / "VG_100K" / "1.jpg", root / "VG_100K" / "1592.jpg")
    entries.insert(1, {"image_id": 1592, "width": 320, "height": 240})  # present but listed as corrupted
    entries.append({"image_id": 4617, "width": 320, "height": 240})  # corrupted and absent
    (root / "image_data.json").write_text(json.dumps(entries))
    assert ids(VGSGGDataset(root, val_images=0)) == [1, 2, 3, 4]

    entries.insert(2, {"image_id": 77, "width": 320, "height": 240})  # an extra image with no h5 entry
    shutil.copy(root / "VG_100K" / "1.jpg", root / "VG_100K" / "77.jpg")
    (root / "image_data.json").write_text(json.dumps(entries))
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0)
    one_line_error(e, "image_data.json: 5 of its images", "VG-SGG-with-attri.h5 describes 4")


def test_a_missing_image_is_one_line_naming_it(tmp_path):
    root = tmp_path / "vg"
    write_dataset(root, 4, test_fraction=0.0)
    dataset = VGSGGDataset(root, val_images=0)
    (root / "VG_100K" / "2.jpg").unlink()
    with pytest.raises(SRGError) as e:
        dataset.read_image(1)
    one_line_error(e, str(root / "VG_100K" / "2.jpg"), "does not exist")
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0)
    one_line_error(e, "3 of its images are in", "describes 4", f"e.g. {root / 'VG_100K' / '2.jpg'} is missing")
    (root / "VG_100K" / "2.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0).read_image(1)
    one_line_error(e, "cannot decode", "2.jpg")


@pytest.mark.parametrize("damage", ["truncated", "not hdf5", "empty"])
def test_a_broken_h5_is_one_line_naming_it(tmp_path, damage):
    root = tmp_path / "vg"
    write_dataset(root, 3)
    h5 = root / "VG-SGG-with-attri.h5"
    data = h5.read_bytes()
    h5.write_bytes({"truncated": data[: len(data) // 2], "not hdf5": b"hello " * 100, "empty": b""}[damage])
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0)
    one_line_error(e, f"cannot read {h5}", "not an HDF5 file, or truncated")


@pytest.mark.parametrize(
    ("key", "change", "fragments"),
    [
        ("predicates", lambda a: None, ["has no dataset 'predicates'"]),
        ("predicates", lambda a: a[:-1], ["'relationships' has shape (18, 2); expected (17, 2)"]),
        ("img_to_last_box", lambda a: a[:-1], ["'img_to_last_box' has shape (2,); expected (3,)"]),
        ("boxes_1024", lambda a: a.astype(np.float32), ["'boxes_1024' holds float32; expected integers"]),
        ("labels", lambda a: np.where(a == 3, 4, a), ["labels[2] is 4, outside 1..3"]),
        ("predicates", lambda a: np.where(a == 1, 0, a), ["predicates[0] is 0, outside 1..6"]),
        ("boxes_1024", lambda a: np.vstack([[[10, 10, 0, 5]], a[1:]]).astype(np.int32), ["box 0 in 'boxes_1024'"]),
        (
            "relationships",
            lambda a: np.vstack([[[0, 3]], a[1:]]).astype(np.int32),
            ["relationships[0] of image 0 is [0, 3], outside that image's boxes 0..2"],
        ),
        (
            "img_to_last_box",
            lambda a: np.append(a[:-1], 9),
            ["image 2 has img_to_first_box 6 and img_to_last_box 9; expected first <= last < 9"],
        ),
        (
            "img_to_first_rel",
            lambda a: np.append(a[:-1], 20),
            ["image 2 has img_to_first_rel 20 and img_to_last_rel 17"],
        ),
    ],
)
def test_malformed_h5_is_one_line_naming_file_and_problem(tmp_path, key, change, fragments):
    root = tmp_path / "vg"
    write_dataset(root, 3, test_fraction=0.0)
    edit_h5(root, key, change)
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0)
    one_line_error(e, str(root / "VG-SGG-with-attri.h5"), *fragments)


@pytest.mark.parametrize(
    ("remove", "fragment"),
    [
        ("VG-SGG-with-attri.h5", "no VG-SGG-with-attri.h5 or VG-SGG.h5"),
        ("VG-SGG-dicts-with-attri.json", "no VG-SGG-dicts-with-attri.json or VG-SGG-dicts.json"),
        ("image_data.json", "no image_data.json"),
        ("VG_100K", "no VG_100K/ folder"),
        (".", "does not exist"),
    ],
)
def test_missing_files_are_one_line(tmp_path, remove, fragment):
    root = tmp_path / "vg"
    write_dataset(root, 2)
    target = root / remove
    shutil.rmtree(target) if target.is_dir() else target.unlink()
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0)
    one_line_error(e, str(root), fragment)


def test_plain_vg_sgg_names_and_vocabulary_checks(tmp_path):
    root = tmp_path / "vg"
    write_dataset(root, 3, test_fraction=0.0)
    (root / "VG-SGG-with-attri.h5").rename(root / "VG-SGG.h5")
    dicts = root / "VG-SGG-dicts.json"
    (root / "VG-SGG-dicts-with-attri.json").rename(dicts)
    dataset = VGSGGDataset(root, val_images=0)
    assert dataset.objects == ("square", "circle", "triangle")
    assert dataset.predicates == PREDICATES
    assert dataset.describe().endswith("VG-SGG.h5)")

    info = json.loads(dicts.read_text())
    info["idx_to_label"]["1"] = "box"
    dicts.write_text(json.dumps(info))
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0)
    one_line_error(e, str(dicts), "idx_to_label and label_to_idx disagree")
    info["idx_to_label"]["1"] = "square"
    info["predicate_to_idx"]["left of"] = 9
    dicts.write_text(json.dumps(info))
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0)
    one_line_error(e, str(dicts), "predicate_to_idx indices must be 1..6")
    dicts.write_text("{")
    with pytest.raises(SRGError) as e:
        VGSGGDataset(root, val_images=0)
    one_line_error(e, str(dicts), "not valid JSON")


def test_layout_angles_stated_in_the_docstring():
    """generate.py's docstring quotes the anchors' angles off horizontal; keep them true."""
    anchors = {"square": (80, 84), "circle": (217.6, 96), "triangle": (144, 172.8)}

    def off_horizontal(a: str, b: str) -> float:
        (xa, ya), (xb, yb) = anchors[a], anchors[b]
        return math.degrees(math.atan2(abs(ya - yb), abs(xa - xb)))

    assert round(off_horizontal("square", "circle")) == 5
    assert round(off_horizontal("square", "triangle")) == 54
    assert round(off_horizontal("circle", "triangle")) == 46
    scene = SyntheticScene(320, 240)
    np.testing.assert_allclose([(ax * 320, ay * 240) for ax, ay, _ in scene.anchors], list(anchors.values()))


def test_dataset_command_helpers(tmp_path):
    line = generate_dataset(tmp_path / "vg", 4, seed=0, size="160x120", test_fraction=0.5)
    assert line.startswith(f"wrote {tmp_path / 'vg'}: 4 images (2 split 0, 2 test), 12 boxes, 24 relations")
    assert describe_dataset(tmp_path / "vg", "test", VAL_IMAGES) == (
        f"{tmp_path / 'vg'}: test split, 2 images, 6 boxes, 12 relations "
        "(3 object classes, 6 predicates; VG-SGG-with-attri.h5)"
    )
    with pytest.raises(SRGError, match="--size must look like 320x240"):
        generate_dataset(tmp_path / "bad", 4, seed=0, size="big", test_fraction=0.5)


def test_the_data_layer_imports_without_torch():
    code = (
        "import sys, srg_deploy.datasets, srg_deploy.datasets.generate, srg_deploy.commands.dataset; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
