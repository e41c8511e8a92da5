"""The training pieces without a training run: pair sampling, the ordered -> unordered mapping, the feature caches,
the vocabulary check and per-frame boxes files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from srg_deploy.errors import SRGError
from srg_deploy.inputs import BoxesFile
from srg_deploy.scene_graph import all_pairs
from srg_deploy.training.features import DiskCache, MemoryCache, rows_per_image
from srg_deploy.training.sampling import sample_pairs, unordered_index
from srg_deploy.vocab import vocabulary_difference


def test_sampling_takes_every_relation_then_fills_with_unrelated_ordered_pairs():
    relations = np.array([[0, 1, 3], [2, 0, 5]])
    pairs, labels = sample_pairs(4, relations, np.random.default_rng(0))
    assert pairs[:2].tolist() == [[0, 1], [2, 0]] and labels[:2].tolist() == [3, 5]  # row-major, as torch.nonzero
    # the other 12 - 2 ordered pairs, each once, labelled 0; the reverse (1, 0) of a relation is a negative
    background = {tuple(p) for p in pairs[2:]}
    assert len(pairs) == 12 and len(background) == 10 and (labels[2:] == 0).all()
    assert (1, 0) in background and (0, 1) not in background and all(s != o for s, o in background)


def test_sampling_caps_foreground_and_the_budget():
    n = 12
    relations = np.array([[s, o, 1 + (s + o) % 4] for s in range(n) for o in range(n) if s != o])  # all 132
    pairs, labels = sample_pairs(n, relations, np.random.default_rng(1), budget=40, positive_fraction=0.25)
    assert len(pairs) == 10 and (labels > 0).all()  # 40 x 0.25 foreground, no unrelated pair left to fill with
    truth = {(s, o): p for s, o, p in relations}
    assert all(truth[(s, o)] == p for (s, o), p in zip(pairs.tolist(), labels))
    pairs, labels = sample_pairs(n, relations[:3], np.random.default_rng(1), budget=40)
    assert len(pairs) == 40 and (labels > 0).sum() == 3 and len({tuple(p) for p in pairs}) == 40


def test_sampling_resolves_a_pair_annotated_twice_as_scene_graph_benchmark():
    """get_groundtruth: the later predicate replaces the earlier with probability 1/2."""
    relations = np.array([[0, 1, 2], [0, 1, 4]])
    kept = [sample_pairs(2, relations, np.random.default_rng(seed))[1][0] for seed in range(200)]
    assert set(kept) == {2, 4} and 70 < kept.count(4) < 130
    assert len(sample_pairs(2, np.array([[1, 1, 3]]), np.random.default_rng(0))[0]) == 2  # self-relation dropped


def test_unordered_index_finds_each_ordered_pair_in_all_pairs():
    n = 7
    table = all_pairs(n)
    ordered = np.array([(s, o) for s in range(n) for o in range(n) if s != o])
    index, direction = unordered_index(ordered, n)
    assert (table[index, 0] == np.minimum(ordered[:, 0], ordered[:, 1])).all()
    assert (table[index, 1] == np.maximum(ordered[:, 0], ordered[:, 1])).all()
    assert (direction == (ordered[:, 0] > ordered[:, 1])).all()


def test_disk_cache_round_trip_recovery_and_refusal(tmp_path):
    features, unions = torch.randn(3, 2048) * 5, torch.randn(rows_per_image(3) - 3, 2048)
    cache = DiskCache(tmp_path / "c", "key-a", images=4)
    assert not cache.has(2)
    cache.put(2, features, unions)
    cache.flush()
    cache.put(0, features[:2], unions[:1])  # appended but never flushed: as if the run died here
    reopened = DiskCache(tmp_path / "c", "key-a", images=4)
    assert reopened.has(2) and not reopened.has(0) and len(reopened) == 1
    got_features, got_unions = reopened.get(2)
    assert torch.allclose(got_features, features, rtol=1e-3, atol=1e-2) and got_unions.shape == unions.shape
    assert (tmp_path / "c" / "features.f16").stat().st_size == 6 * 2048 * 2  # the unflushed rows were cut off
    with pytest.raises(SRGError, match="made for another model, dataset or split"):
        DiskCache(tmp_path / "c", "key-b", images=4)
    memory = MemoryCache()
    memory.put(1, features, unions)
    assert memory.has(1) and memory.get(1)[0] is features


def test_vocabulary_difference_names_what_differs():
    assert vocabulary_difference(("a", "b"), ("x",), ("a", "b"), ("x",)) is None
    text = vocabulary_difference(("a", "b"), ("x",), ("b", "a"), ("x", "y"))
    assert "objects: the same 2 names in another order (class 1 is 'a' in the model, 'b' in the dataset)" in text
    assert "predicates: the model has 1 (x), the dataset 2 (x, y)" in text


def test_boxes_file_per_frame_forms(tmp_path):
    frames = [[[0, 0, 10, 10]], [], [[1, 2, 3, 4], [5, 6, 7, 8]]]
    keyed = tmp_path / "keyed.json"
    keyed.write_text(json.dumps({"clip.mp4": frames, "a.png": [[0, 0, 5, 5]]}))
    boxes = BoxesFile(keyed)
    assert boxes.for_frame("clip.mp4", 2).tolist() == [[1, 2, 3, 4], [5, 6, 7, 8]]
    assert boxes.for_frame("clip.mp4", 1).shape == (0, 4)
    assert boxes.for_frame("a.png", 7).tolist() == [[0, 0, 5, 5]] == boxes.for_source("a.png").tolist()
    with pytest.raises(SRGError, match=r"has boxes for 3 frames of 'clip\.mp4'; frame 3 has none"):
        boxes.for_frame("clip.mp4", 3)
    with pytest.raises(SRGError, match=r"gives boxes per frame for 'clip\.mp4'; this command needs one list"):
        boxes.for_source("clip.mp4")
    top = tmp_path / "top.json"
    top.write_text(json.dumps(frames))
    assert BoxesFile(top).for_frame("anything.mp4", 0).tolist() == [[0, 0, 10, 10]]
    shared = tmp_path / "shared.json"
    shared.write_text(json.dumps([[0, 0, 10, 10], [2, 2, 4, 4]]))
    assert BoxesFile(shared).for_frame("x", 5).tolist() == BoxesFile(shared).for_source("x").tolist()
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"clip.mp4": [[[0, 0, 10]]]}))
    with pytest.raises(SRGError, match=r"\['clip.mp4'\] frame 0: box 0 is \[0, 0, 10\]"):
        BoxesFile(bad)
