"""Visual Genome in the VG-SGG layout, read the way Scene-Graph-Benchmark reads it, so our numbers compare with theirs.

The layout (docs/DESIGN.md §6): `VG_100K/{image_id}.jpg`, `image_data.json`, `VG-SGG-with-attri.h5` (or `VG-SGG.h5`) and
`VG-SGG-dicts-with-attri.json` (or `VG-SGG-dicts.json`). Splits, filters and box decoding follow
KaihuaTang/Scene-Graph-Benchmark.pytorch `maskrcnn_benchmark/data/datasets/visual_genome.py` (`load_info`,
`load_image_filenames`, `load_graphs`, `VGDataset.get_groundtruth`); each step below names the function it follows.
Every way the files can be wrong is one `SRGError` line that names the file and the problem, where SGB would assert.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from srg_deploy.defaults import VAL_IMAGES
from srg_deploy.errors import SRGError
from srg_deploy.inputs import read_image
from srg_deploy.scene_graph import box_iou

BOX_SCALE = 1024  # visual_genome.py BOX_SCALE: boxes_1024 are stored in a frame whose longer side is 1024
CORRUPTED = frozenset({"1592.jpg", "1722.jpg", "4616.jpg", "4617.jpg"})  # load_image_filenames skips these
H5_NAMES = ("VG-SGG-with-attri.h5", "VG-SGG.h5")
DICT_NAMES = ("VG-SGG-dicts-with-attri.json", "VG-SGG-dicts.json")
IMAGE_DIR = "VG_100K"
SPLITS = ("train", "val", "test")
_PER_IMAGE = ("split", "img_to_first_box", "img_to_last_box", "img_to_first_rel", "img_to_last_rel")


@dataclass(frozen=True)
class SGGImage:
    """One image's ground truth, in original-image pixels, after the split's filters."""

    index: int  # position in this split
    image_id: int
    path: Path  # VG_100K/{image_id}.jpg
    width: int  # from image_data.json
    height: int
    # [B,4] float64 x1, y1, x2, y2, decoded and clipped as get_groundtruth does; on the train split (SGB's training
    # targets, evaluation=False) boxes left empty by clipping are dropped with their relations
    boxes: np.ndarray
    labels: np.ndarray  # [B] int64, 1-based (0 = background)
    relations: np.ndarray  # [R,3] int64 (subject box, object box, predicate 1-based)


@dataclass(frozen=True)
class _Graphs:
    """The h5's arrays, validated; boxes already converted to x1, y1, x2, y2 in the BOX_SCALE frame."""

    split: np.ndarray
    first_box: np.ndarray
    last_box: np.ndarray
    first_rel: np.ndarray
    last_rel: np.ndarray
    labels: np.ndarray  # [B] int64
    boxes: np.ndarray  # [B,4] int64
    pairs: np.ndarray  # [R,2] int64, global box indices
    predicates: np.ndarray  # [R] int64


