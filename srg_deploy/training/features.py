"""The frozen part of the model, computed once per image: pool5 of every ground-truth box and of every unordered
pair's union box.

Trunk and res5 do not train, so these vectors are the same in every epoch; only the heads (a few linear layers) run
per step. The first time an image is needed its features are computed from exactly the inputs `eval` gives the
model (`Predictor.prepare`: the checkpoint's resize and normalisation, all i < j pairs) and kept:
- in memory (float32; the default, for datasets that fit: `MEMORY_LIMIT_BYTES`), or
- on disk with `--feature-cache DIR` (float16, half the bytes; reused by later runs and by `--resume`): one
  append-only file of rows, an index of where each image's rows are, and the fingerprint of what made them.
Full Visual Genome (~57,000 train images, ~12 boxes and ~66 unions on average) needs tens of GB: disk.

The heads train on these vectors centred and divided by one number (`measure_normalisation`: the split's mean pool5
vector and the RMS of what is left): the caches keep pool5 as the model computes it, `SplitFeatures.items` hands it
out normalised.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from srg_deploy.atomic import atomic_path, write_text
from srg_deploy.contract import FEATURE_DIM
from srg_deploy.datasets import SGGImage, VGSGGDataset
from srg_deploy.errors import SRGError
from srg_deploy.model import SRGNet
from srg_deploy.preprocess import prepare

MEMORY_LIMIT_BYTES = 8 * 2**30
CACHE_FORMAT = "srg-deploy-features/1"
INDEX_FLUSH_EVERY = 256  # images appended between index writes: an interrupted run loses at most these
SCALE_IMAGES = 256  # the first images of a split that its feature scale is measured on
FEATURE_RMS = 0.5  # of the centred features the heads train on (see measure_normalisation)


def loader_threads(cores: int | None = None) -> int:
    """Threads that decode and preprocess images while the model runs: half the cores, 1 to 8. JPEG decoding,
    resizing and normalising release the GIL; on a GPU they, not the model, would otherwise set the pace."""
    return max(1, min(8, (cores or os.cpu_count() or 2) // 2))


def rows_per_image(num_boxes: int) -> int:
    """Feature rows an image needs: its boxes and the unions of its unordered pairs."""
    return num_boxes + num_boxes * (num_boxes - 1) // 2


def frozen_fingerprint(model: SRGNet) -> str:
    """SHA-256 of what the cached features depend on: trunk and res5 weights, architecture and preprocessing."""
    digest = hashlib.sha256()
    config = model.config.to_dict()
    digest.update(json.dumps([config["architecture"], config["preprocessing"]], sort_keys=True).encode())
    for name, tensor in model.state_dict().items():
        if name.startswith(("trunk.", "res5.")):
            digest.update(name.encode())
            digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()


class FeatureExtractor:
    """Frozen trunk + RoI pooling + res5 on one image: (boxes [N,2048], unions [N(N-1)/2, 2048]) on the CPU.
    `prepare` (CPU: resize, normalise, pairs) and `run` (the model) are separate so that loader threads can prepare
    the next images while the model runs."""

    def __init__(self, model: SRGNet, device: str) -> None:
        self.model, self.device = model.eval().to(device), device

    def prepare(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> dict[str, np.ndarray]:
        return prepare(self.model.config, "boxes", frame_bgr, boxes).inputs

    @torch.no_grad()
    def run(self, inputs: dict[str, np.ndarray]) -> tuple[Tensor, Tensor]:
        image, regions, pairs = (torch.from_numpy(inputs[n]).to(self.device) for n in ("image", "boxes", "pairs"))
        features, unions = self.model.pool_regions(self.model.trunk(image), regions, pairs)
        return features.cpu(), unions.cpu()

    def __call__(self, frame_bgr: np.ndarray, boxes: np.ndarray) -> tuple[Tensor, Tensor]:
        return self.run(self.prepare(frame_bgr, boxes))


class MemoryCache:
    """Features of a split in memory, float32."""

    def __init__(self) -> None:
        self._items: dict[int, tuple[Tensor, Tensor]] = {}

    def __len__(self) -> int:
        return len(self._items)

    def has(self, k: int) -> bool:
        return k in self._items

    def get(self, k: int) -> tuple[Tensor, Tensor]:
        return self._items[k]

    def put(self, k: int, features: Tensor, unions: Tensor) -> tuple[Tensor, Tensor]:
        """Keep them; returns them as `get` will (here: unchanged)."""
        self._items[k] = (features, unions)
        return features, unions

    def flush(self) -> None:
        """Nothing to write."""


class DiskCache:
    """Features of a split on disk, float16: `features.f16` (rows of 2048), `index.npy` ([images, 3]: first row,
    boxes, unions; -1 while not cached) and `meta.json` (format, fingerprint, images). A folder made for another
    model or split is refused, not silently mixed."""

    def __init__(self, folder: Path, key: str, images: int) -> None:
        self.folder = Path(folder)
        self.data_path, self.index_path, meta_path = (
            self.folder / n for n in ("features.f16", "index.npy", "meta.json")
        )
        meta = {"format": CACHE_FORMAT, "key": key, "images": images, "dtype": "float16", "dim": FEATURE_DIM}
        if meta_path.is_file():
            try:
                found = json.loads(meta_path.read_text())
            except (json.JSONDecodeError, UnicodeDecodeError):
                found = None
            if found != meta:
                raise SRGError(
                    f"feature cache {self.folder} was made for another model, dataset or split; "
                    "delete it or name another --feature-cache"
                )
            self.index = np.load(self.index_path)
        else:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.index = np.full((images, 3), -1, np.int64)
            self._write_index()
            write_text(meta_path, json.dumps(meta) + "\n")
        cached = self.index[:, 0] >= 0
        end = int((self.index[cached, 0] + self.index[cached, 1] + self.index[cached, 2]).max()) if cached.any() else 0
        with open(self.data_path, "ab") as f:  # rows written after the last index flush belong to no image
            f.truncate(end * FEATURE_DIM * 2)
        self._rows, self._pending = end, 0

    def __len__(self) -> int:
        return int((self.index[:, 0] >= 0).sum())

    def has(self, k: int) -> bool:
        return bool(self.index[k, 0] >= 0)

    def get(self, k: int) -> tuple[Tensor, Tensor]:
        first, boxes, unions = (int(v) for v in self.index[k])
        rows = np.fromfile(
            self.data_path, dtype=np.float16, count=(boxes + unions) * FEATURE_DIM, offset=first * FEATURE_DIM * 2
        )
        rows = torch.from_numpy(rows.astype(np.float32).reshape(-1, FEATURE_DIM))
        return rows[:boxes], rows[boxes:]

    def put(self, k: int, features: Tensor, unions: Tensor) -> tuple[Tensor, Tensor]:
        """Append them; returns them as `get` will (rounded to float16), so that the epoch that computes an image's
        features trains on exactly what later epochs read back."""
        rows = torch.cat([features, unions]).numpy().astype(np.float16)
        with open(self.data_path, "ab") as f:
            f.write(rows.tobytes())
        self.index[k] = (self._rows, len(features), len(unions))
        self._rows += len(rows)
        self._pending += 1
        if self._pending >= INDEX_FLUSH_EVERY:
            self.flush()
        stored = torch.from_numpy(rows.astype(np.float32))
        return stored[: len(features)], stored[len(features) :]

    def flush(self) -> None:
        """Make every appended row durable, then the index that points at them."""
        if self._pending:
            with open(self.data_path, "ab") as f:
                os.fsync(f.fileno())
            self._write_index()
            self._pending = 0

    def _write_index(self) -> None:
        with atomic_path(self.index_path, suffix=".npy") as tmp:
            np.save(tmp, self.index)


class SplitFeatures:
    """A split's images with their frozen features: computed on first use (images decoded and preprocessed ahead
    on `loader_threads`), then served from the cache, divided by `scale`."""

    def __init__(self, dataset: VGSGGDataset, extractor: FeatureExtractor, cache: MemoryCache | DiskCache) -> None:
        self.dataset, self.extractor, self.cache = dataset, extractor, cache
        self.computed = 0  # features computed by this process
        self.normalisation = Normalisation(torch.zeros(FEATURE_DIM), 1.0)

    def __len__(self) -> int:
        return len(self.dataset)

    def items(self, order: Sequence[int]) -> Iterator[tuple[SGGImage, Tensor, Tensor]]:
        """(ground truth, box features, union features) for the images of `order`, in that order."""
        threads = loader_threads()
        try:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                ahead: deque[tuple[int, Future | None]] = deque()
                todo = iter(order)

                def fill() -> None:
                    while len(ahead) < 2 * threads and (k := next(todo, None)) is not None:
                        ahead.append((k, None if self.cache.has(k) else pool.submit(self._prepare, k)))

                fill()
                while ahead:
                    k, inputs = ahead.popleft()
                    fill()
                    if inputs is None:
                        features, unions = self.cache.get(k)
                    else:
                        features, unions = self.cache.put(k, *self.extractor.run(inputs.result()))
                        self.computed += 1
                    yield self.dataset[k], self.normalisation(features), self.normalisation(unions)
        finally:
            self.cache.flush()

    def _prepare(self, k: int) -> dict[str, np.ndarray]:
        return self.extractor.prepare(self.dataset.read_image(k), self.dataset[k].boxes)


@dataclass(frozen=True)
class Normalisation:
    """pool5 -> (pool5 - mean) / scale: what the heads train on."""

    mean: Tensor  # [2048]
    scale: float

    def __call__(self, rows: Tensor) -> Tensor:
        return (rows - self.mean) / self.scale


def measure_normalisation(features: SplitFeatures, images: int = SCALE_IMAGES) -> Normalisation:
    """The mean pool5 vector of the split's first `images` images (boxes and unions), and the RMS of their centred
    elements over FEATURE_RMS. pool5 vectors come out of a ReLU and a mean: every element positive, with a common
    direction as large as the rest together; centred and scaled, what the heads see is the same whatever the trunk."""
    total, squares, count = torch.zeros(FEATURE_DIM, dtype=torch.float64), 0.0, 0
    for _, boxes, unions in features.items(range(min(images, len(features)))):
        for rows in (boxes, unions):
            raw = rows.double() * features.normalisation.scale + features.normalisation.mean.double()
            total += raw.sum(dim=0)
            squares += float(raw.pow(2).sum())
            count += len(raw)
    mean = total / max(count, 1)
    variance = squares / max(count, 1) / FEATURE_DIM - float(mean.pow(2).mean())
    scale = max(variance, 0.0) ** 0.5 / FEATURE_RMS
    if not np.isfinite(scale) or scale == 0.0:
        raise SRGError(
            f"the pool5 features of the {features.dataset.split} split do not vary (or are not finite): the "
            "checkpoint's trunk gives nothing to train on"
        )
    return Normalisation(mean.float(), scale)


def open_cache(folder: Path | None, fingerprint: str, dataset: VGSGGDataset, what: str) -> MemoryCache | DiskCache:
    """A disk cache under `folder`/`what`, keyed by the model's frozen part (`frozen_fingerprint`) and the split's
    images; or memory when `folder` is None and the split's features fit in MEMORY_LIMIT_BYTES (else one line saying
    to name a folder)."""
    if folder is None:
        rows = sum(rows_per_image(len(gt.boxes)) for gt in dataset)
        needed = rows * FEATURE_DIM * 4
        if needed > MEMORY_LIMIT_BYTES:
            raise SRGError(
                f"the frozen features of the {what} split ({len(dataset)} images, {rows} regions and unions) need "
                f"{needed / 2**30:.1f} GiB, more than the {MEMORY_LIMIT_BYTES / 2**30:.0f} GiB kept in memory; "
                f"pass --feature-cache DIR to keep them on disk ({needed / 2 / 2**30:.1f} GiB as float16)"
            )
        return MemoryCache()
    identity = [
        fingerprint,
        str(Path(dataset.root).resolve()),
        dataset.split,
        dataset.val_images,
        [gt.image_id for gt in dataset],
    ]
    key = hashlib.sha256(json.dumps(identity).encode()).hexdigest()
    return DiskCache(Path(folder) / what, key, len(dataset))
