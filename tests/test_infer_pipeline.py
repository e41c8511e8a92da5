"""`srg-deploy infer` on videos, image folders, globs, streams and signals: the real CLI in a subprocess, real
files written with OpenCV, a real HTTP camera on localhost, the real (seeded, small-input) model."""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from conftest import ROOT, assert_clean_error, run_cli
from media import MjpegCamera, summary_counts, video_frames, write_video

from srg_deploy.checkpoint import random_model, save_checkpoint
from srg_deploy.config import Preprocessing, SRGConfig

BOXES = [[4, 4, 40, 30], [20, 10, 90, 60], [0, 0, 60, 50]]


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory) -> Path:
    """The default architecture with frames resized to 128..192 px, so a frame takes ~0.2 s on 2 CPU cores."""
    config = dataclasses.replace(SRGConfig(), preprocessing=Preprocessing(min_size=128, max_size=192))
    path = tmp_path_factory.mktemp("small") / "ckpt"
    save_checkpoint(random_model(config, seed=3), path)
    return path


@pytest.fixture
def boxes(write_json) -> Path:
    return write_json("boxes.json", BOXES)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def leftovers(folder: Path, *names: str) -> list[str]:
    """Outputs (or their temporary files) of the given names still in `folder`."""
    return sorted(p.name for p in folder.iterdir() if any(n in p.name for n in names))