class VGSGGDataset:
    """One split of a VG-SGG dataset folder. The h5 is read once into numpy; images are decoded on demand.

    `split`: "train" and "val" are split 0 of the h5 (val = its first `val_images` images that pass the filters,
    train = the rest; `val_images=0` makes all of them train), "test" is split 2. `filter_empty_rels` drops images
    without relations (SGB does so whenever relations are trained or evaluated). `filter_duplicate_rels` keeps one
    predicate per (subject, object) pair, drawn with an RNG seeded by (`seed`, image) so that runs are reproducible
    (SGB draws anew with the global RNG on every access); None means "on train only", as SGB. `filter_non_overlap`
    (train only, SGB's SGDet training) keeps relations whose two boxes overlap and drops images left without one.
    `max_images` keeps the first N images of the split after every filter.
    """

    def __init__(
        self,
        root: Path,
        split: str = "train",
        val_images: int = VAL_IMAGES,
        *,
        max_images: int | None = None,
        filter_empty_rels: bool = True,
        filter_duplicate_rels: bool | None = None,
        filter_non_overlap: bool = False,
        seed: int = 0,
    ) -> None:
        root = Path(root)
        if split not in SPLITS:
            raise SRGError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")
        if val_images < 0:
            raise SRGError(f"val_images must be 0 or more; got {val_images}")
        if max_images is not None and max_images < 1:
            raise SRGError(f"max_images must be at least 1; got {max_images}")
        if filter_non_overlap and split != "train":
            raise SRGError(
                f"filter_non_overlap applies to the train split only (as in Scene-Graph-Benchmark); got {split}"
            )
        if split == "val" and val_images == 0:
            raise SRGError(f"{root}: val_images is 0, so every split-0 image is train and there is no val split")
        self.root, self.split, self.val_images, self.seed = root, split, val_images, seed
        self.filter_duplicate_rels = split == "train" if filter_duplicate_rels is None else filter_duplicate_rels
        self.h5_path, dicts_path, image_data_path, self.image_dir = _find_files(root)
        self.objects, self.predicates = load_vocabulary(dicts_path)
        self._graphs = _load_graphs(self.h5_path, len(self.objects), len(self.predicates))
        self._info = _load_image_info(image_data_path, self.image_dir, len(self._graphs.split), self.h5_path)

        chosen = _select(self._graphs, split, val_images, filter_empty_rels)
        self._keep_rel = np.ones(len(self._graphs.predicates), bool)
        if filter_non_overlap:
            chosen = self._drop_non_overlapping(chosen)
        if max_images is not None:
            chosen = chosen[:max_images]
        if len(chosen) == 0:
            raise SRGError(f"{root}: the {split} split is empty ({self._why_empty(filter_empty_rels)})")
        self._chosen = chosen  # h5 image index of each image in this split

    def __len__(self) -> int:
        return len(self._chosen)

    def __iter__(self) -> Iterator[SGGImage]:
        return (self[k] for k in range(len(self)))

    def __getitem__(self, k: int) -> SGGImage:
        if not 0 <= k < len(self._chosen):
            raise IndexError(f"image {k} of a split with {len(self._chosen)} images")
        g, i = self._graphs, int(self._chosen[k])
        image_id, width, height = self._info[i]
        first, last = int(g.first_box[i]), int(g.last_box[i])
        # get_groundtruth: box / BOX_SCALE * max(w, h), then clip_to_image (TO_REMOVE = 1: x to [0, w - 1]).
        boxes = g.boxes[first : last + 1] / BOX_SCALE * max(width, height)
        boxes[:, 0::2] = boxes[:, 0::2].clip(0, width - 1)
        boxes[:, 1::2] = boxes[:, 1::2].clip(0, height - 1)
        rows = self._relation_rows(i)
        relations = np.column_stack([g.pairs[rows] - first, g.predicates[rows]]).astype(np.int64).reshape(-1, 3)
        if self.filter_duplicate_rels:
            relations = _one_predicate_per_pair(relations, (self.seed, i))
        labels = g.labels[first : last + 1].copy()
        if self.split == "train":
            boxes, labels, relations = _drop_empty_boxes(boxes, labels, relations)
        return SGGImage(
            index=k,
            image_id=image_id,
            path=self.image_dir / f"{image_id}.jpg",
            width=width,
            height=height,
            boxes=boxes,
            labels=labels,
            relations=relations,
        )

    def read_image(self, k: int) -> np.ndarray:
        """BGR uint8 [H,W,3]; a missing or undecodable file is an SRGError naming it."""
        return read_image(self[k].path)

    def describe(self) -> str:
        """One line: where, which split, how many images, boxes and relations (after the filters)."""
        g, chosen = self._graphs, self._chosen
        boxes = int((g.last_box[chosen] - g.first_box[chosen] + 1).sum())
        image_of, rows = _relation_rows(g.first_rel, g.last_rel, chosen)
        keep = self._keep_rel[rows]
        image_of, rows = image_of[keep], rows[keep]
        if self.filter_duplicate_rels:
            relations = len(np.unique(np.column_stack([image_of, g.pairs[rows]]), axis=0))
        else:
            relations = len(rows)
        return (
            f"{self.root}: {self.split} split, {len(self)} images, {boxes} boxes, {relations} relations "
            f"({len(self.objects)} object classes, {len(self.predicates)} predicates; {self.h5_path.name})"
        )

    def _relation_rows(self, i: int) -> np.ndarray:
        first, last = int(self._graphs.first_rel[i]), int(self._graphs.last_rel[i])
        if first < 0:
            return np.zeros(0, np.int64)
        rows = np.arange(first, last + 1)
        return rows[self._keep_rel[rows]]

    def _drop_non_overlapping(self, chosen: np.ndarray) -> np.ndarray:
        """load_graphs' filter_non_overlap: IoU (+1 pixel, BOX_SCALE frame) > 0 between subject and object."""
        g, kept = self._graphs, []
        for i in chosen:
            rows = self._relation_rows(int(i))
            boxes = g.boxes[g.first_box[i] : g.last_box[i] + 1]
            local = g.pairs[rows] - g.first_box[i]
            overlap = box_iou(boxes, boxes, plus_one=True)[local[:, 0], local[:, 1]] > 0.0
            self._keep_rel[rows[~overlap]] = False
            if overlap.any():
                kept.append(i)
        return np.asarray(kept, np.int64)

    def _why_empty(self, filter_empty_rels: bool) -> str:
        flag = 2 if self.split == "test" else 0
        usable = len(_select(self._graphs, self.split, 0, filter_empty_rels))
        what = f"split-{flag} images with boxes" + (" and relations" if filter_empty_rels else "")
        if self.split == "train" and 0 < usable <= self.val_images:
            return f"all {usable} {what} are taken by val_images={self.val_images}"
        return f"{usable} {what}" + (", none with overlapping relation boxes" if usable else "")


