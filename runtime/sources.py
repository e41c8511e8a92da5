"""Where frames come from: `--source` -> a `Source` that yields numbered, time-stamped BGR frames.

Files (an image, a directory of images, a glob, a video file, the synthetic scene) are read completely and in
order. Cameras and stream URLs are *live*: when they stop delivering they are reopened with back-off up to
`reconnect` times, and then end with `lost` set, so the caller can finish its outputs and say what happened.
A source that cannot be opened at all fails at once (no reconnecting at start-up): a wrong URL should not look
like a slow one.

OpenCV's FFmpeg backend decodes files and streams. Its console chatter is silenced (set OPENCV_LOG_LEVEL or
OPENCV_FFMPEG_LOGLEVEL to see it) because every failure is reported here as one `SRGError` line.
"""

from __future__ import annotations

import glob
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from srg_deploy.errors import SRGError
from srg_deploy.inputs import parse_size, read_image
from srg_deploy.synthetic import SyntheticScene

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://", "srt://")
OPEN_TIMEOUT_MS = 10_000  # a stream that has not answered by then is reported as unreachable
READ_TIMEOUT_MS = 10_000  # a stream that sends nothing for this long has stopped delivering
FIRST_RECONNECT_DELAY_S, MAX_RECONNECT_DELAY_S = 0.5, 8.0
SYNTHETIC_FPS = 30.0

if "OPENCV_LOG_LEVEL" not in os.environ:
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_SILENT)
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")  # AV_LOG_QUIET; read when FFmpeg is first used


@dataclass(frozen=True)
class Frame:
    index: int  # position in the source, counting frames skipped by --every and dropped by --realtime
    image: np.ndarray  # BGR uint8 [H, W, 3]
    timestamp_ms: float  # video: presentation time; live: since capture started; images: 0
    name: str  # what a boxes.json dict is keyed by: the file name (image or video), else the source itself
    source: str  # the record's "source"
    capture_ms: float  # time spent reading and decoding this frame


Notify = Callable[[str], None]


class Source(ABC):
    """Open with `open()` (fails with `SRGError`), iterate `frames()` on one thread, then `close()`."""

    kind: ClassVar[str]
    live: ClassVar[bool] = False

    def __init__(self, spec: str) -> None:
        self.spec = spec
        self.read = 0  # frames taken from the source, skipped ones included
        self.lost = False  # a live source gave up after its reconnect attempts

    @property
    def fps(self) -> float | None:
        """Nominal frame rate, when the source has one."""
        return None

    @property
    def length(self) -> int | None:
        """Frames the source declares; None for endless or unknown."""
        return None

    @property
    def names(self) -> list[str]:
        """Every `Frame.name` this source can produce, to check a boxes file before any work."""
        return [self.spec]

    def open(self) -> None:
        """Make sure frames can be read; called before the model is loaded so bad input fails fast."""

    @abstractmethod
    def frames(self, every: int, stop: threading.Event) -> Iterator[Frame]:
        """Frames whose index is a multiple of `every`, until the source ends or `stop` is set."""

    def close(self) -> None:
        """Release devices and files; safe to call twice."""

    def describe(self) -> str:
        return f"{self.kind} {self.spec}"


class ImageSource(Source):
    """An image, a directory of images (sorted by name) or a glob; images may differ in size."""

    kind = "images"

    def __init__(self, spec: str, paths: list[Path]) -> None:
        super().__init__(spec)
        self.paths = paths

    @property
    def length(self) -> int:
        return len(self.paths)

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.paths]

    def frames(self, every: int, stop: threading.Event) -> Iterator[Frame]:
        for index, path in enumerate(self.paths):
            if stop.is_set():
                return
            self.read += 1
            if index % every:
                continue
            t0 = time.perf_counter()
            image = read_image(path)
            yield Frame(index, image, 0.0, path.name, str(path), (time.perf_counter() - t0) * 1e3)

    def describe(self) -> str:
        return f"{len(self.paths)} image{'s' if len(self.paths) != 1 else ''} from {self.spec}"


class CaptureSource(Source):
    """Anything `cv2.VideoCapture` reads. `grab()` every frame, `retrieve()` (colour conversion) only kept ones."""

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        self.capture: cv2.VideoCapture | None = None

    @abstractmethod
    def _open_capture(self) -> cv2.VideoCapture | None:
        """A new, opened capture, or None."""

    def _retrieve(self) -> np.ndarray | None:
        assert self.capture is not None
        ok, image = self.capture.retrieve()
        return image if ok and image is not None and image.size else None

    def close(self) -> None:
        if self.capture is not None:
            self.capture.release()
            self.capture = None

    @property
    def fps(self) -> float | None:
        fps = self.capture.get(cv2.CAP_PROP_FPS) if self.capture is not None else 0.0
        return fps if 0 < fps < 1000 else None


