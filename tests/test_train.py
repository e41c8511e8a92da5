"""`srg-deploy train` end to end on a generated dataset, as a user runs it: learning, outputs, resume, refusals."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import assert_clean_error, run_cli
from safetensors.torch import load_file

from srg_deploy.datasets.generate import OBJECTS, PREDICATES


def read_log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


def report(path) -> dict:
    return json.loads(path.read_text())


def test_training_lowers_the_loss_and_lifts_recall_on_its_own_images(scene_run, scene_checkpoint, scene_data, tmp_path):
    run, result = scene_run
    log = read_log(run)
    assert [r["epoch"] for r in log] == list(range(13))  # epoch 0: val before training
    assert log[-1]["loss"] < log[1]["loss"] / 4
    # every image's features were computed before epoch 1 (measuring the normalisation, the untrained loss)
    assert all(r["images"] == 14 and r["features_computed"] == 0 for r in log[1:])
    assert max(r["loss"] for r in log[1:]) <= 2 * log[1]["loss"]  # the defaults never jump about
    kept = max(r["epoch"] for r in log if r["best"])
    assert f"trained model: {run / 'checkpoint'} (epoch {kept}, val PredCls R@50" in result.stdout
    assert "epoch 12/12: loss" in result.stderr and "images/s" in result.stderr
    config = json.loads((run / "checkpoint" / "config.json").read_text())
    assert config["trained"] is True and config["objects"] == list(OBJECTS)
    provenance = config["provenance"]
    assert provenance["dataset"] == str(scene_data) and provenance["epoch"] == kept
    assert provenance["best_val_recall@50"] == log[kept]["val"]["recall"]["50"]
    assert provenance["recipe"]["lr"] == 0.01 and provenance["recipe"]["batch_size"] == 12
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # The untrained and the trained model side by side on the training images: from chance to (nearly) all.
    path = tmp_path / "train.json"
    result = run_cli(
        "eval", scene_checkpoint, run / "checkpoint", "--data", scene_data, "--split", "train",
        "--val-images", "4", "--report", path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    before, after = report(path)["models"]
    assert before["images"] == after["images"] == 14
    assert before["recall"]["50"] < 0.35 and after["recall"]["50"] > 0.9
    assert after["delta"]["recall"]["50"] == pytest.approx(after["recall"]["50"] - before["recall"]["50"])
    assert "Δ vs first" in result.stdout and "R@50" in result.stdout


def test_resume_continues_exactly_and_a_finished_run_adds_nothing(scene_data, scene_checkpoint, tmp_path):
    common = (scene_checkpoint, "--data", scene_data, "--feature-cache", tmp_path / "cache")
    args = ("--val-images", "0")  # no val split: the lowest training-split loss is kept
    first, straight = tmp_path / "first", tmp_path / "straight"
    assert run_cli("train", *common, "--output", first, *args, "--epochs", "2").returncode == 0
    resumed = run_cli("train", *common, "--output", first, "--resume", "--epochs", "3")  # settings from the run
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {first} after epoch 2 of 3" in resumed.stderr
    result = run_cli("train", *common, "--output", straight, *args, "--epochs", "3")
    assert result.returncode == 0, result.stderr
    # Interrupted after epoch 2 and resumed = trained 3 epochs straight: same sampling, same weights, same log.
    a, b = load_file(first / "state" / "heads.safetensors"), load_file(straight / "state" / "heads.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert [r.get("loss") for r in read_log(first)] == [r.get("loss") for r in read_log(straight)]
    assert [r["fit_loss"] for r in read_log(first)] == [r["fit_loss"] for r in read_log(straight)]
    assert [r["features_computed"] for r in read_log(straight)[1:]] == [0, 0, 0]  # the disk cache from the first run
    state = (first / "state" / "state.json").read_bytes()
    again = run_cli("train", *common, "--output", first, "--resume")
    assert again.returncode == 0 and "has completed 3 of 3 epochs: nothing to train" in again.stderr
    assert (first / "state" / "state.json").read_bytes() == state
    assert_clean_error(
        run_cli("train", *common, "--output", first, "--resume", "--lr", "0.5", "--epochs", "4"),
        f"--resume: {first} was trained with --lr 0.01 (now 0.5)",
    )


def test_vocabulary_mismatch_is_refused_unless_the_heads_are_reinitialised(small_checkpoint, scene_data, tmp_path):
    out = tmp_path / "run"
    assert_clean_error(
        run_cli("train", small_checkpoint, "--data", scene_data, "--output", out, "--val-images", "0"),
        "different vocabularies: objects: the model has 150 (airplane, animal, arm, bag, ...), the dataset 3 "
        "(square, circle, triangle); predicates: the model has 50",
        "pass --reinit-heads",
    )
    assert not out.exists()
    assert_clean_error(run_cli("eval", small_checkpoint, "--data", scene_data), "different vocabularies")
    result = run_cli(
        "train", small_checkpoint, "--data", scene_data, "--output", out, "--val-images", "0", "--epochs", "1",
        "--reinit-heads",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "--reinit-heads: new object, box-delta and relation heads (seed 0) for 3 objects and 6 predicates" in (
        result.stderr
    )
    config = json.loads((out / "checkpoint" / "config.json").read_text())
    assert config["objects"] == list(OBJECTS) and config["predicates"] == list(PREDICATES)
    assert config["provenance"]["recipe"]["reinit_heads"] is True


def test_train_errors_are_one_line(scene_data, scene_checkpoint, tmp_path):
    def train(*args):
        return run_cli("train", scene_checkpoint, "--data", scene_data, "--output", tmp_path / "run", *args)

    assert_clean_error(
        run_cli("train", scene_checkpoint, "--data", tmp_path / "nodata", "--output", tmp_path / "run"),
        f"dataset folder {tmp_path / 'nodata'} does not exist",
    )
    assert_clean_error(train("--device", "tpu"), "--device 'tpu': expected cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        assert_clean_error(train("--device", "cuda"), "--device cuda: PyTorch sees no CUDA GPU on this machine")
    (tmp_path / "run").mkdir()
    assert_clean_error(train("--resume"), "holds no training state")
    (tmp_path / "run" / "notes.txt").write_text("someone's files")
    assert_clean_error(train(), "already exists; pass --resume to continue that run, or name a new folder")
