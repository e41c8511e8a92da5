"""`srg-deploy infer`: a source (camera, stream, video, images) through a backend into scene-graph outputs.

Cheap checks come first (model path, source, boxes, output names), then the model is loaded and the pipeline
runs (`runtime/pipeline.py`) with a progress bar for files or a periodic stats line for live sources, and a
summary at the end. The return value is the process exit code (see EXIT_CODES).
"""

from __future__ import annotations

import math
import time
from pathlib import Path

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from srg_deploy.console import err as console
from srg_deploy.errors import SRGError
from srg_deploy.inputs import BoxesFile
from srg_deploy.runtime.loader import open_backend
from srg_deploy.runtime.pipeline import Options, Pipeline, Stop
from srg_deploy.runtime.predictor import Predictor
from srg_deploy.runtime.sinks import GraphSink, JsonlSink, Sink, VideoSink, WindowSink, gui_unavailable
from srg_deploy.runtime.sources import Source, open_source
from srg_deploy.runtime.stats import RunStats
from srg_deploy.runtime.verify import open_shadow_checker

# 0: the source ended or --max-frames was reached; 1: an error (outputs removed); 3: a live source was lost after
# its reconnect attempts (outputs complete and valid); 130 / 143: stopped by SIGINT / SIGTERM (outputs valid).
EXIT_CODES = {Stop.END: 0, Stop.MAX_FRAMES: 0, Stop.QUIT: 0, Stop.LOST: 3, Stop.SIGINT: 130, Stop.SIGTERM: 143}
IMAGES_VIDEO_FPS = 2.0  # --video-out frame rate for image sources, which have none
LIVE_STATS_EVERY_S = 5.0


def run_infer(
    model: Path,
    *,
    source: str,
    boxes: Path | None = None,
    json_out: Path | None = None,
    video_out: Path | None = None,
    graph_out: Path | None = None,
    graph_every: int = 1,
    backend: str | None = None,
    max_pairs: int | None = None,
    top_k: int = 20,
    realtime: bool | None = None,
    every: int = 1,
    max_frames: int | None = None,
    reconnect: int = 5,
    show: bool = False,
    check_every: int | None = None,
    reference: Path | None = None,
) -> int:
    """Run the pipeline; returns the exit code. `realtime=None` means: on for cameras and streams."""
    if not Path(model).exists():
        raise SRGError(f"model {model} does not exist")
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
        with open_backend(model, backend, mode="boxes" if boxes_file else "sgdet", max_pairs=max_pairs) as runner:
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
    code = EXIT_CODES[pipeline.reason]
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
