"""`srg-deploy eval` end to end: the same R@K from a trained checkpoint, its ONNX export and training's own
validation; SGDet on an sgdet export; the report's schema; eval of an ONNX model without PyTorch; refusals."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT, assert_clean_error, run_cli

from srg_deploy.checkpoint import load_model
from srg_deploy.export.onnx_export import onnx_from_model

METRICS = ("recall", "no_graph_constraint_recall", "mean_recall", "no_graph_constraint_mean_recall")


def check_schema(result: dict, predicates: int) -> None:
    """The issue's keys, each recall a fraction in [0, 1] at K = 20, 50, 100."""
    for key in ("mode", "split", "images", "per_predicate", *METRICS):
        assert key in result, key
    for key in METRICS:
        assert set(result[key]) == {"20", "50", "100"} and all(0.0 <= v <= 1.0 for v in result[key].values())
    assert len(result["per_predicate"]) == predicates
    assert all(0.0 <= v <= 1.0 for recall in result["per_predicate"].values() for v in recall.values())


def test_checkpoint_its_onnx_export_and_training_agree(scene_run, scene_data, tmp_path):
    run, _ = scene_run
    onnx_path = tmp_path / "model.onnx"
    exported = run_cli("export", run, "--output", onnx_path)  # the run folder: its trained model, said so
    assert exported.returncode == 0, exported.stdout + exported.stderr
    assert f"{run} is a training run: using its trained model {run / 'checkpoint'}" in exported.stderr
    path = tmp_path / "val.json"
    result = run_cli(
        "eval", run / "checkpoint", onnx_path, "--data", scene_data, "--split", "val", "--val-images", "4",
        "--report", path,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(path.read_text())
    check_schema(document, predicates=6)
    assert document["mode"] == "predcls" and document["split"] == "val" and document["images"] == 4
    eager, deployed = document["models"]
    assert eager["backend"].startswith("torch") and deployed["backend"].startswith("onnxruntime")
    assert {k: document[k] for k in METRICS} == {k: eager[k] for k in METRICS}  # top level = the first model
    for key in METRICS:
        assert deployed[key] == eager[key]
        assert all(delta == 0.0 for delta in deployed["delta"][key].values())
    log = [json.loads(line) for line in (run / "train_log.jsonl").read_text().splitlines()]
    kept = max((r for r in log if r["best"]), key=lambda r: r["epoch"])
    assert kept["val"]["recall"] == eager["recall"] and kept["val"]["mean_recall"] == eager["mean_recall"]

    # The deployed model needs no PyTorch: the same evaluation with torch made unimportable.
    no_torch = (
        "import sys; sys.modules['torch'] = None; from srg_deploy.cli import main; "
        f"sys.argv = ['srg-deploy', 'eval', {str(onnx_path)!r}, '--data', {str(scene_data)!r}, '--split', 'val', "
        f"'--val-images', '4', '--report', {str(tmp_path / 'no_torch.json')!r}]; main()"
    )
    result = subprocess.run([sys.executable, "-c", no_torch], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert result.returncode == 0, result.stderr
    assert json.loads((tmp_path / "no_torch.json").read_text())["recall"] == eager["recall"]


def test_sgdet_export_is_evaluated_end_to_end(scene_run, scene_data, tmp_path):
    run, _ = scene_run
    sgdet = tmp_path / "sgdet.onnx"
    sgdet.write_bytes(onnx_from_model(load_model(run / "checkpoint"), "sgdet").SerializeToString())
    path = tmp_path / "sgdet.json"
    result = run_cli("eval", sgdet, "--data", scene_data, "--mode", "sgdet", "--max-images", "2", "--report", path)
    assert result.returncode == 0, result.stdout + result.stderr
    document = json.loads(path.read_text())
    check_schema(document, predicates=6)
    assert document["mode"] == "sgdet" and document["split"] == "test" and document["images"] == 2
    assert "SGDet on" in result.stdout and "sgdet mode" in document["backend"]
    assert_clean_error(
        run_cli("eval", sgdet, "--data", scene_data), f"{sgdet} is an sgdet-mode model; predcls needs a boxes-mode one"
    )
    assert_clean_error(
        run_cli("eval", run / "checkpoint", sgdet, "--data", scene_data, "--mode", "sgcls"),
        "is an sgdet-mode model; sgcls needs a boxes-mode one",
    )


def test_eval_errors_are_one_line(scene_data, scene_checkpoint, tmp_path):
    assert_clean_error(run_cli("eval", tmp_path / "none.onnx", "--data", scene_data), "none.onnx does not exist")
    assert_clean_error(
        run_cli("eval", scene_checkpoint, "--data", scene_data, "--mode", "detect"),
        "unknown --mode 'detect'; expected one of predcls, sgcls, sgdet",
    )
    assert_clean_error(
        run_cli("eval", scene_checkpoint, "--data", scene_data, "--split", "val", "--val-images", "0"),
        "val_images is 0, so every split-0 image is train and there is no val split",
    )


def test_dataset_generate_and_info(tmp_path):
    root = tmp_path / "scene"
    result = run_cli("dataset", "generate", root, "--images", "8", "--size", "64x48", "--test-fraction", "0.25")
    assert result.returncode == 0, result.stderr
    assert f"wrote {root}: 8 images (6 split 0, 2 test)" in result.stderr  # as `init` says what it wrote
    result = run_cli("dataset", "info", root, "--split", "test")
    assert result.returncode == 0 and f"{root}: test split, 2 images, 6 boxes, 12 relations" in result.stdout
    assert_clean_error(run_cli("dataset", "info", tmp_path / "nope"), "does not exist")
