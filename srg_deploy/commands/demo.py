"""`srg-deploy demo`: the whole chain, with a model that has learned something, in a few minutes on a CPU.

A seeded checkpoint (random trunk: no pretrained weights ship with srg-deploy) -> a generated VG-SGG dataset of the
demo's own sample scene -> `train` re-initialises the heads for that dataset's vocabulary and trains them ->
`export` to ONNX with its checklist -> `eval` of the ONNX model on held-out frames -> a sample video of the same
scene with each frame's boxes -> `infer` with ONNX Runtime writing scene-graph JSONL, an annotated video and graph
PNGs. The model learns that one scene (three shapes at fixed places, six directional predicates), nothing more.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Annotated

import typer

from srg_deploy.atomic import atomic_path, write_text
from srg_deploy.commands.eval import eval_
from srg_deploy.commands.export import export
from srg_deploy.commands.infer import infer
from srg_deploy.commands.init import init_checkpoint
from srg_deploy.commands.train import RichMonitor
from srg_deploy.config import Preprocessing
from srg_deploy.console import out as console
from srg_deploy.errors import SRGError

VIDEO_SIZE = (320, 240)
VIDEO_FRAMES = 48
VIDEO_FPS = 12.0
GRAPH_EVERY = 12
# The model sees frames resized to 120..160 px instead of the default 600..1000: computing the frozen features of
# 112 training and validation frames then takes seconds, not minutes, on a CPU, and 96 training frames (rather than
# the 40 a larger size would allow in the same time) are what it takes for heads on a random trunk to carry over to
# the video's unseen backgrounds. Everything else is the default architecture.
DEMO_PREPROCESSING = Preprocessing(min_size=120, max_size=160)
DATASET_IMAGES, TEST_FRACTION, VAL_IMAGES = 128, 0.125, 16  # 16 test, 16 val, 96 train
EPOCHS = 25
TRAIN_OPTIONS = {"val_images": VAL_IMAGES, "seed": 0, "reinit_heads": True}  # the recipe's defaults otherwise

EPILOG = "Example:\n\n  srg-deploy demo --workdir demo"


def demo(
    workdir: Annotated[
        Path, typer.Option(help="Folder for the demo's checkpoint, dataset, training run, model, video and outputs.")
    ] = Path("demo"),
) -> None:
    """The whole chain on a generated scene: dataset -> train the heads -> ONNX -> eval -> sample video -> infer."""
    code = run_demo(workdir)
    if code:
        raise typer.Exit(code)


def run_demo(workdir: Path) -> int:
    """Build everything under `workdir` (re-running overwrites it) and return infer's exit code."""
    from srg_deploy.datasets.generate import write_dataset
    from srg_deploy.synthetic import SHAPES
    from srg_deploy.training.trainer import train

    started = time.perf_counter()
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise SRGError(f"--workdir {workdir} is a file; expected a folder")
    checkpoint, scene_data, run = workdir / "checkpoint", workdir / "scene", workdir / "training"
    onnx_path, video, boxes = workdir / "model.onnx", workdir / "sample.mp4", workdir / "boxes.json"
    jsonl, annotated, graphs = (
        workdir / "out" / "scene_graphs.jsonl",
        workdir / "out" / "annotated.mp4",
        workdir / "out" / "graphs",
    )
    seconds: dict[str, float] = {}

    console.rule("1/6  seeded checkpoint (random trunk: srg-deploy ships no pretrained weights)")
    console.print(init_checkpoint(checkpoint, seed=0, preprocessing=DEMO_PREPROCESSING), markup=False)
    console.print(
        f"note: the demo checkpoint resizes frames to {DEMO_PREPROCESSING.min_size}..{DEMO_PREPROCESSING.max_size} px"
        " (default 600..1000) so that the demo runs in a few minutes on a CPU",
        markup=False,
    )
    console.rule("2/6  a dataset of the sample scene (VG-SGG layout)")
    mark = time.perf_counter()
    info = write_dataset(scene_data, DATASET_IMAGES, size=VIDEO_SIZE, test_fraction=TEST_FRACTION)
    console.print(f"wrote {info.describe()}", markup=False)
    seconds["dataset"] = time.perf_counter() - mark

    console.rule("3/6  train the heads on it (trunk and res5 frozen)")
    mark = time.perf_counter()
    if run.exists():
        _remove_run(run)
    with RichMonitor() as monitor:
        summary = train(checkpoint, scene_data, run, options=TRAIN_OPTIONS, epochs=EPOCHS, monitor=monitor)
    trained = Path(summary["checkpoint"])
    console.print(
        f"kept epoch {summary['best_epoch']} (val PredCls R@50 {100 * summary['best_val_recall@50']:.1f}): {trained};"
        f" log {summary['log']}, curves {summary['curves']}",
        markup=False,
    )
    seconds["training"] = time.perf_counter() - mark

    console.rule("4/6  export the trained model to ONNX (boxes mode)")
    mark = time.perf_counter()
    export(trained, onnx_path, mode="boxes")
    seconds["export"] = time.perf_counter() - mark

    console.rule("5/6  Recall@K of the ONNX model on held-out frames (test split)")
    mark = time.perf_counter()
    eval_([onnx_path], data=scene_data, split="test", val_images=VAL_IMAGES)
    seconds["eval"] = time.perf_counter() - mark

    console.rule("6/6  sample video -> infer with ONNX Runtime")
    mark = time.perf_counter()
    frame_boxes = write_sample_video(video, VIDEO_FRAMES, VIDEO_SIZE, VIDEO_FPS)
    write_text(boxes, json.dumps({video.name: frame_boxes}) + "\n")
    console.print(
        f"wrote {video} ({VIDEO_FRAMES} frames, {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, {VIDEO_FPS:g} fps) and {boxes} "
        f"(each frame's {len(SHAPES)} tight boxes)",
        markup=False,
    )
    try:
        infer(
            onnx_path,
            source=str(video),
            boxes=boxes,
            json_out=jsonl,
            video_out=annotated,
            graph_out=graphs,
            graph_every=GRAPH_EVERY,
            backend="onnxruntime",
        )
    except typer.Exit as stopped:
        return stopped.exit_code
    seconds["infer"] = time.perf_counter() - mark
    pngs = sorted(graphs.glob("frame_*.png"))
    labels_right, graphs_right = check_scene_graphs(jsonl)
    console.rule(f"demo finished in {time.perf_counter() - started:.0f} s")
    console.print("  " + ", ".join(f"{what} {s:.0f} s" for what, s in seconds.items()), markup=False)
    for what, path in (
        ("trained checkpoint", trained),
        ("training curves", summary["curves"]),
        ("ONNX model", onnx_path),
        ("sample video", video),
        ("its boxes, per frame", boxes),
        ("scene graphs (JSONL)", jsonl),
        ("annotated video", annotated),
        (f"graph PNGs ({len(pngs)})", pngs[0] if pngs else graphs),
    ):
        console.print(f"  {what:<24} {path}", markup=False)
    console.print(
        f"on the sample video: labels right in {labels_right}/{VIDEO_FRAMES} frames, all six relations right in "
        f"{graphs_right}/{VIDEO_FRAMES}",
        markup=False,
    )
    console.print(
        f"What this model has learned: only this scene. Its trunk is random; its heads were trained for "
        f"{seconds['training']:.0f} s on {summary['train_images']} generated frames of the "
        "same red square, blue circle and green triangle at the same places, so it names those three shapes and the "
        "six directions between them, and nothing else. Real use starts from pretrained weights (srg-deploy init "
        "--backbone resnet101-63fe2227.pth, or --from-detectron2 for a bottom-up-attention detector) and Visual "
        "Genome: see docs/training.md.",
        markup=False,
    )
    return 0


