"""The deployment pipeline: capture -> preprocess -> backend -> scene graph -> sinks, on three threads.

    capture thread --FrameBuffer--> model (the calling thread) --bounded queue--> writer thread -> sinks

The model runs on the calling thread (signal handlers run there, between frames) and never waits on disk or
encoders unless the writer falls a whole queue behind. Memory is bounded by the two queues.

Files: every selected frame, in order; capture waits when the buffer is full. Realtime (live sources): the
buffer holds only the newest frame, a newer one replaces it, and the replaced frames are counted as dropped.

How a run ends, and what becomes of its outputs:
- the source ends, --max-frames is reached, a live source is lost after its reconnect attempts, or SIGINT /
  SIGTERM arrives: capture stops, the frame on the model finishes, every processed frame is written, and every
  output is finalised (renamed into place). Captured frames the model had not started are discarded (counted).
- anything raises (a corrupt input, a backend error, a full disk): the run stops and every output of this run is
  removed; the exception propagates.
"""

from __future__ import annotations

import contextlib
import queue
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np

from srg_deploy.runtime.predictor import Predictor
from srg_deploy.runtime.sinks import Sink
from srg_deploy.runtime.sources import Frame, Source
from srg_deploy.runtime.stats import RunStats
from srg_deploy.runtime.verify import ShadowChecker

POLL_S = 0.1  # how often waiting threads look at the stop flags
CAPTURE_JOIN_S = 2.0  # a capture thread stuck in a stalled stream read is left behind (it is a daemon)


class Stop(str, Enum):
    """Why a run ended without an error."""

    END = "end of source"
    MAX_FRAMES = "--max-frames reached"
    LOST = "live source lost"
    SIGINT = "SIGINT"
    SIGTERM = "SIGTERM"
    QUIT = "window closed"


@dataclass(frozen=True)
class Options:
    realtime: bool = False  # keep only the newest captured frame (drop the rest) instead of every frame
    every: int = 1  # process frames whose index is a multiple of this
    max_frames: int | None = None  # stop after this many processed frames
    buffer: int = 4  # frames captured ahead of the model (files; realtime keeps one)
    write_queue: int = 8  # processed frames waiting for the writer


class FrameBuffer:
    """Capture -> model hand-off. FIFO of `capacity` frames where capture waits for room, or, with `keep_latest`,
    one slot where a newer frame replaces an unprocessed one (counted in `dropped`)."""

    def __init__(self, capacity: int, keep_latest: bool) -> None:
        self.capacity = 1 if keep_latest else capacity
        self.keep_latest = keep_latest
        self.frames: deque[Frame] = deque()
        self.offered = self.dropped = self.refused = 0
        self.finished = False
        self.error: BaseException | None = None
        self._cond = threading.Condition()

    def put(self, frame: Frame, stop: threading.Event) -> None:
        with self._cond:
            self.offered += 1
            while not self.keep_latest and len(self.frames) >= self.capacity and not stop.is_set():
                self._cond.wait(POLL_S)
            if stop.is_set():
                self.refused += 1
                return
            if self.keep_latest and self.frames:
                self.frames.clear()
                self.dropped += 1
            self.frames.append(frame)
            self._cond.notify_all()

    def finish(self, error: BaseException | None = None) -> None:
        """No more frames will come; `error` is raised to the model thread by its next `get`."""
        with self._cond:
            self.finished, self.error = True, error
            self._cond.notify_all()

    def get(self, timeout: float) -> Frame | None:
        """The next frame, or None if none arrived within `timeout` (see `exhausted`)."""
        with self._cond:
            if not self.frames and not self.finished and self.error is None:
                self._cond.wait(timeout)
            if self.error is not None:
                raise self.error
            if not self.frames:
                return None
            frame = self.frames.popleft()
            self._cond.notify_all()
            return frame

    @property
    def exhausted(self) -> bool:
        with self._cond:
            return self.finished and not self.frames

    def clear(self) -> int:
        """Forget frames never processed; returns how many."""
        with self._cond:
            count = len(self.frames)
            self.frames.clear()
            self._cond.notify_all()
            return count


@dataclass
class _Processed:
    record: dict
    image: np.ndarray


_END = object()  # tells the writer that nothing more will come


