"""Write a small dataset in the VG-SGG layout: real files for the reader's tests, and a scene the demo can learn.

Every image is a frame of the demo's own sample scene (`SyntheticScene`): a square, a circle and a triangle in their
fixed colours, each jittering around its fixed anchor over a textured background. Each image draws its own
background seed (hence texture and jitter phases) and frame index, so no two images are alike, and the boxes are the
shapes' tight boxes in that frame (`SyntheticScene.boxes`). Seeds start at 1: the demo video (seed 0) is not in it.

Vocabulary: objects ("square", "circle", "triangle"); predicates ("left of", "right of", "above left of",
"above right of", "below left of", "below right of"); attributes ("red", "blue", "green"), one per shape.

Relation rule, for every ordered pair (subject, object) of shapes in an image, read from the two shapes' anchors
(where they rest): the side is "left of" when the subject's anchor is left of the object's, else "right of"; when
the line between the anchors is at least 22.5° off horizontal, it is prefixed with "above" or "below" (the subject's
anchor higher or lower in the image). In the scene's layout (anchors at 320x240: square (80, 84), circle (217.6,
96), triangle (144, 172.8)) this gives six different predicates, one per ordered pair:

    square -> circle "left of" (5° off horizontal)     circle -> square "right of"
    square -> triangle "above left of" (54°)          triangle -> square "below right of"
    circle -> triangle "above right of" (46°)         triangle -> circle "below left of"

The rule is unambiguous in this layout: every angle is at least 17° from the 22.5° threshold, and the jitter never
reverses the horizontal order of two shapes nor the vertical order of a pair called above/below (a test checks this
over many frames), so each predicate holds in every frame. Why six different predicates on all six ordered pairs:
PredCls ranks every ordered pair with its most probable predicate, so R@50 counts, per image, how many of the six
pairs get the right one. An untrained head picks about one in six; even the worst case, one predicate for
everything, recalls exactly 1/6 of each image's triplets; a trained head can reach 1.0.

Dense images (`boxes_per_image=(lo, hi)`, as Visual Genome's 8-14 boxes): every image with shapes draws, after
the three anchored shapes, extra shapes of random kind, place and size until it has a box count drawn from lo..hi;
each extra shape gets one relation, to or from a random other box of the image, by the same rule read from the two
boxes' centres. Extra shapes may overlap and hide each other: a crowded image, as real ones are.

For tests: `empty_images` draw no shape (no boxes, -1 ranges in the h5), `no_relation_images` draw one shape (a
box, no relation), `duplicate_relations` gives each image with relations a second predicate for its first pair (as
Visual Genome annotates some pairs twice), and the last `test_fraction` of the images are split 2 (test).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import h5py
import numpy as np

from srg_deploy.atomic import atomic_path, write_bytes, write_text
from srg_deploy.datasets.vg_sgg import BOX_SCALE, CORRUPTED, IMAGE_DIR
from srg_deploy.errors import SRGError
from srg_deploy.synthetic import SHAPES, SyntheticScene

OBJECTS = SHAPES
PREDICATES = ("left of", "right of", "above left of", "above right of", "below left of", "below right of")
ATTRIBUTES = ("red", "blue", "green")  # SyntheticScene's colours (BGR 40,80,230 / 230,170,30 / 60,200,90)
LEVEL_DEGREES = 22.5  # a pair at most this far off horizontal is only "left of" / "right of"
MAX_ATTRIBUTES = 10  # attribute slots per box in VG-SGG-with-attri.h5
H5_NAME, DICTS_NAME = "VG-SGG-with-attri.h5", "VG-SGG-dicts-with-attri.json"


@dataclass(frozen=True)
class GeneratedImage:
    """What was written for one image, in h5 order: the ground truth the reader must give back."""

    image_id: int
    split: int  # 0 train/val, 2 test
    path: Path
    boxes: np.ndarray  # [B,4] float64 tight boxes in pixels, inclusive (x2 is the last pixel column)
    labels: np.ndarray  # [B] int64, 1-based
    relations: np.ndarray  # [R,3] int64 (subject box, object box, predicate 1-based), duplicates included


@dataclass(frozen=True)
class GeneratedInfo:
    root: Path
    objects: tuple[str, ...]
    predicates: tuple[str, ...]
    images: tuple[GeneratedImage, ...]

    def describe(self) -> str:
        """One line: where, how many images per split, boxes and relations."""
        train = sum(im.split == 0 for im in self.images)
        boxes = sum(len(im.boxes) for im in self.images)
        relations = sum(len(im.relations) for im in self.images)
        return (
            f"{self.root}: {len(self.images)} images ({train} split 0, {len(self.images) - train} test), "
            f"{boxes} boxes, {relations} relations; objects {', '.join(self.objects)}"
        )


def write_dataset(
    root: Path,
    images: int = 64,
    *,
    seed: int = 0,
    size: tuple[int, int] = (320, 240),
    test_fraction: float = 0.25,
    empty_images: int = 0,
    no_relation_images: int = 0,
    duplicate_relations: bool = False,
    boxes_per_image: tuple[int, int] | None = None,
) -> GeneratedInfo:
    """Write `images` images (of which `empty_images` without shapes and `no_relation_images` with one shape) of
    `size` (W, H) under `root` in the VG-SGG layout; every file is written atomically. Same arguments, same bytes."""
    root = Path(root)
    if images < 1:
        raise SRGError(f"a generated dataset needs at least 1 image; got {images}")
    if empty_images < 0 or no_relation_images < 0 or empty_images + no_relation_images > images:
        raise SRGError(
            f"empty_images ({empty_images}) and no_relation_images ({no_relation_images}) must be >= 0 and together "
            f"at most images ({images})"
        )
    if boxes_per_image is not None and not len(SHAPES) <= boxes_per_image[0] <= boxes_per_image[1]:
        raise SRGError(f"boxes_per_image must be (lo, hi) with {len(SHAPES)} <= lo <= hi; got {boxes_per_image}")
    if not 0.0 <= test_fraction < 1.0:
        raise SRGError(f"test_fraction must be in [0, 1); got {test_fraction}")
    rng = np.random.default_rng(seed)
    kinds = ["empty"] * empty_images + ["one"] * no_relation_images
    kinds += ["full"] * (images - len(kinds))
    kinds = [kinds[k] for k in rng.permutation(images)]
    first_test = images - round(images * test_fraction)
    written = []
    for n, (image_id, kind) in enumerate(zip(vg_image_ids(images), kinds)):
        scene = SyntheticScene(*size, seed=int(rng.integers(1, 2**31 - 1)))
        index = int(rng.integers(0, 1000))
        shapes = {"empty": [], "one": [n % len(SHAPES)], "full": list(range(len(SHAPES)))}[kind]
        path = root / IMAGE_DIR / f"{image_id}.jpg"
        placements = scene.placements(index, shapes)
        relations = layout_relations(scene, shapes)
        if boxes_per_image and kind == "full":
            placements, relations = _crowd(scene, placements, relations, rng, boxes_per_image)
        ok, jpeg = cv2.imencode(".jpg", scene.draw(placements), [cv2.IMWRITE_JPEG_QUALITY, 95])
        if not ok:
            raise SRGError(f"cannot encode {path} as JPEG")
        write_bytes(path, jpeg.tobytes())
        if duplicate_relations and len(relations):
            s, o, p = relations[0]
            relations = np.vstack([relations, [s, o, p % len(PREDICATES) + 1]])
        written.append(
            GeneratedImage(
                image_id=image_id,
                split=0 if n < first_test else 2,
                path=path,
                boxes=np.array(scene.placement_boxes(placements), np.float64).reshape(-1, 4),
                labels=np.array([k for k, *_ in placements], np.int64) + 1,
                relations=relations,
            )
        )
    _write_image_data(root, written, size)
    _write_dicts(root, written)
    _write_h5(root, written, size)
    return GeneratedInfo(root, OBJECTS, PREDICATES, tuple(written))


def layout_relations(scene: SyntheticScene, shapes: list[int]) -> np.ndarray:
    """[R,3] (subject box, object box, predicate 1-based) for every ordered pair of the drawn `shapes` (box k is
    shapes[k]), by the module's rule on the shapes' anchors."""
    anchors = [(scene.anchors[k][0] * scene.width, scene.anchors[k][1] * scene.height) for k in shapes]
    rows = [
        (i, j, centre_predicate(anchors[i], anchors[j]))
        for i in range(len(anchors))
        for j in range(len(anchors))
        if i != j
    ]
    return np.array(rows, np.int64).reshape(-1, 3)


def centre_predicate(subject: tuple[float, float], obj: tuple[float, float]) -> int:
    """The module's rule (1-based predicate) for a subject and an object at these points."""
    (xi, yi), (xj, yj) = subject, obj
    side = "left of" if xi < xj else "right of"
    if math.degrees(math.atan2(abs(yi - yj), abs(xi - xj))) >= LEVEL_DEGREES:
        side = ("above " if yi < yj else "below ") + side
    return PREDICATES.index(side) + 1


