"""`srg-deploy demo`: the whole chain on an embedded default, on any machine, in about a minute of CPU time.

A seeded checkpoint -> ONNX export with its checklist -> a generated sample video and its boxes -> `infer` with
ONNX Runtime writing scene-graph JSONL, an annotated video and graph PNGs. The checkpoint is UNTRAINED: its
labels and relations are noise. The demo shows that the deployment chain works, not what the model knows.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import cv2

from srg_deploy.atomic import atomic_path, write_text
from srg_deploy.commands.export import run_export
from srg_deploy.commands.infer import run_infer
from srg_deploy.commands.init import init_checkpoint
from srg_deploy.config import Preprocessing
from srg_deploy.console import out as console
from srg_deploy.errors import SRGError
from srg_deploy.runtime.synthetic import SyntheticScene

VIDEO_SIZE = (320, 240)
VIDEO_FRAMES = 48
VIDEO_FPS = 12.0
GRAPH_EVERY = 12
# Frames are resized to 240..320 px instead of the default 600..1000, so 48 frames take seconds, not minutes, on a
# CPU. Everything else is the default architecture and vocabulary.
DEMO_PREPROCESSING = Preprocessing(min_size=240, max_size=320)


def run_demo(workdir: Path) -> int:
    """Build everything under `workdir` (re-running overwrites it) and return infer's exit code."""
    started = time.perf_counter()
    workdir = Path(workdir)
    if workdir.exists() and not workdir.is_dir():
        raise SRGError(f"--workdir {workdir} is a file; expected a folder")
    checkpoint, onnx_path = workdir / "checkpoint", workdir / "model.onnx"
    video, boxes = workdir / "sample.mp4", workdir / "boxes.json"
    jsonl, annotated, graphs = (
        workdir / "out" / "scene_graphs.jsonl",
        workdir / "out" / "annotated.mp4",
        workdir / "out" / "graphs",
    )

    console.rule("1/4  seeded demo checkpoint (UNTRAINED)")
    console.print(init_checkpoint(checkpoint, seed=0, preprocessing=DEMO_PREPROCESSING), markup=False)
    console.print(
        f"note: the demo checkpoint resizes frames to {DEMO_PREPROCESSING.min_size}..{DEMO_PREPROCESSING.max_size} px"
        " (default 600..1000) so the demo runs in about a minute on a CPU",
        markup=False,
    )
    console.rule("2/4  export to ONNX (boxes mode)")
    run_export(checkpoint, onnx_path, mode="boxes")
    console.rule("3/4  sample video")
    regions = write_sample_video(video, VIDEO_FRAMES, VIDEO_SIZE, VIDEO_FPS)
    write_text(boxes, json.dumps(regions) + "\n")
    console.print(
        f"wrote {video} ({VIDEO_FRAMES} frames, {VIDEO_SIZE[0]}x{VIDEO_SIZE[1]}, {VIDEO_FPS:g} fps) and {boxes} "
        f"({len(regions)} boxes, one list for every frame)",
        markup=False,
    )
    console.rule("4/4  infer with ONNX Runtime")
    code = run_infer(
        onnx_path,
        source=str(video),
        boxes=boxes,
        json_out=jsonl,
        video_out=annotated,
        graph_out=graphs,
        graph_every=GRAPH_EVERY,
        backend="onnxruntime",
    )
    if code:
        return code
    pngs = sorted(graphs.glob("frame_*.png"))
    console.rule(f"demo finished in {time.perf_counter() - started:.0f} s")
    for what, path in (
        ("checkpoint (UNTRAINED)", checkpoint),
        ("ONNX model", onnx_path),
        ("sample video", video),
        ("its boxes", boxes),
        ("scene graphs (JSONL)", jsonl),
        ("annotated video", annotated),
        (f"graph PNGs ({len(pngs)})", pngs[0] if pngs else graphs),
    ):
        console.print(f"  {what:<24} {path}", markup=False)
    console.print(
        "the model is UNTRAINED: its labels and relations are noise. For real weights see `srg-deploy init --help`"
        " (--backbone, --from-detectron2).",
        markup=False,
    )
    return 0


def write_sample_video(path: Path, frames: int, size: tuple[int, int], fps: float) -> list[list[float]]:
    """A clip of jittering coloured shapes (mp4v); returns the boxes that hold each shape in every frame."""
    scene = SyntheticScene(*size)
    with atomic_path(path, suffix=path.suffix) as tmp:
        writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
        if not writer.isOpened():
            raise SRGError(f"cannot write {path}: OpenCV could not open an mp4v video writer")
        for index in range(frames):
            writer.write(scene.render(index))
        writer.release()
    return scene.regions()