def load_vocabulary(dicts_path: Path) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(objects, predicates) without background, in index order. load_info sorts `label_to_idx` and
    `predicate_to_idx` by index; we also require the indices to be 1..N and `idx_to_*`, when present, to agree."""
    try:
        info = json.loads(Path(dicts_path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SRGError(f"{dicts_path} is not valid JSON: {e}") from None
    if not isinstance(info, dict):
        raise SRGError(f"{dicts_path}: expected a JSON object with label_to_idx and predicate_to_idx")
    return _names(info, dicts_path, "label"), _names(info, dicts_path, "predicate")


def _names(info: dict, path: Path, what: str) -> tuple[str, ...]:
    to_idx = info.get(f"{what}_to_idx")
    if not isinstance(to_idx, dict) or not to_idx:
        raise SRGError(f"{path} has no {what}_to_idx mapping (name -> 1-based index)")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in to_idx.values()):
        raise SRGError(f"{path}: {what}_to_idx must map names to integers")
    names = tuple(sorted(to_idx, key=lambda name: to_idx[name]))
    if sorted(to_idx.values()) != list(range(1, len(names) + 1)):
        raise SRGError(f"{path}: {what}_to_idx indices must be 1..{len(names)} (0 is background), each once")
    idx_to = info.get(f"idx_to_{what}")
    if idx_to is not None and idx_to != {str(k): name for k, name in enumerate(names, 1)}:
        raise SRGError(f"{path}: idx_to_{what} and {what}_to_idx disagree")
    return names


def _find_files(root: Path) -> tuple[Path, Path, Path, Path]:
    if not root.is_dir():
        raise SRGError(f"dataset folder {root} does not exist (expected VG_100K/, image_data.json, VG-SGG*.h5)")
    found = []
    for names in (H5_NAMES, DICT_NAMES, ("image_data.json",)):
        path = next((root / n for n in names if (root / n).is_file()), None)
        if path is None:
            raise SRGError(f"{root}: no {' or '.join(names)} (the VG-SGG layout of Scene-Graph-Benchmark)")
        found.append(path)
    if not (root / IMAGE_DIR).is_dir():
        raise SRGError(f"{root}: no {IMAGE_DIR}/ folder of images")
    return found[0], found[1], found[2], root / IMAGE_DIR


def _load_graphs(path: Path, num_objects: int, num_predicates: int) -> _Graphs:
    """Read and check every array load_graphs reads (attributes excepted: nothing here uses them)."""
    arrays = {}
    try:
        with h5py.File(path, "r") as f:
            for key in (*_PER_IMAGE, "labels", "boxes_1024", "relationships", "predicates"):
                if not isinstance(f.get(key), h5py.Dataset):
                    raise SRGError(f"{path} has no dataset {key!r} (VG-SGG layout)")
                arrays[key] = f[key][()]
    except OSError as e:
        raise SRGError(f"cannot read {path}: not an HDF5 file, or truncated ({str(e).splitlines()[0]})") from None
    for key, a in arrays.items():
        if not np.issubdtype(a.dtype, np.integer):
            raise SRGError(f"{path}: dataset {key!r} holds {a.dtype}; expected integers")
    n = len(arrays["split"])
    for key in _PER_IMAGE:
        if arrays[key].shape != (n,):
            raise SRGError(f"{path}: {key!r} has shape {arrays[key].shape}; expected ({n},), one per image of 'split'")
    labels, boxes = _column(arrays["labels"], path, "labels"), arrays["boxes_1024"]
    pairs, predicates = arrays["relationships"], _column(arrays["predicates"], path, "predicates")
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) != len(labels):
        raise SRGError(f"{path}: 'boxes_1024' has shape {boxes.shape}; expected ({len(labels)}, 4), one per label")
    if pairs.ndim != 2 or pairs.shape[1] != 2 or len(pairs) != len(predicates):
        raise SRGError(f"{path}: 'relationships' has shape {pairs.shape}; expected ({len(predicates)}, 2)")
    _check_values(path, labels, 1, num_objects, "labels", "object label")
    _check_values(path, predicates, 1, num_predicates, "predicates", "predicate")
    bad = np.flatnonzero((boxes[:, :2] < 0).any(1) | (boxes[:, 2:] <= 0).any(1))
    if len(bad):
        raise SRGError(
            f"{path}: box {bad[0]} in 'boxes_1024' is {boxes[bad[0]].tolist()}; expected cx, cy >= 0, w, h > 0"
        )
    graphs = _Graphs(
        *(arrays[key].astype(np.int64) for key in _PER_IMAGE),
        labels=labels,
        boxes=_corners(boxes),
        pairs=pairs.astype(np.int64),
        predicates=predicates,
    )
    _check_ranges(path, graphs)
    return graphs


def _column(a: np.ndarray, path: Path, key: str) -> np.ndarray:
    """load_graphs reads labels[:, 0] and predicates[:, 0]; a flat [N] array is accepted too."""
    if a.ndim == 2 and a.shape[1] >= 1:
        return a[:, 0].astype(np.int64)
    if a.ndim == 1:
        return a.astype(np.int64)
    raise SRGError(f"{path}: {key!r} has shape {a.shape}; expected (N, 1)")


def _check_values(path: Path, values: np.ndarray, low: int, high: int, key: str, what: str) -> None:
    bad = np.flatnonzero((values < low) | (values > high))
    if len(bad):
        raise SRGError(
            f"{path}: {key}[{bad[0]}] is {values[bad[0]]}, outside {low}..{high}, the {what}s of the dicts file"
        )


def _drop_empty_boxes(
    boxes: np.ndarray, labels: np.ndarray, relations: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SGB's training targets (get_groundtruth, evaluation=False: clip_to_image(remove_empty=True)): boxes with no
    area left after clipping (x2 <= x1 or y2 <= y1) go, with every relation that names them; the rest renumbered."""
    keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
    if keep.all():
        return boxes, labels, relations
    renumber = np.cumsum(keep) - 1
    kept = keep[relations[:, 0]] & keep[relations[:, 1]]
    relations = np.column_stack([renumber[relations[kept, :2]], relations[kept, 2]]).astype(np.int64).reshape(-1, 3)
    return boxes[keep], labels[keep], relations