def _crowd(
    scene: SyntheticScene,
    placements: list[tuple[int, float, float, float]],
    relations: np.ndarray,
    rng: np.random.Generator,
    boxes_per_image: tuple[int, int],
) -> tuple[list[tuple[int, float, float, float]], np.ndarray]:
    """The anchored shapes plus extra ones up to a box count drawn from `boxes_per_image`, each extra with one
    relation to or from a random earlier box (see the module's docstring)."""
    scale = min(scene.width, scene.height)
    placements, rows = list(placements), [tuple(r) for r in relations]
    for n in range(len(placements), int(rng.integers(boxes_per_image[0], boxes_per_image[1] + 1))):
        size = scale * rng.uniform(0.05, 0.12)
        x, y = rng.uniform(size, scene.width - size), rng.uniform(size, scene.height - size)
        placements.append((int(rng.integers(0, len(SHAPES))), x, y, size))
        other = int(rng.integers(0, n))
        s, o = (n, other) if rng.random() < 0.5 else (other, n)
        rows.append((s, o, centre_predicate(placements[s][1:3], placements[o][1:3])))
    return placements, np.array(rows, np.int64).reshape(-1, 3)


def encode_boxes(boxes: np.ndarray, size: tuple[int, int], long_side: int) -> np.ndarray:
    """Pixel boxes -> the h5's int32 (cx, cy, w, h) in a frame whose longer side is `long_side`. x = floor(x1 * s),
    w = ceil(x2 * s) - x, cx = x + ceil(w / 2): load_graphs' decoding (x1 = trunc(cx - w / 2), x2 = x1 + w) then
    gives back exactly [floor(x1 * s), ceil(x2 * s)] / s, the smallest box of that frame's grid holding the pixel
    box. (IMP's encode_box uses cx = x + floor(w / 2), which decodes one unit to the left for odd w.)"""
    scale = long_side / max(size)
    lo = np.floor(boxes[:, :2] * scale)
    wh = np.maximum(np.ceil(boxes[:, 2:] * scale) - lo, 1)
    return np.concatenate([lo + np.ceil(wh / 2), wh], axis=1).astype(np.int32).reshape(-1, 4)