def write_sample_video(path: Path, frames: int, size: tuple[int, int], fps: float) -> list[list[list[float]]]:
    """A clip of the scene's jittering shapes (mp4v, scene seed 0: no generated dataset image is one of its
    frames); returns each frame's tight boxes, as the dataset's boxes are."""
    import cv2

    from srg_deploy.synthetic import SyntheticScene

    scene = SyntheticScene(*size)
    with atomic_path(path, suffix=path.suffix) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise SRGError(f"cannot write {path}: OpenCV could not open an mp4v video writer")
        for index in range(frames):
            writer.write(scene.render(index))
        writer.release()
    return [scene.boxes(index) for index in range(frames)]


def check_scene_graphs(jsonl: Path) -> tuple[int, int]:
    """(frames whose three labels are right, frames whose six relations are all right) in infer's JSONL, against
    the generator's rule for the scene (`layout_relations`)."""
    from srg_deploy.datasets.generate import PREDICATES, layout_relations
    from srg_deploy.synthetic import SHAPES, SyntheticScene

    scene = SyntheticScene(*VIDEO_SIZE)
    expected = {(s, o): PREDICATES[p - 1] for s, o, p in layout_relations(scene, list(range(len(SHAPES))))}
    labels_right = graphs_right = 0
    for line in jsonl.read_text().splitlines():
        record = json.loads(line)
        labels_right += [o["label"] for o in record["objects"]] == list(SHAPES)
        found = {(r["subject"], r["object"]): r["predicate"] for r in record["relations"]}
        graphs_right += found == expected
    return labels_right, graphs_right


def _remove_run(run: Path) -> None:
    """A previous demo's training run (re-running the demo starts it again)."""
    if not (run / "state").is_dir():
        raise SRGError(f"{run} exists and is not a training run; move it away")
    shutil.rmtree(run)
