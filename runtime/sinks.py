"""Where records go. Every file sink writes beside its target and renames on success, so a failed run leaves no
half-written output; an interrupted run (Ctrl-C, SIGTERM) still finalises what it completed.

All sinks share one shape, `write(record, image)` then `close(ok)`, and are driven by one writer thread, so a
slow disk or encoder never stalls the model (up to the pipeline's bounded queue).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
from array import array
from collections.abc import Callable
from pathlib import Path
from typing import IO, Protocol

import cv2
import numpy as np

from srg_deploy.atomic import temp_beside, write_bytes
from srg_deploy.errors import SRGError
from srg_deploy.runtime.draw import annotate, draw_graph

VIDEO_FOURCC = {".mp4": "mp4v", ".avi": "MJPG"}


class Sink(Protocol):
    def write(self, record: dict, image: np.ndarray | None = None) -> None:
        """Take one processed frame: its record and the original BGR image."""

    def close(self, ok: bool = True) -> None:
        """Finalise (ok) or remove every trace of this run's output."""

    def describe(self) -> str:
        """What was written, for the end-of-run summary."""


def jsonl_line(record: dict) -> str:
    """A record as one JSONL line: the one spelling `infer --json` and `batch` shards share."""
    return json.dumps(record, separators=(",", ":")) + "\n"


