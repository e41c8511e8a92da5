"""Calibration frames for `quantize`: real frames prepared exactly as every backend is fed them (`predictor.prepare`),
from a folder, video or glob with a boxes file, or from a VG-SGG split with its ground-truth boxes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from srg_deploy.config import SRGConfig
from srg_deploy.errors import SRGError
from srg_deploy.inputs import BoxesFile
from srg_deploy.runtime.predictor import prepare
from srg_deploy.runtime.sources import open_source

if TYPE_CHECKING:
    from srg_deploy.datasets import VGSGGDataset


@dataclass
class CalibrationSet:
    cases: list[dict[str, np.ndarray]]
    description: str  # what the metadata records: where the frames came from and how many


def from_source(
    config: SRGConfig,
    mode: str,
    spec: str,
    boxes: Path | None,
    limit: int,
    on_frame: Callable[[int], None] | None = None,
) -> CalibrationSet:
    """The first `limit` frames of `spec` that have boxes (boxes mode) or all frames (sgdet)."""
    if mode == "boxes" and boxes is None:
        raise SRGError(
            f"this is a boxes-mode model: calibration frames from {spec} need --boxes boxes.json (or use --data DIR)"
        )
    if mode == "sgdet" and boxes is not None:
        raise SRGError("this model detects its own boxes (sgdet mode); drop --boxes")
    boxes_file = BoxesFile(boxes) if boxes else None
    source = open_source(spec, reconnect=0)
    cases, skipped = [], 0
    try:
        if source.live:
            raise SRGError(f"{spec} is a live source; calibrate on recorded frames (a folder or a video)")
        for frame in source.frames(1, threading.Event()):
            frame_boxes = boxes_file.for_frame(frame.name, frame.index) if boxes_file else None
            if frame_boxes is not None and len(frame_boxes) == 0:
                skipped += 1
                continue
            cases.append(prepare(config, mode, frame.image, frame_boxes).inputs)
            if on_frame:
                on_frame(len(cases))
            if len(cases) == limit:
                break
    finally:
        source.close()
    if not cases:
        why = f" ({skipped} frames, none with boxes in {boxes})" if skipped else ""
        raise SRGError(f"the calibration set is empty: {spec} gave no usable frame{why}")
    return CalibrationSet(
        cases, f"{source.describe()}: {len(cases)} frames" + (f" with boxes from {boxes}" if boxes else "")
    )


def from_dataset(
    config: SRGConfig, mode: str, dataset: VGSGGDataset, limit: int, on_frame: Callable[[int], None] | None = None
) -> CalibrationSet:
    """The first `limit` images of a VG-SGG split, with their ground-truth boxes in boxes mode."""
    cases = []
    for k in range(min(limit, len(dataset))):
        boxes = dataset[k].boxes if mode == "boxes" else None
        cases.append(prepare(config, mode, dataset.read_image(k), boxes).inputs)
        if on_frame:
            on_frame(len(cases))
    return CalibrationSet(cases, f"{dataset.root} {dataset.split} split: first {len(cases)} images")
