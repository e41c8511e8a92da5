"""`srg-deploy batch` on a real local Ray (2 CPUs, 200 MB object store, no dashboard), through the real CLI in a
subprocess, on real files: records equal `infer`'s, re-runs add nothing, a killed run resumes to exactly one record
per input, bad inputs land in failures.jsonl, videos keep infer's frame numbering."""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import cv2
import pytest
from conftest import ROOT, assert_clean_error, make_frame, run_cli
from media import write_video

BOXES = [[4, 4, 40, 30], [20, 10, 70, 50], [0, 0, 60, 50]]
IMAGES = 12


@pytest.fixture(scope="module")
def ray_installed() -> None:
    pytest.importorskip("ray", reason="ray (the [ray] extra) is not installed; `srg-deploy batch` runs on Ray Data")


@pytest.fixture(scope="module")
def folder(tmp_path_factory) -> Path:
    """IMAGES small frames of two sizes, named so that sorting gives their number."""
    path = tmp_path_factory.mktemp("batch_images") / "images"
    path.mkdir()
    for k in range(IMAGES):
        assert cv2.imwrite(str(path / f"img_{k:02d}.png"), make_frame(48 + 8 * (k % 2), 64, seed=k))
    return path


@pytest.fixture(scope="module")
def boxes(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("batch_boxes") / "boxes.json"
    path.write_text(json.dumps(BOXES))
    return path


def read_records(folder: Path) -> list[dict]:
    """Every record of a batch output folder (order: by shard name, then line)."""
    records = []
    for shard in sorted((Path(folder) / "records").glob("part-*.jsonl")):
        records += [json.loads(line) for line in shard.read_text().splitlines()]
    return records


def infer_records(model: Path, source: Path | str, boxes: Path, out: Path) -> list[dict]:
    result = run_cli("infer", model, "--source", source, "--boxes", boxes, "--json", out)
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture(scope="module")
def expected(small_onnx, folder, boxes, tmp_path_factory) -> dict[tuple[str, int], dict]:
    """What `infer` writes for the folder, keyed by (source, frame)."""
    out = tmp_path_factory.mktemp("batch_infer") / "infer.jsonl"
    return by_key(infer_records(small_onnx, folder, boxes, out))


def by_key(records: list[dict]) -> dict[tuple[str, int], dict]:
    """Records without their timings, keyed by (source, frame); a key seen twice fails the test."""
    keyed: dict[tuple[str, int], dict] = {}
    for record in records:
        key = (record["source"], record["frame"])
        assert key not in keyed, f"{key} written twice"
        keyed[key] = {k: v for k, v in record.items() if k != "latency_ms"}
    return keyed


def batch(*args: object, env: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli("batch", *args, env=env)


def shards(out: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in sorted((out / "records").glob("part-*.jsonl"))}


def leftovers(out: Path) -> list[str]:
    return [p.name for p in out.rglob(".*") if p.name != ".lock"]


def test_two_workers_equal_infer_and_a_second_run_adds_nothing(
    ray_installed, small_onnx, folder, boxes, expected, tmp_path
):
    out = tmp_path / "out"
    args = (small_onnx, "--source", folder, "--boxes", boxes, "--output", out, "--workers", "2", "--batch-size", "5")
    result = batch(*args)
    assert result.returncode == 0, result.stderr
    assert by_key(read_records(out)) == expected  # every key but latency_ms, record by record
    assert len(shards(out)) == 3  # 12 images in units of 5
    workers = {json.loads(p.read_text())["worker"] for p in (out / "manifests").glob("*.json")}
    assert len(workers) == 2, workers  # both actors took units
    assert f"inputs: {IMAGES} ({IMAGES} images, 0 videos)" in result.stderr
    assert f"this run: {IMAGES} inputs -> {IMAGES} records, 0 failed, in 3 shards" in result.stderr
    assert "local Ray: 2 CPU" in result.stderr and "2 workers x 1 CPU" in result.stderr
    assert (out / "failures.jsonl").read_text() == ""
    assert leftovers(out) == []

    before = shards(out)
    again = batch(*args)
    assert again.returncode == 0, again.stderr
    assert "this run: nothing to do, every input is done" in again.stderr
    assert "local Ray" not in again.stderr  # nothing to do: Ray is not even started
    assert shards(out) == before  # not rewritten
    assert by_key(read_records(out)) == expected


def test_killed_halfway_then_rerun_gives_exactly_one_record_per_input(
    ray_installed, small_onnx, folder, boxes, expected, tmp_path
):
    """SIGKILL to the whole process group (driver, local Ray, workers) as soon as the first shard is committed,
    as an OOM kill or a lost machine would; the source is a list file of the folder in sorted order."""
    listing = tmp_path / "inputs.txt"
    listing.write_text("# the folder, sorted\n" + "".join(f"{folder}/img_{k:02d}.png\n" for k in range(IMAGES)))
    out = tmp_path / "out"
    args = ("batch", small_onnx, "--source", listing, "--boxes", boxes, "--output", out)
    args += ("--workers", "2", "--batch-size", "1")
    process = subprocess.Popen(
        [sys.executable, "-m", "srg_deploy.cli", *map(str, args)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    manifests = out / "manifests"
    try:
        deadline = time.monotonic() + 300
        while not (manifests.is_dir() and any(manifests.glob("part-*.json"))):
            assert process.poll() is None, process.stderr.read() if process.stderr else ""
            assert time.monotonic() < deadline, "no shard committed in 300 s"
            time.sleep(0.01)
        os.killpg(process.pid, signal.SIGKILL)
    finally:
        with_group_killed(process)
    committed = len(list(manifests.glob("part-*.json")))
    assert 1 <= committed < IMAGES, f"{committed} of {IMAGES} units committed: the kill came too late to test"

    result = batch(*args[1:])
    assert result.returncode == 0, result.stderr
    assert f"{committed} done before this run, {IMAGES - committed} to do" in result.stderr
    records = read_records(out)
    assert len(records) == IMAGES
    assert by_key(records) == expected  # a list of the folder in sorted order numbers frames as `infer DIR` does
    assert len(shards(out)) == IMAGES and leftovers(out) == []


def with_group_killed(process: subprocess.Popen) -> None:
    """Make sure nothing of the process group we started outlives the test."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=60)
    for stream in (process.stdout, process.stderr):
        if stream:
            stream.close()


def test_a_shard_without_its_manifest_is_redone_once(ray_installed, small_onnx, folder, boxes, expected, tmp_path):
    """The state a kill between the shard's rename and its manifest's leaves, built on purpose, plus the temporary
    files a kill mid-write leaves: the unit is redone under the same name, nothing is doubled."""
    out = tmp_path / "out"
    args = (small_onnx, "--source", folder, "--boxes", boxes, "--output", out, "--workers", "2", "--batch-size", "4")
    assert batch(*args).returncode == 0
    manifest = sorted((out / "manifests").glob("part-*.json"))[1]
    redo = json.loads(manifest.read_text())["inputs"]
    manifest.unlink()
    (out / "records" / ".part-0123.jsonl.abcdef.part").write_text('{"half": ')
    (out / "manifests" / ".part-0123.json.abcdef.part").write_text("")

    result = batch(*args)
    assert result.returncode == 0, result.stderr
    assert "removed 3 leftovers of an interrupted run" in result.stderr
    assert f"{IMAGES - len(redo)} done before this run, {len(redo)} to do" in result.stderr
    assert by_key(read_records(out)) == expected
    assert (out / "records" / f"{manifest.stem}.jsonl").is_file() and manifest.is_file()
    assert leftovers(out) == []


def test_bad_images_go_to_the_failures_file_and_videos_keep_their_frames(
    ray_installed, small_onnx, folder, boxes, tmp_path
):
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    for k, name in enumerate(("a.png", "b.png")):
        shutil.copy(folder / f"img_{k:02d}.png", mixed / name)
    (mixed / "c_corrupt.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (mixed / "d_empty.png").write_bytes(b"")
    video = write_video(mixed / "clip.avi", 4, 72, 56, "MJPG")
    (mixed / "notes.json").write_text("{}")  # neither image nor video: not an input
    out = tmp_path / "out"
    args = (small_onnx, "--source", mixed, "--boxes", boxes, "--output", out, "--workers", "2", "--batch-size", "2")

    result = batch(*args)
    assert result.returncode == 3, result.stderr  # done, with failures
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [(f["input"], f["error"].split(":")[0]) for f in failures] == [
        (str(mixed / "c_corrupt.jpg"), f"cannot decode image {mixed / 'c_corrupt.jpg'}"),
        (str(mixed / "d_empty.png"), f"cannot decode image {mixed / 'd_empty.png'}"),
    ]
    assert all(f["shard"].startswith("part-") for f in failures)
    assert "5 inputs -> 6 records, 2 failed" in result.stderr and "(2 failed inputs)" in result.stderr
    got = by_key(read_records(out))
    images = by_key(infer_records(small_onnx, f"{mixed}/[ab].png", boxes, tmp_path / "images.jsonl"))
    clip = by_key(infer_records(small_onnx, video, boxes, tmp_path / "clip.jsonl"))
    assert list(clip) == [(str(video), k) for k in range(4)]
    assert got == {**images, **clip}  # images numbered as in the folder, the video as `infer --source VIDEO`

    again = batch(*args)
    assert again.returncode == 3 and "nothing to do" in again.stderr  # failures are done too, until retried

    shutil.copy(folder / "img_05.png", mixed / "c_corrupt.jpg")  # fixed (a PNG under a .jpg name decodes)
    retried = batch(*args, "--retry-failed")
    assert retried.returncode == 3, retried.stderr
    assert "3 done before this run, 2 to do" in retried.stderr
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]
    assert [f["input"] for f in failures] == [str(mixed / "d_empty.png")]
    assert (str(mixed / "c_corrupt.jpg"), 2) in by_key(read_records(out))
    assert len(read_records(out)) == 7


HEAD = """
import sys, ray
context = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=200 * 2**20)
print(context.address_info["gcs_address"], flush=True)
sys.stdin.read()  # the cluster lives until the test closes our stdin
"""


def test_joins_an_existing_cluster_with_address(ray_installed, small_onnx, folder, boxes, expected, tmp_path):
    """A Ray head started by another process (as `ray start --head` would), on loopback, with its own token; the
    job joins it with --address and its workers run there."""
    env = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(16)}
    head = subprocess.Popen(
        [sys.executable, "-c", HEAD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,
        env={**os.environ, **env},
    )
    try:
        assert head.stdout is not None
        address = head.stdout.readline().strip()
        assert address.startswith("127.0.0.1:"), address
        out = tmp_path / "out"
        result = batch(
            small_onnx, "--source", folder, "--boxes", boxes, "--output", out, "--workers", "2", "--address", address,
            env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert f"Ray cluster at {address}: 2 CPU, 0 GPU" in result.stderr
        assert by_key(read_records(out)) == expected
    finally:
        if head.stdin:
            head.stdin.close()
        try:
            head.wait(timeout=60)
        finally:
            with_group_killed(head)


def test_a_model_that_cannot_run_the_job_is_one_line(ray_installed, small_onnx, folder, tmp_path):
    result = batch(small_onnx, "--source", folder, "--output", tmp_path / "out", "--workers", "2")
    assert_clean_error(result, "was exported in boxes mode and needs --boxes")
    assert list((tmp_path / "out" / "records").iterdir()) == []


def test_user_errors_before_any_work(ray_installed, small_onnx, folder, boxes, tmp_path):
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "thesis.pdf").write_text("")
    assert_clean_error(
        batch(small_onnx, "--source", folder, "--boxes", boxes, "--output", tmp_path / "taken"),
        "already holds files (thesis.pdf) and is not a batch output",
    )
    assert_clean_error(
        batch(small_onnx, "--source", tmp_path / "nowhere", "--output", tmp_path / "o"), "does not exist"
    )
    partial = tmp_path / "partial.json"
    partial.write_text(json.dumps({"img_00.png": BOXES}))
    assert_clean_error(
        batch(small_onnx, "--source", folder, "--boxes", partial, "--output", tmp_path / "o"),
        "has no entry for 'img_01.png'",
    )
    out = tmp_path / "settings"
    out.mkdir()
    (out / "batch.json").write_text(json.dumps({"format": "srg-deploy-batch/1", "top_k": 5}))
    assert_clean_error(
        batch(small_onnx, "--source", folder, "--boxes", boxes, "--output", out),
        "holds records made with other settings",
    )


def test_list_files_number_like_a_folder_and_refuse_repeats(tmp_path, monkeypatch):
    """No Ray needed: how a list file becomes inputs (relative to the list's folder, comments, videos by suffix)."""
    from srg_deploy.errors import SRGError
    from srg_deploy.runtime.batch_inputs import list_inputs

    (tmp_path / "lists").mkdir()
    listing = tmp_path / "lists" / "todo.txt"
    listing.write_text("# a comment\n\n../b.png\n  ../a.jpg  \n../clip.mp4\n/abs/c.png\n")
    monkeypatch.chdir(tmp_path)
    inputs = list_inputs("lists/todo.txt")
    assert [(i.source, i.kind, i.frame, i.name) for i in inputs] == [
        ("lists/../b.png", "image", 0, "b.png"),
        ("lists/../a.jpg", "image", 1, "a.jpg"),
        ("/abs/c.png", "image", 2, "c.png"),
        ("lists/../clip.mp4", "video", 0, "clip.mp4"),
    ]
    assert inputs[0].path == str(tmp_path / "b.png")  # absolute and normalised: how manifests know it
    listing.write_text("a.png\nx/../a.png\n")
    with pytest.raises(SRGError, match=r"todo.txt:2 lists x/../a.png again \(first on line 1\)"):
        list_inputs(str(listing))
    listing.write_text("# nothing\n")
    with pytest.raises(SRGError, match="names no inputs"):
        list_inputs(str(listing))


def test_without_ray_the_error_names_the_extra(small_onnx, folder, boxes, tmp_path):
    """A `ray` that cannot be imported, first on the path: what a machine without the [ray] extra sees."""
    stub = tmp_path / "stub"
    stub.mkdir()
    (stub / "ray.py").write_text("raise ImportError('No module named ray')\n")
    path = os.pathsep.join([str(stub), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    result = batch(
        small_onnx, "--source", folder, "--boxes", boxes, "--output", tmp_path / "o", env={"PYTHONPATH": path}
    )
    assert_clean_error(result, 'Ray Data, which is not installed: pip install "srg-deploy[ray]"')
    assert not (tmp_path / "o").exists()
