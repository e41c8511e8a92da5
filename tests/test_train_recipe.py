"""The default recipe on data nobody tuned it for: dense images, trunks whose pool5 norms span 4..400 and the seeded
checkpoint as it is, a run forced to diverge; and the exported graph computes the heads that trained on normalised
features (the normalisation folded into the checkpoint)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import assert_clean_error, run_cli, scene_config

from srg_deploy.checkpoint import load_model, random_model, save_checkpoint
from srg_deploy.datasets import VGSGGDataset
from srg_deploy.datasets.generate import write_dataset
from srg_deploy.export.onnx_export import onnx_from_model
from srg_deploy.runtime.ort_backend import OrtBackend
from srg_deploy.runtime.predictor import Predictor
from srg_deploy.training.features import FeatureExtractor, Normalisation
from srg_deploy.training.trainer import fold_normalisation, unfold_normalisation


def read_log(run) -> list[dict]:
    return [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def dense_data(tmp_path_factory):
    """8 crowded images of 160x120, 8 to 14 boxes each, all train."""
    root = tmp_path_factory.mktemp("dense") / "data"
    info = write_dataset(root, 8, seed=5, size=(160, 120), test_fraction=0.0, boxes_per_image=(8, 14))
    assert all(8 <= len(im.boxes) <= 14 for im in info.images)
    return root


def pool5_norm(model, data) -> float:
    """Mean L2 norm of the pool5 vectors of the first two images' boxes."""
    dataset, extractor = VGSGGDataset(data, val_images=0), FeatureExtractor(model, "cpu")
    return float(torch.cat([extractor(dataset.read_image(k), dataset[k].boxes)[0] for k in (0, 1)]).norm(dim=1).mean())


@torch.no_grad()
def scale_pool5(model, factor: float) -> None:
    """A trunk whose pool5 is `factor` times as large: each res5 block's last BatchNorm (and the shortcut's) scaled,
    and the statistics of the next block's first BatchNorm with it, so only the output's scale changes."""
    for k, block in enumerate(model.res5):
        for norm in (block.bn3, *([block.downsample[1]] if block.downsample is not None else [])):
            norm.weight.mul_(factor)
            norm.bias.mul_(factor)
        if k:
            block.bn1.running_mean.mul_(factor)
            block.bn1.running_var.mul_(factor**2)


@pytest.mark.parametrize("norm", [4, 40, 400, None], ids=["norm4", "norm40", "norm400", "seeded"])
def test_the_default_recipe_learns_dense_images_at_any_feature_scale(norm, dense_data, tmp_path):
    model = random_model(scene_config(), seed=3)
    measured = pool5_norm(model, dense_data)
    if norm:
        scale_pool5(model, norm / measured)
        measured = pool5_norm(model, dense_data)
        assert norm / 2 < measured < norm * 2, measured
    checkpoint, run = tmp_path / "ckpt", tmp_path / "run"
    save_checkpoint(model, checkpoint)
    result = run_cli("train", checkpoint, "--data", dense_data, "--output", run, "--val-images", "0", "--epochs", "20")
    assert result.returncode == 0, result.stdout + result.stderr
    log = read_log(run)
    losses = [r["loss"] for r in log[1:]]
    assert losses[-1] < losses[0] and max(losses) <= 2 * losses[0], (measured, losses)
    assert min(r["fit_loss"] for r in log[1:]) < log[0]["fit_loss"]
    report = tmp_path / "train.json"
    result = run_cli(
        "eval", checkpoint, run, "--data", dense_data, "--split", "train", "--val-images", "0", "--report", report
    )
    assert result.returncode == 0, result.stdout + result.stderr
    before, after = json.loads(report.read_text())["models"]
    assert after["recall"]["50"] > before["recall"]["50"], (measured, before["recall"], after["recall"])


def test_divergence_stops_the_run_and_keeps_a_model_no_worse_than_untrained(scene_data, scene_checkpoint, tmp_path):
    run = tmp_path / "run"
    result = run_cli(
        "train", scene_checkpoint, "--data", scene_data, "--output", run, "--val-images", "0", "--lr", "10000",
        "--epochs", "6",
    )  # fmt: skip
    assert_clean_error(result, "training diverged in epoch", "try a lower --lr than 10000 (e.g. 1000)")
    log = read_log(run)
    assert log[-1]["diverged"] is True and all("diverged" not in r for r in log[:-1]) and len(log) < 7
    kept = max(r["epoch"] for r in log if r.get("best"))
    assert f"keeping epoch {kept} in {run / 'checkpoint'}" in result.stderr
    assert log[kept]["fit_loss"] <= log[0]["fit_loss"]  # the untrained model competes: never worse than it
    config = json.loads((run / "checkpoint" / "config.json").read_text())
    assert config["provenance"]["epoch"] == kept
    state = json.loads((run / "state" / "state.json").read_text())
    assert state["epoch"] == log[-1]["epoch"] - 1  # a resume would start from before the diverged epoch


def test_the_exported_graph_computes_the_heads_trained_on_normalised_features(scene_run, scene_data, tmp_path):
    run, _ = scene_run
    state = json.loads((run / "state" / "state.json").read_text())
    norm = Normalisation(torch.tensor(state["feature_mean"]), state["feature_scale"])
    assert norm.scale > 0 and float(norm.mean.norm()) > 0
    trained = load_model(run)  # the run folder: its checkpoint
    normalised = load_model(run / "checkpoint")
    unfold_normalisation(normalised, norm)  # the heads as they trained
    path = tmp_path / "model.onnx"
    path.write_bytes(onnx_from_model(trained, "boxes").SerializeToString())
    onnx = OrtBackend(path)
    dataset = VGSGGDataset(scene_data, "val", 4)
    for k in range(len(dataset)):
        inputs = Predictor(onnx).prepare(dataset.read_image(k), dataset[k].boxes).inputs
        exported = onnx.run(inputs)
        with torch.no_grad():
            image, boxes, pairs = (torch.from_numpy(inputs[n]) for n in ("image", "boxes", "pairs"))
            features, unions = normalised.pool_regions(normalised.trunk(image), boxes, pairs)
            _, objects, relations = normalised.heads(norm(features), norm(unions), pairs)
        for name, eager in (("object_logits", objects), ("relation_logits", relations)):
            np.testing.assert_allclose(exported[name], eager.numpy(), rtol=1e-4, atol=1e-4 * float(eager.abs().max()))
    # folding back gives the checkpoint's weights
    fold_normalisation(normalised, norm)
    for name, tensor in trained.state_dict().items():
        torch.testing.assert_close(normalised.state_dict()[name], tensor, rtol=1e-5, atol=1e-6)


def test_a_run_folder_without_a_trained_model_is_refused_naming_the_checkpoint(tmp_path, scene_data):
    run = tmp_path / "run"
    (run / "state").mkdir(parents=True)
    assert_clean_error(
        run_cli("export", run, "--output", tmp_path / "m.onnx"),
        f"{run} is a training run without a trained model yet: expected a checkpoint folder at {run / 'checkpoint'}",
    )
    assert_clean_error(run_cli("eval", run, "--data", scene_data), f"expected a checkpoint folder at {run}/checkpoint")
    assert not (tmp_path / "m.onnx").exists()
