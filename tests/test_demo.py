"""`srg-deploy demo` (what `make demo` runs) end to end: dataset of the sample scene, training, export, eval, infer on
ONNX Runtime, and the scene graphs it writes are the scene's."""

from __future__ import annotations

import json

import cv2
from conftest import run_cli
from media import video_frames

# The sample scene's graph, written out by hand from the rule in datasets/generate.py (0 square, 1 circle, 2 triangle).
SCENE_GRAPH = {
    (0, 1): "left of",
    (0, 2): "above left of",
    (1, 0): "right of",
    (1, 2): "above right of",
    (2, 0): "below right of",
    (2, 1): "below left of",
}


def test_demo_learns_the_scene_and_shows_its_graph(tmp_path):
    workdir = tmp_path / "demo"
    result = run_cli("demo", "--workdir", workdir, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "What this model has learned: only this scene." in out
    assert "Real use starts from pretrained weights" in out and "120..160 px" in out
    assert "[✓] parity: onnxruntime (cpu, fp32, boxes mode) vs eager torch" in out and "PredCls on" in out
    assert "backend: onnxruntime (cpu, fp32, boxes mode)" in result.stderr
    assert "--reinit-heads: new object, box-delta and relation heads" in result.stderr
    jsonl, video, graphs = (
        workdir / "out" / "scene_graphs.jsonl",
        workdir / "out" / "annotated.mp4",
        workdir / "out" / "graphs",
    )
    for path in (jsonl, video, graphs / "frame_000000.png", workdir / "model.onnx", workdir / "sample.mp4"):
        assert str(path) in out, path

    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    boxes = json.loads((workdir / "boxes.json").read_text())["sample.mp4"]
    assert [r["frame"] for r in records] == list(range(48)) and len(boxes) == 48
    graphs_right = 0
    for record, frame_boxes in zip(records, boxes):
        assert [o["box"] for o in record["objects"]] == frame_boxes  # each frame's own tight boxes
        assert [o["label"] for o in record["objects"]] == ["square", "circle", "triangle"], record["frame"]
        found = {(r["subject"], r["object"]): r["predicate"] for r in record["relations"]}
        assert set(found) == set(SCENE_GRAPH), record["frame"]  # one predicate per ordered pair
        graphs_right += found == SCENE_GRAPH
    # The heads sit on a random trunk and have seen none of the video's frames (other backgrounds, other jitter):
    # with the recipe's defaults they get all six relations in 47 or 48 of 48 frames (47 on 2026-12-04, for three
    # training seeds and 128 or 256 dataset images: frame 44, where square -> circle reads as "below left of").
    # The demo prints what it got; the test holds it to 46 and to printing the truth.
    assert graphs_right >= 46, graphs_right
    assert f"labels right in 48/48 frames, all six relations right in {graphs_right}/48" in out

    assert records[0]["image_size"] == [320, 240] and records[-1]["timestamp_ms"] > records[0]["timestamp_ms"]
    assert video_frames(video) == video_frames(workdir / "sample.mp4") == 48
    pngs = sorted(p.name for p in graphs.iterdir())
    assert pngs == [f"frame_{k:06d}.png" for k in (0, 12, 24, 36)]
    assert cv2.imread(str(graphs / pngs[0])).shape == (480, 640, 3)
    config = json.loads((workdir / "training" / "checkpoint" / "config.json").read_text())
    assert config["preprocessing"]["min_size"] == 120 and config["trained"] is True
    assert config["objects"] == ["square", "circle", "triangle"]
    assert (workdir / "training" / "curves.png").is_file()
