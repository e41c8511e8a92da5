"""`srg-deploy infer`: a source (camera, stream, video, images) through a backend into scene-graph outputs.

Cheap checks come first (model path, source, boxes, output names), then the model is loaded and the pipeline
runs (`runtime/pipeline.py`) with a progress bar for files or a periodic stats line for live sources, and a
summary at the end. The return value is the process exit code (see EXIT_CODES).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from srg_deploy.commands.options import Backend, CacheDir, Device, MaxPairs, ModelPath, Precision, TopK
from srg_deploy.console import err as console
from srg_deploy.defaults import TOP_K
from srg_deploy.errors import SRGError

if TYPE_CHECKING:
    from srg_deploy.runtime.pipeline import Options
    from srg_deploy.runtime.sinks import Sink
    from srg_deploy.runtime.sources import Source
    from srg_deploy.runtime.stats import RunStats

# 0: the source ended or --max-frames was reached; 1: an error (outputs removed); 3: a live source was lost after
# its reconnect attempts (outputs complete and valid); 130 / 143: stopped by SIGINT / SIGTERM (outputs valid).
EXIT_CODES = {"END": 0, "MAX_FRAMES": 0, "QUIT": 0, "LOST": 3, "SIGINT": 130, "SIGTERM": 143}  # by Stop name
IMAGES_VIDEO_FPS = 2.0  # --video-out frame rate for image sources, which have none
LIVE_STATS_EVERY_S = 5.0

EPILOG = (
    "Examples:\n\n  srg-deploy infer ckpt/ --source photo.jpg --boxes boxes.json --json out.jsonl\n\n"
    "  srg-deploy infer model.onnx --source images/ --boxes boxes.json\n\n"
    "  srg-deploy infer model.onnx --backend openvino --precision bf16 --source images/ --boxes boxes.json\n\n"
    "  srg-deploy infer sgdet.onnx --source video.mp4 --json out.jsonl --video-out annotated.mp4 --graph-out graphs/\n\n"
    "  srg-deploy infer model.engine --source 0 --json live.jsonl --reconnect 10\n\n"
    "  srg-deploy infer model.onnx --source rtsp://cam/stream --boxes boxes.json --every 5\n\n"
    "  srg-deploy infer model.engine --source video.mp4 --json out.jsonl --check-every 30 --reference ckpt/\n\n"
    "Exit codes: 0 the source ended or --max-frames was reached; 1 an error (this run's outputs are removed); "
    "3 a live source stopped delivering and did not come back after --reconnect attempts; 130 / 143 stopped by "
    "SIGINT (Ctrl-C) / SIGTERM. With 0, 3, 130 and 143 every output holds exactly the frames processed."
)


def infer(
    model: ModelPath,
    source: Annotated[
        str,
        typer.Option(
            help="Camera index (0), RTSP/HTTP URL, video file, image, directory of images, glob, or synthetic:WxH."
        ),
    ],
    boxes: Annotated[
        Optional[Path],
        typer.Option(
            help="boxes.json: a list of \\[x1,y1,x2,y2] for every frame, {file name: list}, or a list per video frame."
        ),
    ] = None,
    json_out: Annotated[
        Optional[Path], typer.Option("--json", help="Write one JSON line per processed frame here.")
    ] = None,
    video_out: Annotated[
        Optional[Path],
        typer.Option("--video-out", help="Write the frames with boxes and top relations drawn (.mp4 or .avi)."),
    ] = None,
    graph_out: Annotated[
        Optional[Path], typer.Option("--graph-out", help="Folder for PNG drawings of the scene graph.")
    ] = None,
    graph_every: Annotated[int, typer.Option(min=1, help="Draw the graph of every Nth processed frame.")] = 1,
    backend: Backend = None,
    precision: Precision = None,
    device: Device = None,
    cache_dir: CacheDir = None,
    max_pairs: MaxPairs = None,
    top_k: TopK = TOP_K,
    realtime: Annotated[
        Optional[bool],
        typer.Option(
            "--realtime/--no-realtime",
            help="Process only the newest frame, dropping older ones (default: on for cameras and URLs).",
        ),
    ] = None,
    every: Annotated[int, typer.Option(min=1, help="Process every Nth frame of the source.")] = 1,
    max_frames: Annotated[Optional[int], typer.Option(min=1, help="Stop after N processed frames.")] = None,
    reconnect: Annotated[
        int, typer.Option(min=0, help="Live sources: reopen attempts (with back-off) when frames stop coming.")
    ] = 5,
    show: Annotated[
        bool, typer.Option("--show", help="Show annotated frames in a window (needs a GUI OpenCV and a display).")
    ] = False,
    check_every: Annotated[
        Optional[int],
        typer.Option(min=1, help="Shadow verification: re-run every Nth frame through --reference; drift in the JSON."),
    ] = None,
    reference: Annotated[Optional[Path], typer.Option(help="Eager checkpoint folder for --check-every.")] = None,
) -> None:
    """Scene graphs from a camera, a stream, a video or images: JSONL, annotated video, graph PNGs."""
    code = run_infer(
        model,
        source=source,
        boxes=boxes,
        json_out=json_out,
        video_out=video_out,
        graph_out=graph_out,
        graph_every=graph_every,
        backend=backend,
        precision=precision,
        device=device,
        cache_dir=cache_dir,
        max_pairs=max_pairs,
        top_k=top_k,
        realtime=realtime,
        every=every,
        max_frames=max_frames,
        reconnect=reconnect,
        show=show,
        check_every=check_every,
        reference=reference,
    )
    if code:
        raise typer.Exit(code)


def run_infer(
    model: Path,
    *,
    source: str,
    boxes: Path | None,
    json_out: Path | None,
    video_out: Path | None,
    graph_out: Path | None,
    graph_every: int,
    backend: str | None,
    max_pairs: int | None,
    top_k: int,
    realtime: bool | None,
    every: int,
    max_frames: int | None,
    reconnect: int,
    show: bool,
    check_every: int | None,
    reference: Path | None,
    precision: str | None = None,
    device: str | None = None,
    cache_dir: Path | None = None,
) -> int:
    """Run the pipeline; returns the exit code. `realtime=None` means: on for cameras and streams."""
    from srg_deploy.inputs import BoxesFile
    from srg_deploy.runtime.loader import existing_model, open_backend
    from srg_deploy.runtime.pipeline import Options, Pipeline, Stop
    from srg_deploy.runtime.predictor import Predictor
    from srg_deploy.runtime.sinks import GraphSink, JsonlSink, VideoSink, WindowSink, gui_unavailable
    from srg_deploy.runtime.sources import open_source
    from srg_deploy.runtime.verify import open_shadow_checker

    existing_model(model)
    if (check_every is None) != (reference is None):
        raise SRGError("--check-every and --reference go together: the reference is what every Nth frame is re-run on")
    if show and (problem := gui_unavailable()):
        raise SRGError(problem)
    boxes_file = BoxesFile(boxes) if boxes else None
    src = open_source(source, reconnect=reconnect, notify=_notify)
    sinks: list[Sink] = []
    pipeline: Pipeline | None = None  # once it exists, it closes the source and the sinks
    try:
        if boxes_file:
            for name in src.names:
                boxes_file.for_frame(name, 0)  # fail before any work if a source would have no boxes
        if json_out:
            sinks.append(JsonlSink(json_out))
        if video_out:
            sinks.append(VideoSink(video_out, src.fps / every if src.fps else IMAGES_VIDEO_FPS))
        if graph_out:
            sinks.append(GraphSink(graph_out, every=graph_every))
        if show:
            sinks.append(WindowSink(lambda: pipeline.request_stop(Stop.QUIT) if pipeline else None))
        options = Options(realtime=src.live if realtime is None else realtime, every=every, max_frames=max_frames)
        mode = "boxes" if boxes_file else "sgdet"
        opened = open_backend(
            model, backend, mode=mode, max_pairs=max_pairs, precision=precision, device=device, cache_dir=cache_dir
        )
        with opened as runner:
            console.print(f"backend: {runner.describe()}", markup=False)
            shadow = open_shadow_checker(runner, reference, check_every, max_pairs) if reference else None
            with _progress_display(src, options) as on_progress:
                pipeline = Pipeline(
                    src,
                    Predictor(runner, max_pairs=max_pairs, top_k=top_k),
                    sinks or [ConsoleSink()],
                    boxes_for=lambda frame: boxes_file.for_frame(frame.name, frame.index) if boxes_file else None,
                    options=options,
                    on_progress=on_progress,
                    notify=_notify,
                    shadow=shadow,
                )
                stats = pipeline.run()
    except BaseException:
        if pipeline is None:
            for sink in sinks:
                sink.close(ok=False)
            src.close()
        raise
    _print_summary(stats, sinks)
    if shadow:
        console.print(shadow.finish(), markup=False)  # raises when checked frames drifted (records stay written)
    code = EXIT_CODES[pipeline.reason.name]
    if code:
        console.print(f"exit code {code}: {pipeline.reason.value}", markup=False)
    return code


def _notify(line: str) -> None:
    console.print(line, markup=False, style="yellow" if line.startswith("warning") else None)


def _expected_frames(src: Source, options: Options) -> int | None:
    """How many frames a file run will process, for the progress bar; None if unknown or endless."""
    length = None if options.realtime or src.length is None else math.ceil(src.length / options.every)
    if options.max_frames is not None:
        return options.max_frames if length is None else min(length, options.max_frames)
    return length


class _ProgressBar:
    """Files: a Rich bar with processed / expected frames and end-to-end fps."""

    def __init__(self, total: int | None, description: str) -> None:
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[fps]:.2f} fps"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task(description, total=total, fps=0.0)

    def __enter__(self) -> _ProgressBar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, stats: RunStats) -> None:
        self.progress.update(self.task, completed=stats.processed, fps=stats.fps)


class _LiveStats:
    """Live sources: one stats line every LIVE_STATS_EVERY_S seconds (a bar has nothing to fill)."""

    def __init__(self) -> None:
        self.last_time, self.last_processed = time.monotonic(), 0

    def __enter__(self) -> _LiveStats:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def __call__(self, stats: RunStats) -> None:
        now = time.monotonic()
        if now - self.last_time < LIVE_STATS_EVERY_S:
            return
        fps = (stats.processed - self.last_processed) / (now - self.last_time)
        self.last_time, self.last_processed = now, stats.processed
        model = stats.stages["model"].percentile(50)
        console.print(
            f"live {stats.elapsed_s:.0f} s: read {stats.read}, processed {stats.processed} ({fps:.2f} fps now), "
            f"dropped {stats.dropped}" + (f", model p50 {model:.0f} ms" if model is not None else ""),
            markup=False,
        )


def _progress_display(src: Source, options: Options) -> _ProgressBar | _LiveStats:
    if src.live:
        return _LiveStats()
    return _ProgressBar(_expected_frames(src, options), src.describe())


def _print_summary(stats: RunStats, sinks: list[Sink]) -> None:
    for line in stats.summary_lines():
        console.print(line, markup=False)
    console.print(f"stopped: {stats.stop_reason}", markup=False)
    for sink in sinks:
        console.print(f"wrote {sink.describe()}", markup=False)


class ConsoleSink:
    """With no output named, each frame's objects and best relations are printed instead."""

    def write(self, record: dict, image: object = None) -> None:
        print_record(record)

    def close(self, ok: bool = True) -> None:
        """Nothing to finalise."""

    def describe(self) -> str:
        return "console"


def print_record(record: dict) -> None:
    objects = record["objects"]
    console.print(
        f"[bold]{escape(record['source'])}[/] frame {record['frame']} "
        f"{record['image_size'][0]}x{record['image_size'][1]}: {len(objects)} objects"
    )
    for rel in record["relations"][:5]:
        s, o = objects[rel["subject"]]["label"], objects[rel["object"]]["label"]
        console.print(
            f"  {s}#{rel['subject']} --{rel['predicate']}--> {o}#{rel['object']}  {rel['score']:.4f}", markup=False
        )