class Pipeline:
    """One run over one source. `boxes_for(frame)` gives the boxes for boxes-mode models (None for sgdet);
    `on_progress(stats)` is called on the model thread after every frame and about every POLL_S when idle;
    `notify(line)` reports what the user should know (reconnects, signals); `shadow` re-runs every Nth processed
    frame through the eager reference and puts the drift in that frame's record."""

    def __init__(
        self,
        source: Source,
        predictor: Predictor,
        sinks: list[Sink],
        *,
        boxes_for: Callable[[Frame], np.ndarray | None],
        options: Options,
        on_progress: Callable[[RunStats], None] | None = None,
        notify: Callable[[str], None] = print,
        shadow: ShadowChecker | None = None,
    ) -> None:
        self.source, self.predictor, self.sinks = source, predictor, sinks
        self.shadow = shadow
        self.boxes_for, self.options = boxes_for, options
        self.on_progress, self.notify = on_progress, notify
        self.stats = RunStats(source=source.describe(), backend=predictor.backend.describe())
        self.buffer = FrameBuffer(options.buffer, keep_latest=options.realtime)
        self.writes: queue.Queue[object] = queue.Queue(maxsize=options.write_queue)
        self._stop = threading.Event()  # capture must stop; the model loop finishes its frame and leaves
        self._abort = threading.Event()  # the run failed: the writer drops what is queued
        self._reason: Stop | None = None
        self._writer_error: BaseException | None = None

    def request_stop(self, reason: Stop) -> None:
        """Stop capturing and finish up; safe from any thread and from signal handlers."""
        if self._reason is None:
            self._reason = reason
        self._stop.set()

    @property
    def reason(self) -> Stop:
        """Why the run ended (valid after `run` returned)."""
        return self._reason or Stop.END

    def run(self) -> RunStats:
        """Process until the source ends or a stop; outputs are finalised, or removed if anything raises."""
        capture = threading.Thread(target=self._capture, name="srg-capture", daemon=True)
        writer = threading.Thread(target=self._write, name="srg-writer", daemon=True)
        ok = False
        with self._signals_stop_the_run():
            try:
                self.stats.started = time.perf_counter()
                capture.start()
                writer.start()
                self._infer()
                self._put_for_writer(_END)
                writer.join()
                self._raise_writer_error()
                ok = True
            finally:
                self._stop.set()
                if not ok:
                    self._abort.set()
                    if writer.is_alive():
                        writer.join()
                capture.join(CAPTURE_JOIN_S)
                if not capture.is_alive():
                    self.source.close()
                self._count()
                self._close_sinks(ok)
                self.stats.finished = time.perf_counter()
        return self.stats

    def _capture(self) -> None:
        limit = None if self.options.realtime else self.options.max_frames
        kept = 0
        try:
            with contextlib.closing(self.source.frames(self.options.every, self._stop)) as frames:
                for frame in frames:
                    self.buffer.put(frame, self._stop)
                    kept += 1
                    if limit is not None and kept >= limit:
                        break
        except Exception as e:  # handed to the model thread, which raises it
            self.buffer.finish(e)
        else:
            self.buffer.finish()

    def _infer(self) -> None:
        stats, limit = self.stats, self.options.max_frames
        while not self._stop.is_set():
            self._raise_writer_error()
            frame = self.buffer.get(POLL_S)
            if frame is None:
                if self.buffer.exhausted:
                    self.request_stop(Stop.LOST if self.source.lost else Stop.END)
                elif self.on_progress:
                    self._refresh_counts()
                    self.on_progress(stats)
                continue
            boxes = self.boxes_for(frame)
            record, outputs = self.predictor.predict(
                frame.image, boxes, frame=frame.index, source=frame.source, timestamp_ms=frame.timestamp_ms
            )
            if self.shadow and self.shadow.due(stats.processed):  # preprocessing is deterministic: same inputs
                prepared = self.predictor.prepare(frame.image, boxes)
                record["drift"] = self.shadow.maybe_check(stats.processed, prepared, outputs)
            stats.stages["capture"].add(frame.capture_ms)
            for stage, ms in record["latency_ms"].items():
                stats.stages[stage].add(ms)
            stats.processed += 1
            self._put_for_writer(_Processed(record, frame.image))
            if self.on_progress:
                self._refresh_counts()
                self.on_progress(stats)
            if limit is not None and stats.processed >= limit:
                self.request_stop(Stop.MAX_FRAMES)

    def _put_for_writer(self, item: object) -> None:
        while True:
            try:
                self.writes.put(item, timeout=POLL_S)
                return
            except queue.Full:
                self._raise_writer_error()

    def _write(self) -> None:
        try:
            while not self._abort.is_set():
                try:
                    item = self.writes.get(timeout=POLL_S)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                assert isinstance(item, _Processed)
                t0 = time.perf_counter()
                for sink in self.sinks:
                    sink.write(item.record, item.image)
                self.stats.stages["write"].add((time.perf_counter() - t0) * 1e3)
        except Exception as e:  # raised again on the model thread
            self._writer_error = e

    def _raise_writer_error(self) -> None:
        if self._writer_error is not None:
            raise self._writer_error

    def _refresh_counts(self) -> None:
        """The counters other threads keep, copied for a progress display."""
        self.stats.read, self.stats.dropped = self.source.read, self.buffer.dropped

    def _count(self) -> None:
        """Final counts, once capture has stopped."""
        stats, buffer = self.stats, self.buffer
        self._refresh_counts()
        stats.discarded = buffer.refused + buffer.clear()
        stats.skipped = stats.read - buffer.offered
        stats.stop_reason = (self._reason or Stop.END).value

    def _close_sinks(self, ok: bool) -> None:
        """Close every sink even if one fails; the first failure is raised after the others are closed."""
        error: BaseException | None = None
        for sink in self.sinks:
            try:
                sink.close(ok=ok)
            except Exception as e:
                error = error or e
        if error is not None and ok:
            raise error

    @contextlib.contextmanager
    def _signals_stop_the_run(self):
        """While running on the main thread, SIGINT and SIGTERM stop the run cleanly instead of killing it."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        if self._stop.is_set():
            self.notify(f"{name}: already stopping; finishing the frames in flight")
            return
        self.request_stop(Stop[name])
        self.notify(f"{name}: stopping capture, finishing the frames in flight, closing outputs")