@pytest.mark.parametrize(
    "fourcc, container, width, height, out",
    [("mp4v", ".mp4", 131, 97, "annotated.avi"), ("MJPG", ".avi", 97, 131, "annotated.mp4")],
)
def test_video_every_frame_in_order(small_checkpoint, boxes, tmp_path, fourcc, container, width, height, out):
    video = write_video(tmp_path / f"clip{container}", 5, width, height, fourcc, fps=10.0)
    result = run_cli(
        "infer", small_checkpoint, "--source", video, "--boxes", boxes, "--json", tmp_path / "out.jsonl",
        "--video-out", tmp_path / out, "--graph-out", tmp_path / "graphs", "--graph-every", "2",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = read_jsonl(tmp_path / "out.jsonl")
    decoded = cv2.VideoCapture(str(video)).read()[1].shape
    assert [r["frame"] for r in records] == [0, 1, 2, 3, 4]
    assert [r["timestamp_ms"] for r in records] == [0.0, 100.0, 200.0, 300.0, 400.0]
    assert all(r["source"] == str(video) and r["image_size"] == [decoded[1], decoded[0]] for r in records)
    assert all(len(r["objects"]) == 3 and len(r["relations"]) == 6 for r in records)
    assert video_frames(tmp_path / out) == 5
    pngs = sorted(p.name for p in (tmp_path / "graphs").iterdir())
    assert pngs == ["frame_000000.png", "frame_000002.png", "frame_000004.png"]
    assert cv2.imread(str(tmp_path / "graphs" / pngs[0])).shape == (480, 640, 3)
    assert summary_counts(result.stderr) == {"read": 5, "processed": 5, "skipped": 0, "dropped": 0, "discarded": 0}
    for stage in ("capture", "preprocess", "model", "postprocess", "write"):
        assert any(line.split()[:1] == [stage] for line in result.stderr.splitlines()), stage
    assert "end-to-end: 5 frames" in result.stderr and "torch (cpu" in result.stderr
    assert not list(tmp_path.glob(".*"))  # no temporary files left


def test_video_every_and_max_frames(small_checkpoint, boxes, tmp_path):
    video = write_video(tmp_path / "clip.avi", 9, 96, 64, "MJPG")
    out = tmp_path / "out.jsonl"
    result = run_cli("infer", small_checkpoint, "--source", video, "--boxes", boxes, "--json", out, "--every", "3")
    assert result.returncode == 0, result.stderr
    assert [r["frame"] for r in read_jsonl(out)] == [0, 3, 6]
    assert summary_counts(result.stderr)["skipped"] == 6
    result = run_cli(
        "infer", small_checkpoint, "--source", video, "--boxes", boxes, "--json", out, "--every", "2",
        "--max-frames", "2", "--video-out", tmp_path / "a.mp4",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [r["frame"] for r in read_jsonl(out)] == [0, 2]
    assert video_frames(tmp_path / "a.mp4") == 2
    assert "--max-frames reached" in result.stderr


def test_image_folder_of_mixed_sizes_and_glob(small_checkpoint, write_image, write_json, tmp_path):
    write_image("imgs/a.png", 64, 96)
    write_image("imgs/b.jpg", 131, 97, seed=1)
    write_image("imgs/c.png", 80, 120, seed=2)
    (tmp_path / "imgs" / "notes.txt").write_text("not an image")
    boxes = write_json("by_name.json", {"a.png": BOXES, "b.jpg": BOXES[:2], "c.png": BOXES[:1]})
    out, video = tmp_path / "out.jsonl", tmp_path / "folder.mp4"
    result = run_cli(
        "infer", small_checkpoint, "--source", tmp_path / "imgs", "--boxes", boxes, "--json", out,
        "--video-out", video, "--graph-out", tmp_path / "g",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    records = read_jsonl(out)
    assert [(r["frame"], Path(r["source"]).name, r["image_size"]) for r in records] == [
        (0, "a.png", [96, 64]),
        (1, "b.jpg", [97, 131]),
        (2, "c.png", [120, 80]),
    ]
    assert [len(r["objects"]) for r in records] == [3, 2, 1]
    assert video_frames(video) == 3
    assert cv2.VideoCapture(str(video)).read()[1].shape == (64, 96, 3)  # the first image's size for all
    assert len(list((tmp_path / "g").glob("frame_*.png"))) == 3

    result = run_cli(
        "infer", small_checkpoint, "--source", str(tmp_path / "imgs" / "*.png"), "--boxes", boxes, "--json", out,
        "--max-frames", "1",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert [Path(r["source"]).name for r in read_jsonl(out)] == ["a.png"]
    result = run_cli("infer", small_checkpoint, "--source", str(tmp_path / "imgs" / "*.png"), "--boxes", boxes,
                     "--json", out, "--every", "2")  # fmt: skip
    assert [Path(r["source"]).name for r in read_jsonl(out)] == ["a.png"]
    assert summary_counts(result.stderr) == {"read": 2, "processed": 1, "skipped": 1, "dropped": 0, "discarded": 0}


def corrupt_inputs(tmp_path: Path) -> dict[str, tuple[str, str]]:
    """name -> (--source, the fragment the one-line error must contain)."""
    (tmp_path / "random.mp4").write_bytes(os.urandom(4096))
    (tmp_path / "empty.avi").write_bytes(b"")
    return {
        "random bytes": (str(tmp_path / "random.mp4"), "cannot read video"),
        "empty file": (str(tmp_path / "empty.avi"), "cannot read video"),
        "missing file": (str(tmp_path / "nope.mp4"), "does not exist"),
        "unreachable URL": ("http://127.0.0.1:9/x.mjpg", "cannot open stream http://127.0.0.1:9/x.mjpg"),
        "unplugged camera": ("7", "camera 7 is not available"),
    }


@pytest.mark.parametrize("case", ["random bytes", "empty file", "missing file", "unreachable URL", "unplugged camera"])
def test_unreadable_source_is_one_clean_line(small_checkpoint, boxes, tmp_path, case):
    source, fragment = corrupt_inputs(tmp_path)[case]
    result = run_cli(
        "infer", small_checkpoint, "--source", source, "--boxes", boxes, "--json", tmp_path / "out.jsonl",
        "--video-out", tmp_path / "out.mp4", "--graph-out", tmp_path / "graphs",
    )  # fmt: skip
    assert_clean_error(result, fragment)
    assert leftovers(tmp_path, "out", "graphs") == []


def test_truncated_video_fails_midway_and_removes_outputs(small_checkpoint, boxes, tmp_path):
    data = write_video(tmp_path / "full.avi", 12, 96, 64, "MJPG").read_bytes()
    (tmp_path / "cut.avi").write_bytes(data[: len(data) // 3])
    result = run_cli(
        "infer", small_checkpoint, "--source", tmp_path / "cut.avi", "--boxes", boxes, "--json",
        tmp_path / "out.jsonl", "--video-out", tmp_path / "out.mp4", "--graph-out", tmp_path / "graphs",
    )  # fmt: skip
    assert_clean_error(result, "cut.avi", "of the 12 frames", "truncated or corrupt")
    assert leftovers(tmp_path, "out", "graphs") == []


def test_corrupt_image_midway_removes_every_output(small_checkpoint, write_image, boxes, tmp_path):
    write_image("imgs/a.png", 64, 96)
    write_image("imgs/b.png", 64, 96, seed=1)
    (tmp_path / "imgs" / "c.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    result = run_cli(
        "infer", small_checkpoint, "--source", tmp_path / "imgs", "--boxes", boxes, "--json", tmp_path / "out.jsonl",
        "--video-out", tmp_path / "out.mp4", "--graph-out", tmp_path / "graphs",
    )  # fmt: skip
    assert_clean_error(result, "c.png")
    assert leftovers(tmp_path, "out", "graphs") == []


@pytest.mark.parametrize("sig, code", [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["SIGINT", "SIGTERM"])
def test_signal_stops_promptly_with_valid_outputs(small_checkpoint, boxes, tmp_path, sig, code):
    out, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    command = [
        sys.executable, "-m", "srg_deploy.cli", "infer", str(small_checkpoint), "--source", "synthetic:96x64",
        "--boxes", str(boxes), "--json", str(out), "--video-out", str(video), "--graph-out", str(tmp_path / "g"),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 180
        while not any(len(p.read_text().splitlines()) >= 3 for p in tmp_path.glob(".out.jsonl.*.part")):
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline, "no frames processed in time"
            time.sleep(0.1)
        sent = time.monotonic()
        process.send_signal(sig)
        _, stderr = process.communicate(timeout=30)
        stopped_in = time.monotonic() - sent
    finally:
        process.kill()
    assert process.returncode == code, stderr
    assert stopped_in < 10, f"took {stopped_in:.1f} s to stop"
    assert "Traceback" not in stderr and f"{sig.name}: stopping capture" in stderr
    records = read_jsonl(out)  # every line parses: no partial line
    assert len(records) >= 3 and [r["frame"] for r in records] == list(range(len(records)))
    assert video_frames(video) == len(records)
    counts = summary_counts(stderr)
    assert counts["processed"] == len(records)
    assert counts["read"] == counts["processed"] + counts["discarded"]
    assert len(list((tmp_path / "g").glob("frame_*.png"))) == len(records)
    assert not list(tmp_path.glob(".*"))


def test_stream_that_stops_reconnects_then_exits_cleanly(small_checkpoint, boxes, tmp_path):
    out, video = tmp_path / "out.jsonl", tmp_path / "out.mp4"
    with MjpegCamera(sessions=2, frames_per_session=4, interval=0.05) as camera:
        result = run_cli(
            "infer", small_checkpoint, "--source", camera.url, "--boxes", boxes, "--json", out,
            "--video-out", video, "--no-realtime", "--reconnect", "2",
        )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert camera.connections == 4  # the first session, one successful reconnect, two refused attempts
    assert "reconnect attempt 1/2" in result.stderr and f"reconnected to stream {camera.url}" in result.stderr
    assert "gave up after 2 reconnect attempts" in result.stderr and "exit code 3" in result.stderr
    records = read_jsonl(out)
    assert [r["frame"] for r in records] == list(range(8))  # both sessions, every frame, in order
    assert all(r["source"] == camera.url and r["image_size"] == [96, 64] for r in records)
    timestamps = [r["timestamp_ms"] for r in records]
    assert timestamps == sorted(timestamps)
    assert video_frames(video) == 8


def test_live_stream_realtime_drops_stale_frames(small_checkpoint, boxes, tmp_path):
    out = tmp_path / "out.jsonl"
    with MjpegCamera(sessions=1, frames_per_session=40, interval=0.01) as camera:
        result = run_cli(
            "infer", small_checkpoint, "--source", camera.url, "--boxes", boxes, "--json", out, "--reconnect", "0"
        )  # fmt: skip
    assert result.returncode == 3, result.stderr
    counts = summary_counts(result.stderr)
    assert counts["read"] == 40 == counts["processed"] + counts["dropped"] + counts["discarded"]
    assert counts["dropped"] > 0 and counts["processed"] >= 1
    frames = [r["frame"] for r in read_jsonl(out)]
    assert len(frames) == counts["processed"] and frames == sorted(set(frames))


def test_show_without_gui_and_bad_video_container(small_checkpoint, boxes, tmp_path):
    video = write_video(tmp_path / "clip.avi", 2, 96, 64, "MJPG")
    args = ("infer", small_checkpoint, "--source", video, "--boxes", boxes)
    env = {"DISPLAY": ""}
    assert_clean_error(run_cli(*args, "--show", env=env), "--show needs")
    assert_clean_error(run_cli(*args, "--video-out", tmp_path / "out.mov"), "unsupported container .mov")
    assert leftovers(tmp_path, "out") == []