def _corners(boxes: np.ndarray) -> np.ndarray:
    """(cx, cy, w, h) -> (x1, y1, x2, y2) exactly as load_graphs does it: in place in an integer array, so
    cx - w / 2 is truncated toward zero, and x2 = x1 + w."""
    b = boxes.astype(np.int64)
    b[:, :2] = b[:, :2] - b[:, 2:] / 2
    b[:, 2:] = b[:, :2] + b[:, 2:]
    return b


def _check_ranges(path: Path, g: _Graphs) -> None:
    """Every box and relation range inside the arrays, every relation inside its own image's boxes (load_graphs
    asserts the last only for the images it loads; a file wrong anywhere is refused)."""
    num_boxes, num_rels = len(g.labels), len(g.predicates)
    for what, first, last, size in (
        ("box", g.first_box, g.last_box, num_boxes),
        ("rel", g.first_rel, g.last_rel, num_rels),
    ):
        has = first >= 0
        bad = np.flatnonzero(has & ((last < first) | (last >= size)))
        if len(bad):
            i = bad[0]
            raise SRGError(
                f"{path}: image {i} has img_to_first_{what} {first[i]} and img_to_last_{what} {last[i]}; "
                f"expected first <= last < {size}"
            )
    orphan = np.flatnonzero((g.first_rel >= 0) & (g.first_box < 0))
    if len(orphan):
        raise SRGError(f"{path}: image {orphan[0]} has relations but no boxes (img_to_first_box is -1)")
    image_of, rows = _relation_rows(g.first_rel, g.last_rel, np.arange(len(g.first_rel)))
    ends = g.pairs[rows]
    outside = (ends < g.first_box[image_of, None]) | (ends > g.last_box[image_of, None])
    bad = np.flatnonzero(outside.any(1))
    if len(bad):
        r, i = rows[bad[0]], image_of[bad[0]]
        raise SRGError(
            f"{path}: relationships[{r}] of image {i} is {g.pairs[r].tolist()}, outside that image's boxes "
            f"{g.first_box[i]}..{g.last_box[i]}"
        )