class VideoSource(CaptureSource):
    """A video file: every frame in order, timestamps from the container. Ending well short of the frame count
    the container declares is an error: the file is truncated or corrupt."""

    kind = "video"

    def __init__(self, spec: str, path: Path) -> None:
        super().__init__(spec)
        self.path = path
        self._fps: float | None = None
        self._length: int | None = None

    @property
    def fps(self) -> float | None:
        return self._fps

    @property
    def length(self) -> int | None:
        return self._length

    @property
    def names(self) -> list[str]:
        return [self.path.name]

    def _open_capture(self) -> cv2.VideoCapture | None:
        capture = cv2.VideoCapture(str(self.path), cv2.CAP_FFMPEG)
        return capture if capture.isOpened() else None

    def open(self) -> None:
        self.capture = self._open_capture()
        if self.capture is None:
            raise SRGError(f"cannot read video {self.path}: not a video file FFmpeg can decode, or corrupt")
        self._fps = super().fps
        count = self.capture.get(cv2.CAP_PROP_FRAME_COUNT)
        self._length = int(count) if 0 < count < 2**31 else None

    def frames(self, every: int, stop: threading.Event) -> Iterator[Frame]:
        assert self.capture is not None, "open() first"
        try:
            while True:
                if stop.is_set():
                    return
                t0 = time.perf_counter()
                if not self.capture.grab():
                    break
                index = self.read
                self.read += 1
                if index % every:
                    continue
                image = self._retrieve()
                if image is None:
                    raise SRGError(f"cannot decode frame {index} of {self.path}: the file is corrupt")
                position = self.capture.get(cv2.CAP_PROP_POS_MSEC)
                timestamp = position if position > 0 or index == 0 or not self._fps else index * 1e3 / self._fps
                yield Frame(index, image, timestamp, self.path.name, self.spec, (time.perf_counter() - t0) * 1e3)
            if self.read == 0:
                raise SRGError(f"video {self.path} holds no frame FFmpeg can decode: empty or corrupt")
            if self._length and self.read < self._length - max(1, self._length // 100):
                raise SRGError(
                    f"video {self.path} ended after {self.read} of the {self._length} frames its container declares:"
                    " the file is truncated or corrupt"
                )
        finally:
            self.close()


class LiveSource(CaptureSource):
    """A camera or a stream: endless, time-stamped on arrival, reconnected with back-off when it stops."""

    live = True

    def __init__(self, spec: str, reconnect: int, notify: Notify) -> None:
        super().__init__(spec)
        self.reconnect, self.notify = reconnect, notify
        self._fps: float | None = None

    @property
    def fps(self) -> float | None:
        return self._fps

    @abstractmethod
    def _unavailable(self) -> str:
        """The one-line error when the source cannot be opened at start-up."""

    def open(self) -> None:
        self.capture = self._open_capture()
        if self.capture is None:
            raise SRGError(self._unavailable())
        self._fps = super().fps

    def frames(self, every: int, stop: threading.Event) -> Iterator[Frame]:
        assert self.capture is not None, "open() first"
        started = time.monotonic()
        attempts = 0  # reconnect attempts since the last frame arrived
        try:
            while not stop.is_set():
                if self.capture is None:
                    if attempts >= self.reconnect:
                        self.lost = True
                        self.notify(
                            f"warning: {self.describe()} stopped delivering frames; gave up after "
                            f"{attempts} reconnect attempt{'s' if attempts != 1 else ''}"
                        )
                        return
                    attempts += 1
                    delay = min(FIRST_RECONNECT_DELAY_S * 2 ** (attempts - 1), MAX_RECONNECT_DELAY_S)
                    self.notify(
                        f"warning: {self.describe()} stopped delivering frames; reconnect attempt "
                        f"{attempts}/{self.reconnect} in {delay:.1f} s"
                    )
                    if stop.wait(delay):
                        return
                    self.capture = self._open_capture()
                    if self.capture is not None:
                        self.notify(f"reconnected to {self.describe()}")
                    continue
                t0 = time.perf_counter()
                if not self.capture.grab():
                    self.close()
                    continue
                attempts = 0
                index = self.read
                self.read += 1
                if index % every:
                    continue
                image = self._retrieve()
                if image is None:  # a frame the decoder could not finish: a glitch, not the end of the stream
                    continue
                timestamp = (time.monotonic() - started) * 1e3
                yield Frame(index, image, timestamp, self.spec, self.spec, (time.perf_counter() - t0) * 1e3)
        finally:
            self.close()


class CameraSource(LiveSource):
    kind = "camera"

    def _open_capture(self) -> cv2.VideoCapture | None:
        capture = cv2.VideoCapture(int(self.spec))
        return capture if capture.isOpened() else None

    def _unavailable(self) -> str:
        return f"camera {self.spec} is not available: no such device, unplugged, or in use by another program" + (
            " (no /dev/video* device exists)" if os.name == "posix" and not glob.glob("/dev/video*") else ""
        )


class StreamSource(LiveSource):
    kind = "stream"

    def _open_capture(self) -> cv2.VideoCapture | None:
        capture = cv2.VideoCapture(
            self.spec,
            cv2.CAP_FFMPEG,
            [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, OPEN_TIMEOUT_MS, cv2.CAP_PROP_READ_TIMEOUT_MSEC, READ_TIMEOUT_MS],
        )
        return capture if capture.isOpened() else None

    def _unavailable(self) -> str:
        return f"cannot open stream {self.spec}: unreachable, refused, or not a video stream FFmpeg can read"


class SyntheticSource(Source):
    """`synthetic:WxH`: the moving scene of `SyntheticScene`, endless (bound it with --max-frames), rendered as
    fast as it is consumed, time-stamped at a nominal 30 fps. For soak tests and benchmarks without a camera."""

    kind = "synthetic"

    def __init__(self, spec: str) -> None:
        super().__init__(spec)
        width, height = parse_size(spec.split(":", 1)[1], f"synthetic source {spec!r}", "synthetic:320x240 (WxH)")
        self.scene = SyntheticScene(width, height)

    @property
    def fps(self) -> float:
        return SYNTHETIC_FPS

    def frames(self, every: int, stop: threading.Event) -> Iterator[Frame]:
        while not stop.is_set():
            index = self.read
            self.read += 1
            if index % every:
                continue
            t0 = time.perf_counter()
            image = self.scene.render(index)
            yield Frame(
                index, image, index * 1e3 / SYNTHETIC_FPS, self.spec, self.spec, (time.perf_counter() - t0) * 1e3
            )


def open_source(spec: str, reconnect: int = 5, notify: Notify = print) -> Source:
    """`--source` -> an opened `Source`: a camera index, a stream URL, `synthetic:WxH`, an image, a directory of
    images, a glob of images, or a video file. `reconnect` and `notify` serve live sources only."""
    source = _source_for(spec, reconnect, notify)
    source.open()
    return source


def _source_for(spec: str, reconnect: int, notify: Notify) -> Source:
    if spec.isdigit():
        return CameraSource(spec, reconnect, notify)
    if spec.lower().startswith(STREAM_SCHEMES):
        return StreamSource(spec, reconnect, notify)
    if spec.startswith("synthetic:"):
        return SyntheticSource(spec)
    path = Path(spec)
    if path.is_dir():
        paths = files_in(path, IMAGE_SUFFIXES)
        if not paths:
            raise SRGError(f"directory {path} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        return ImageSource(spec, paths)
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageSource(spec, [path])
        return VideoSource(spec, path)
    if glob.has_magic(spec):
        paths = files_matching(spec, IMAGE_SUFFIXES)
        if not paths:
            raise SRGError(f"no images match {spec!r}")
        return ImageSource(spec, paths)
    raise SRGError(f"source {spec} does not exist (expected a file, a directory, a glob, a camera index or a URL)")


def files_in(directory: Path, suffixes: set[str]) -> list[Path]:
    """The entries of `directory` whose suffix is in `suffixes` (any case), sorted by name: the order, and so the
    frame numbers, of a directory source. `srg-deploy batch` lists its inputs with this too."""
    return sorted(p for p in Path(directory).iterdir() if p.suffix.lower() in suffixes)


def files_matching(pattern: str, suffixes: set[str]) -> list[Path]:
    """The paths a glob matches whose suffix is in `suffixes` (any case), sorted: the order of a glob source."""
    return sorted(Path(p) for p in glob.glob(pattern) if Path(p).suffix.lower() in suffixes)
