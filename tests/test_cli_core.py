"""`srg-deploy init` and `infer` as a user runs them: real subprocesses, real files."""

from __future__ import annotations

import json

import pytest
from conftest import assert_clean_error, run_cli

BOXES = [[10, 10, 60, 50], [40, 30, 150, 110], [0, 0, 159, 119]]


def test_help_lists_commands_with_examples():
    result = run_cli("--help")
    assert result.returncode == 0
    for command in ("init", "infer", "export"):
        assert command in result.stdout
    result = run_cli("infer", "--help")
    assert "Examples" in result.stdout and "--boxes" in result.stdout


def test_init_untrained_message(tmp_path):
    result = run_cli("init", tmp_path / "ck", "--seed", "3")
    assert result.returncode == 0, result.stderr
    assert "UNTRAINED" in result.stderr + result.stdout
    assert (tmp_path / "ck" / "model.safetensors").is_file() and (tmp_path / "ck" / "config.json").is_file()


def test_infer_images_directory_with_per_image_boxes(checkpoint, write_image, write_json, tmp_path):
    write_image("imgs/a.png", 120, 160)
    write_image("imgs/b.jpg", 91, 137, seed=1)
    boxes = write_json("boxes.json", {"a.png": BOXES, "b.jpg": BOXES[:1]})
    out = tmp_path / "out.jsonl"
    result = run_cli("infer", checkpoint, "--source", tmp_path / "imgs", "--boxes", boxes, "--json", out)
    assert result.returncode == 0, result.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["frame"] for r in records] == [0, 1]
    assert records[0]["image_size"] == [160, 120] and records[1]["image_size"] == [137, 91]
    assert [o["box"] for o in records[0]["objects"]] == [[float(v) for v in b] for b in BOXES]
    assert len(records[0]["relations"]) == 6 and records[1]["relations"] == []
    assert all(o["score"] == 1.0 for o in records[0]["objects"])
    assert set(records[0]["latency_ms"]) == {"preprocess", "model", "postprocess"}


def test_infer_prints_summary_without_json(checkpoint, write_image, write_json):
    result = run_cli("infer", checkpoint, "--source", write_image(), "--boxes", write_json("b.json", BOXES))
    assert result.returncode == 0, result.stderr
    assert "3 objects" in result.stderr and "-->" in result.stderr


@pytest.mark.parametrize(
    "boxes, fragment",
    [
        ("not json", "not valid JSON"),
        ([[1, 2, 3]], "expected 4 numbers"),
        ([[1, 2, 3, "x"]], "must be a number"),
        ({"other.png": BOXES}, "no entry for 'frame.png'"),
        ("NaN", "non-finite"),
    ],
)
def test_infer_bad_boxes(checkpoint, write_image, tmp_path, boxes, fragment):
    path = tmp_path / "boxes.json"
    if boxes == "NaN":
        path.write_text("[[1, 2, NaN, 4]]")
    else:
        path.write_text(boxes if isinstance(boxes, str) else json.dumps(boxes))
    out = tmp_path / "out.jsonl"
    result = run_cli("infer", checkpoint, "--source", write_image(), "--boxes", path, "--json", out)
    assert_clean_error(result, fragment)
    assert list(tmp_path.glob("*out.jsonl*")) == []


def test_infer_missing_image_and_checkpoint(checkpoint, write_json, tmp_path):
    boxes = write_json("b.json", BOXES)
    out = tmp_path / "out.jsonl"
    assert_clean_error(
        run_cli("infer", checkpoint, "--source", tmp_path / "nope.png", "--boxes", boxes, "--json", out),
        "does not exist",
    )
    assert_clean_error(
        run_cli("infer", tmp_path / "nockpt", "--source", tmp_path, "--boxes", boxes, "--json", out), "nockpt"
    )
    assert not out.exists() and list(tmp_path.glob("*.part")) == []


def test_infer_corrupt_image_midway_leaves_no_output(checkpoint, write_image, write_json, tmp_path):
    write_image("imgs/a.png")
    (tmp_path / "imgs" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "out.jsonl"
    result = run_cli(
        "infer", checkpoint, "--source", tmp_path / "imgs", "--boxes", write_json("b.json", BOXES), "--json", out
    )
    assert_clean_error(result, "b.png")
    assert not out.exists() and list(tmp_path.glob(".out.jsonl*")) == []


def test_debug_shows_traceback(checkpoint, tmp_path):
    result = run_cli(
        "--debug", "infer", checkpoint, "--source", tmp_path / "nope.png", "--boxes", tmp_path / "nope.json"
    )
    assert result.returncode != 0 and "Traceback" in result.stderr