def _relation_rows(first: np.ndarray, last: np.ndarray, images: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(image, relation row) for every relation of `images` (ranges already checked), without a Python loop."""
    images = images[first[images] >= 0]
    counts = last[images] - first[images] + 1
    offsets = np.cumsum(counts) - counts  # where each image's rows start in the flat result
    return np.repeat(images, counts), np.repeat(first[images] - offsets, counts) + np.arange(counts.sum())


def _load_image_info(path: Path, image_dir: Path, count: int, h5_path: Path) -> list[tuple[int, int, int]]:
    """(image_id, width, height) per h5 image: image_data.json in order, skipping the corrupted names and entries
    whose file is absent, as load_image_filenames does; the count must then equal the h5's."""
    try:
        entries = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise SRGError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(entries, list):
        raise SRGError(f"{path}: expected a list of {{image_id, width, height}} objects")
    present = set(os.listdir(image_dir))
    info, missing = [], None
    for n, entry in enumerate(entries):
        try:
            image_id, width, height = (entry[key] for key in ("image_id", "width", "height"))
        except (TypeError, KeyError):
            raise SRGError(f"{path}: entry {n} is not an object with image_id, width and height") from None
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in (image_id, width, height)):
            raise SRGError(f"{path}: entry {n} has a non-integer image_id, width or height")
        if width < 1 or height < 1:
            raise SRGError(f"{path}: entry {n} (image_id {image_id}) has size {width}x{height}")
        name = f"{image_id}.jpg"
        if name in CORRUPTED:
            continue
        if name in present:
            info.append((image_id, width, height))
        elif missing is None:
            missing = image_dir / name
    if len(info) != count:
        example = f"; e.g. {missing} is missing" if missing is not None else ""
        raise SRGError(
            f"{path}: {len(info)} of its images are in {image_dir} (1592/1722/4616/4617.jpg skipped, as "
            f"Scene-Graph-Benchmark does) but {h5_path.name} describes {count}{example}"
        )
    return info


def _select(g: _Graphs, split: str, val_images: int, filter_empty_rels: bool) -> np.ndarray:
    """load_graphs' image choice: split 2 for test, else 0; images with boxes (and relations, if filtered); then
    val = the first val_images, train = the rest."""
    mask = (g.split == (2 if split == "test" else 0)) & (g.first_box >= 0)
    if filter_empty_rels:
        mask &= g.first_rel >= 0
    index = np.flatnonzero(mask)
    if val_images > 0 and split == "val":
        return index[:val_images]
    if val_images > 0 and split == "train":
        return index[val_images:]
    return index


def _one_predicate_per_pair(relations: np.ndarray, seed: tuple[int, int]) -> np.ndarray:
    """get_groundtruth's duplicate filter: pairs in order of first appearance, one of each pair's predicates drawn
    uniformly (a predicate listed twice is twice as likely, as with np.random.choice)."""
    by_pair: dict[tuple[int, int], list[int]] = {}
    for s, o, p in relations.tolist():
        by_pair.setdefault((s, o), []).append(p)
    if len(by_pair) == len(relations):
        return relations
    rng = np.random.default_rng(seed)
    return np.array([(s, o, ps[rng.integers(len(ps))]) for (s, o), ps in by_pair.items()], np.int64).reshape(-1, 3)
