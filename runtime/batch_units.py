"""Units of work for `srg-deploy batch` and the worker-side code that turns a unit into records, without Ray.

A unit is a chunk of images (`--batch-size` of them, in listing order) or one whole video (its frames in order, on
one worker). A unit is also the unit of completion: its records become one shard of the output, written whole or
not at all (`batch_store.py`). The Ray layer (`batch_ray.py`) only moves units to workers and chunks back.

Each input goes through `infer`'s own code: `read_image` / `VideoSource` for frames, `Predictor.predict` for the
record, `jsonl_line` (what `JsonlSink` writes) for the line. An input that fails (corrupt, missing, unreadable)
becomes a failure of that input and the unit carries on; a video that fails part-way loses the records it had
produced, as `infer` would remove its output.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from srg_deploy.defaults import TOP_K
from srg_deploy.errors import SRGError
from srg_deploy.inputs import BoxesFile, read_image
from srg_deploy.runtime.batch_inputs import Input
from srg_deploy.runtime.loader import open_backend
from srg_deploy.runtime.predictor import Predictor
from srg_deploy.runtime.sinks import jsonl_line
from srg_deploy.runtime.sources import VideoSource

CHUNK_RECORDS = 64  # records per message from a worker: a long video streams back in pieces, never whole


@dataclass(frozen=True)
class Unit:
    id: str  # derived from its inputs, so a unit redone after a crash overwrites its own shard
    inputs: tuple[Input, ...]

    def to_row(self) -> dict[str, str]:
        """A Ray Data row: plain strings, so the dataset's schema stays trivial."""
        return {"unit": self.id, "inputs": json.dumps([vars(i) for i in self.inputs])}

    @classmethod
    def from_row(cls, row: dict) -> Unit:
        return cls(str(row["unit"]), tuple(Input(**i) for i in json.loads(str(row["inputs"]))))


def plan_units(inputs: list[Input], batch_size: int, taken: set[str] | frozenset[str] = frozenset()) -> list[Unit]:
    """Images in chunks of `batch_size` (listing order), then one unit per video. Ids are derived from the inputs
    and never one in `taken` (the committed units: `--retry-failed` can plan the same inputs again)."""
    images = [i for i in inputs if i.kind == "image"]
    chunks = [tuple(images[k : k + batch_size]) for k in range(0, len(images), batch_size)]
    chunks += [(i,) for i in inputs if i.kind == "video"]
    units: list[Unit] = []
    used = set(taken)
    for chunk in chunks:
        base = uid = unit_id(chunk)
        n = 1
        while uid in used:
            uid, n = f"{base}-{n}", n + 1
        used.add(uid)
        units.append(Unit(uid, chunk))
    return units


def unit_id(inputs: tuple[Input, ...]) -> str:
    digest = hashlib.sha256("\n".join(i.key for i in inputs).encode()).hexdigest()
    return f"part-{digest[:20]}"


@dataclass
class Chunk:
    """A piece of a unit's output, as a worker sends it. `seq` counts from 0; the last chunk has `last` set and the
    unit's failures. `drop` (a video failed part-way) tells the writer to discard every record of the unit.
    `error` is set instead when the worker could not even load the model: the job stops with that message."""

    unit: str
    seq: int
    last: bool
    lines: list[str] = field(default_factory=list)
    failures: list[dict[str, str]] = field(default_factory=list)
    drop: bool = False
    error: str = ""
    worker: str = ""

    def to_row(self) -> dict[str, object]:
        return {
            "unit": self.unit,
            "seq": self.seq,
            "last": self.last,
            "lines": "".join(self.lines),
            "failures": json.dumps(self.failures),
            "drop": self.drop,
            "error": self.error,
            "worker": self.worker,
        }

    @classmethod
    def from_row(cls, row: dict) -> Chunk:
        text = str(row["lines"])  # split on "\n" only: a record is one line by construction (json.dumps escapes)
        return cls(
            unit=str(row["unit"]),
            seq=int(row["seq"]),
            last=bool(row["last"]),
            lines=[line + "\n" for line in text.split("\n")[:-1]],
            failures=json.loads(str(row["failures"])),
            drop=bool(row["drop"]),
            error=str(row["error"]),
            worker=str(row["worker"]),
        )