class JsonlSink:
    """One JSON object per line, flushed per line, renamed into place by `close(ok=True)`."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        fd, self.tmp = temp_beside(self.path)
        self.file: IO[str] | None = os.fdopen(fd, "w")
        self.lines = 0

    def write(self, record: dict, image: np.ndarray | None = None) -> None:
        """`image` is unused: the record holds everything this sink writes."""
        assert self.file is not None
        self.file.write(jsonl_line(record))
        self.file.flush()
        self.lines += 1

    def close(self, ok: bool = True) -> None:
        """Keep the file (ok) or remove every trace of it."""
        if self.file is None:
            return
        self.file.close()
        self.file = None
        if ok:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def describe(self) -> str:
        return f"{self.path} ({self.lines} lines)"


class VideoSink:
    """Annotated frames as a video: mp4v in .mp4, MJPG in .avi, one frame per processed frame at `fps`.

    The size is the first frame's, rounded up to even (encoders want even sizes; padding keeps every pixel);
    frames of another size (a directory of mixed images) are scaled to fit and padded. With no frame processed
    there is nothing to encode and no file is written."""

    def __init__(self, path: Path, fps: float, top_relations: int = 5) -> None:
        self.path, self.fps, self.top_relations = Path(path), fps, top_relations
        suffix = self.path.suffix.lower()
        if suffix not in VIDEO_FOURCC:
            raise SRGError(f"--video-out {path}: unsupported container {suffix or '(none)'}; use .mp4 or .avi")
        self.fourcc = VIDEO_FOURCC[suffix]
        fd, self.tmp = temp_beside(self.path, suffix)  # OpenCV picks the container from the suffix
        os.close(fd)
        self.writer: cv2.VideoWriter | None = None
        self.size: tuple[int, int] = (0, 0)
        self.frames = 0
        self.closed = False

    def write(self, record: dict, image: np.ndarray | None = None) -> None:
        assert image is not None and not self.closed
        canvas = annotate(image, record, self.top_relations)
        if self.writer is None:
            height, width = canvas.shape[:2]
            self.size = (width + width % 2, height + height % 2)
            self.writer = cv2.VideoWriter(str(self.tmp), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, self.size)
            if not self.writer.isOpened():
                raise SRGError(f"cannot write {self.path}: OpenCV could not open a {self.fourcc} video writer there")
        self.writer.write(fit(canvas, self.size))
        self.frames += 1

    def close(self, ok: bool = True) -> None:
        if self.closed:
            return
        self.closed = True
        if self.writer is not None:
            self.writer.release()
        if ok and self.frames:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)

    def describe(self) -> str:
        if not self.frames:
            return f"{self.path} (no frames processed; not written)"
        return f"{self.path} ({self.frames} frames, {self.size[0]}x{self.size[1]}, {self.fps:g} fps)"


def fit(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """`image` padded with black at the right and bottom to `size` = (W, H); scaled first (aspect kept) unless it
    is already within a pixel of that size."""
    width, height = size
    h, w = image.shape[:2]
    if not (width - 1 <= w <= width and height - 1 <= h <= height):
        scale = min(width / w, height / h)
        w, h = min(width, max(1, round(w * scale))), min(height, max(1, round(h * scale)))
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return cv2.copyMakeBorder(image, 0, height - h, 0, width - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))


class GraphSink:
    """A PNG drawing of the scene graph for every `every`-th processed frame, `DIR/frame_<index>.png`.

    Each PNG appears whole (temp file + rename) as soon as it is drawn, so a live run can be watched; a failed
    run removes the PNGs it wrote (and the folder, if it made it)."""

    def __init__(self, directory: Path, every: int = 1, size: tuple[int, int] = (640, 480), top_relations: int = 10):
        self.directory, self.every, self.size, self.top_relations = Path(directory), every, size, top_relations
        if self.directory.exists() and not self.directory.is_dir():
            raise SRGError(f"--graph-out {directory} is a file; expected a folder")
        self.created = not self.directory.exists()
        self.directory.mkdir(parents=True, exist_ok=True)
        self.written = array("q")  # frame indices: 8 bytes per PNG, so weeks of camera time stay small
        self.seen = 0

    def write(self, record: dict, image: np.ndarray | None = None) -> None:
        self.seen += 1
        if (self.seen - 1) % self.every:
            return
        ok, png = cv2.imencode(".png", draw_graph(record, self.size, self.top_relations))
        if not ok:
            raise RuntimeError("OpenCV failed to encode a PNG")
        write_bytes(self.path(record["frame"]), png.tobytes())
        self.written.append(record["frame"])

    def path(self, frame: int) -> Path:
        return self.directory / f"frame_{frame:06d}.png"

    def close(self, ok: bool = True) -> None:
        if ok:
            return
        for frame in self.written:
            self.path(frame).unlink(missing_ok=True)
        del self.written[:]
        if self.created and self.directory.is_dir() and not any(self.directory.iterdir()):
            self.directory.rmdir()

    def describe(self) -> str:
        return f"{self.directory}/ ({len(self.written)} PNGs)"


class WindowSink:
    """`--show`: the annotated frame in an OpenCV window, drawn from the writer thread; q or Esc calls `on_quit`.
    Needs an OpenCV build with a GUI backend and a display: `gui_unavailable()` says why not."""

    title = "srg-deploy"

    def __init__(self, on_quit: Callable[[], None], top_relations: int = 5) -> None:
        self.on_quit, self.top_relations = on_quit, top_relations
        self.shown = 0

    def write(self, record: dict, image: np.ndarray | None = None) -> None:
        assert image is not None
        cv2.imshow(self.title, annotate(image, record, self.top_relations))
        self.shown += 1
        if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
            self.on_quit()

    def close(self, ok: bool = True) -> None:
        with contextlib.suppress(cv2.error):
            cv2.destroyWindow(self.title)

    def describe(self) -> str:
        return f"window ({self.shown} frames shown)"


def gui_unavailable() -> str | None:
    """Why `--show` cannot work here, or None."""
    build = cv2.getBuildInformation().splitlines()
    gui = next((line.split(":", 1)[1].strip() for line in build if line.strip().startswith("GUI:")), "NONE")
    if gui == "NONE":
        return (
            "--show needs OpenCV with a GUI backend, and this is a headless build (opencv-python-headless); "
            "replace it with opencv-python to get a window, or write --video-out instead"
        )
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return "--show needs a display, and neither DISPLAY nor WAYLAND_DISPLAY is set; write --video-out instead"
    return None