def vg_image_ids(count: int) -> list[int]:
    """1, 2, 3, ... without the ids Scene-Graph-Benchmark skips as corrupted (1592, 1722, 4616, 4617)."""
    ids, image_id = [], 0
    while len(ids) < count:
        image_id += 1
        if f"{image_id}.jpg" not in CORRUPTED:
            ids.append(image_id)
    return ids


def _write_image_data(root: Path, images: list[GeneratedImage], size: tuple[int, int]) -> None:
    entries = [
        {
            "image_id": im.image_id,
            "width": size[0],
            "height": size[1],
            "url": f"{IMAGE_DIR}/{im.image_id}.jpg",
            "coco_id": None,
            "flickr_id": None,
        }
        for im in images
    ]
    write_text(root / "image_data.json", json.dumps(entries) + "\n")


def _write_dicts(root: Path, images: list[GeneratedImage]) -> None:
    """The dicts file as Scene-Graph-Benchmark ships it: index maps with 1-based string keys, plus counts."""
    labels = np.concatenate([im.labels for im in images])
    predicates = np.concatenate([im.relations[:, 2] for im in images])
    info: dict[str, dict] = {}
    for what, names, used in (("label", OBJECTS, labels), ("predicate", PREDICATES, predicates)):
        info[f"idx_to_{what}"] = {str(k): name for k, name in enumerate(names, 1)}
        info[f"{what}_to_idx"] = {name: k for k, name in enumerate(names, 1)}
        info["object_count" if what == "label" else "predicate_count"] = {
            name: int((used == k).sum()) for k, name in enumerate(names, 1)
        }
    info["idx_to_attribute"] = {str(k): name for k, name in enumerate(ATTRIBUTES, 1)}
    info["attribute_to_idx"] = {name: k for k, name in enumerate(ATTRIBUTES, 1)}
    info["attribute_count"] = {name: int((labels == k).sum()) for k, name in enumerate(ATTRIBUTES, 1)}
    write_text(root / DICTS_NAME, json.dumps(info) + "\n")


def _write_h5(root: Path, images: list[GeneratedImage], size: tuple[int, int]) -> None:
    """Every key load_graphs reads, with the dtypes of IMP's vg_to_roidb.py and SGB's generate_attribute_labels.py:
    int32 split, ranges, boxes and relationships; int64 labels, predicates and attributes."""
    first_box, last_box, first_rel, last_rel = (np.full(len(images), -1, np.int32) for _ in range(4))
    boxes, pairs, count = [], [], 0
    for n, im in enumerate(images):
        if len(im.boxes):
            first_box[n], last_box[n] = count, count + len(im.boxes) - 1
        if len(im.relations):
            start = sum(len(p) for p in pairs)
            first_rel[n], last_rel[n] = start, start + len(im.relations) - 1
        boxes.append(im.boxes)
        pairs.append(im.relations[:, :2] + count)
        count += len(im.boxes)
    all_boxes = np.concatenate(boxes)
    labels = np.concatenate([im.labels for im in images]).astype(np.int64)
    attributes = np.zeros((len(labels), MAX_ATTRIBUTES), np.int64)
    attributes[:, 0] = labels  # one colour per shape: attribute k is shape k's colour
    data = {
        "split": np.array([im.split for im in images], np.int32),
        "img_to_first_box": first_box,
        "img_to_last_box": last_box,
        "img_to_first_rel": first_rel,
        "img_to_last_rel": last_rel,
        "labels": labels[:, None],
        "attributes": attributes,
        f"boxes_{BOX_SCALE}": encode_boxes(all_boxes, size, BOX_SCALE),
        "boxes_512": encode_boxes(all_boxes, size, 512),
        "relationships": np.concatenate(pairs).astype(np.int32).reshape(-1, 2),
        "predicates": np.concatenate([im.relations[:, 2] for im in images]).astype(np.int64)[:, None],
    }
    with atomic_path(root / H5_NAME, suffix=".h5") as tmp, h5py.File(tmp, "w") as f:
        for key, value in data.items():
            f.create_dataset(key, data=value)
