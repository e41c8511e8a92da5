"""What a pipeline run reports: frame counts, per-stage latency percentiles, throughput and memory.

Everything here is bounded: a camera can run for weeks, so latencies are kept as a fixed-size uniform sample of
the whole run, never as a list that grows with it.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STAGES = ("capture", "preprocess", "model", "postprocess", "write")


class Reservoir:
    """A uniform sample of at most `size` values from a stream of any length (Vitter's algorithm R), so p50/p95
    cover the whole run in constant memory. Below `size` values it holds them all and percentiles are exact."""

    def __init__(self, size: int = 4096, seed: int = 0) -> None:
        self.size, self.count = size, 0
        self.values: list[float] = []
        self._rng = random.Random(seed)

    def add(self, value: float) -> None:
        self.count += 1
        if len(self.values) < self.size:
            self.values.append(value)
        else:
            k = self._rng.randrange(self.count)
            if k < self.size:
                self.values[k] = value

    def percentile(self, q: float) -> float | None:
        return float(np.percentile(self.values, q)) if self.values else None


@dataclass
class RunStats:
    """Counts obey read = skipped + processed + dropped + discarded once a run is over."""

    source: str
    backend: str
    read: int = 0  # frames taken from the source
    skipped: int = 0  # not selected by --every (or a live frame the decoder could not finish)
    processed: int = 0  # through the model and handed to the sinks
    dropped: int = 0  # replaced by a newer frame before the model got to them (--realtime)
    discarded: int = 0  # captured but not processed because the run stopped
    stop_reason: str = ""
    stages: dict[str, Reservoir] = field(default_factory=lambda: {s: Reservoir() for s in STAGES})
    started: float = field(default_factory=time.perf_counter)
    finished: float | None = None

    @property
    def elapsed_s(self) -> float:
        return (self.finished or time.perf_counter()) - self.started

    @property
    def fps(self) -> float:
        """End to end: processed frames per second of wall time, from start to the last output written."""
        return self.processed / self.elapsed_s if self.elapsed_s > 0 else 0.0

    def summary_lines(self) -> list[str]:
        lines = [
            f"source: {self.source}",
            f"backend: {self.backend}",
            f"frames: read {self.read}, processed {self.processed}, skipped {self.skipped} (--every), "
            f"dropped {self.dropped} (realtime), discarded {self.discarded} (at stop)",
            f"{'latency ms':<12}{'p50':>9}{'p95':>9}",
        ]
        for name in STAGES:
            p50, p95 = self.stages[name].percentile(50), self.stages[name].percentile(95)
            lines.append(f"  {name:<10}{_ms(p50):>9}{_ms(p95):>9}")
        lines.append(f"end-to-end: {self.processed} frames in {self.elapsed_s:.1f} s = {self.fps:.2f} fps")
        peak = peak_rss_mib()
        if peak is not None:
            lines.append(f"memory: peak RSS {peak:.0f} MiB")
        return lines


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _status_mib(key: str) -> float | None:
    """A `/proc/self/status` memory line in MiB (Linux); None elsewhere."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024  # reported in kB
    except OSError:
        return None
    return None


def rss_mib() -> float | None:
    """Resident memory now (VmRSS)."""
    return _status_mib("VmRSS")


def peak_rss_mib() -> float | None:
    """Highest resident memory so far (VmHWM)."""
    return _status_mib("VmHWM")
