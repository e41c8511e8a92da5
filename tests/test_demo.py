"""`srg-deploy demo` (what `make demo` runs) end to end: checkpoint, export, sample video, infer on ONNX Runtime."""

from __future__ import annotations

import json

import cv2
from conftest import run_cli
from media import video_frames


def test_demo_runs_the_whole_chain(tmp_path):
    workdir = tmp_path / "demo"
    result = run_cli("demo", "--workdir", workdir, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "UNTRAINED" in out and "240..320 px" in out
    assert "[✓] parity: onnxruntime (cpu) vs eager torch" in out
    assert "backend: onnxruntime (cpu, fp32, boxes mode)" in result.stderr
    jsonl, video, graphs = (
        workdir / "out" / "scene_graphs.jsonl",
        workdir / "out" / "annotated.mp4",
        workdir / "out" / "graphs",
    )
    for path in (jsonl, video, graphs / "frame_000000.png", workdir / "model.onnx", workdir / "sample.mp4"):
        assert str(path) in out, path
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    boxes = json.loads((workdir / "boxes.json").read_text())
    assert [r["frame"] for r in records] == list(range(48))
    assert all(len(r["objects"]) == len(boxes) == 3 and len(r["relations"]) == 6 for r in records)
    assert records[0]["image_size"] == [320, 240] and records[-1]["timestamp_ms"] > records[0]["timestamp_ms"]
    assert video_frames(video) == video_frames(workdir / "sample.mp4") == 48
    pngs = sorted(p.name for p in graphs.iterdir())
    assert pngs == [f"frame_{k:06d}.png" for k in (0, 12, 24, 36)]
    assert cv2.imread(str(graphs / pngs[0])).shape == (480, 640, 3)
    config = json.loads((workdir / "checkpoint" / "config.json").read_text())
    assert config["preprocessing"]["min_size"] == 240 and config["trained"] is False