@dataclass(frozen=True)
class WorkerOptions:
    """What every worker needs to build the same predictor `infer` builds."""

    model: str
    boxes: BoxesFile | None = None
    max_pairs: int | None = None
    top_k: int = TOP_K
    threads: int | None = None
    backend: str | None = None  # None: from the path
    precision: str | None = None  # OpenVINO's; None: its default
    device: str | None = None
    cache_dir: str | None = None


class UnitProcessor:
    """One backend per worker, loaded once; `process(unit)` yields the unit's chunks. A model that cannot be loaded
    does not raise here (Ray would retry and bury the message in actor logs): every unit then answers with that
    error, and the driver stops the job with it."""

    def __init__(self, options: WorkerOptions) -> None:
        self.options = options
        self.worker = f"{socket.gethostname()}:{os.getpid()}"
        self.predictor: Predictor | None = None
        self.error = ""
        try:
            mode = "boxes" if options.boxes else "sgdet"
            backend = open_backend(
                Path(options.model),
                options.backend,
                mode=mode,
                max_pairs=options.max_pairs,
                threads=options.threads,
                precision=options.precision,
                device=options.device,
                cache_dir=Path(options.cache_dir) if options.cache_dir else None,
            )
            if backend.mode != mode:  # checked once here, not as a failure of every input
                backend.close()
                raise SRGError(
                    f"{options.model} was exported in boxes mode and needs --boxes; export with --mode sgdet to detect"
                    if backend.mode == "boxes"
                    else f"{options.model} detects its own boxes (sgdet mode); drop --boxes or use a boxes-mode model"
                )
            self.predictor = Predictor(backend, max_pairs=options.max_pairs, top_k=options.top_k)
        except SRGError as e:
            self.error = str(e)

    def process(self, unit: Unit) -> Iterator[Chunk]:
        if self.predictor is None:
            yield Chunk(unit.id, 0, True, error=self.error, worker=self.worker)
            return
        seq = 0
        pending: list[str] = []
        failures: list[dict[str, str]] = []
        drop = False
        for item in unit.inputs:
            try:
                for line in self._lines(item):
                    pending.append(line)
                    if len(pending) >= CHUNK_RECORDS:
                        yield Chunk(unit.id, seq, False, pending, worker=self.worker)
                        seq, pending = seq + 1, []
            except Exception as e:  # one bad input must not end a job of millions; bugs show their type
                failures.append({"input": item.key, "error": _message(e)})
                if item.kind == "video":
                    drop, pending = True, []  # a unit holds one video only: nothing else is lost
        yield Chunk(unit.id, seq, True, pending, failures, drop=drop, worker=self.worker)

    def _lines(self, item: Input) -> Iterator[str]:
        assert self.predictor is not None
        boxes = self.options.boxes.for_source(item.name) if self.options.boxes else None
        if item.kind == "image":
            record, _ = self.predictor.predict(read_image(Path(item.path)), boxes, frame=item.frame, source=item.source)
            yield jsonl_line(record)
            return
        video = VideoSource(item.source, Path(item.path))
        video.open()
        with contextlib.closing(video.frames(1, threading.Event())) as frames:  # the file is released on failure too
            for frame in frames:
                record, _ = self.predictor.predict(
                    frame.image, boxes, frame=frame.index, source=frame.source, timestamp_ms=frame.timestamp_ms
                )
                yield jsonl_line(record)

    def close(self) -> None:
        if self.predictor is not None:
            self.predictor.backend.close()


def _message(error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else ""
    return text if isinstance(error, SRGError) else f"{type(error).__name__}: {text}".rstrip(": ")
