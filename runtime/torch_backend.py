"""Eager PyTorch: the reference every deployed model is checked against."""

from __future__ import annotations

import time

import numpy as np
import torch

from srg_deploy.detector import SGDetNet
from srg_deploy.model import SRGNet
from srg_deploy.runtime.backend import Backend


class TorchBackend(Backend):
    name = "torch"

    def __init__(self, model: SRGNet, mode: str = "boxes", device: str = "cpu", max_pairs: int | None = None) -> None:
        super().__init__(model.config, mode, device)
        self.max_pairs = max_pairs
        self.model = model.eval().to(device)
        self.net = SGDetNet(self.model, max_pairs=max_pairs).eval().to(device) if mode == "sgdet" else self.model

    @torch.inference_mode()
    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [torch.from_numpy(inputs[n]).to(self.device) for n in self.input_names]
        outputs = self.net(*tensors)
        return {name: t.cpu().numpy() for name, t in zip(self.output_names, outputs)}

    def stage_times(self, inputs: dict[str, np.ndarray], iters: int, warmup: int) -> dict[str, list[float]]:
        """`bench`'s eager stages (the trunk, pool_regions and heads of the SRGNet), each timed on its own (CPU)."""
        with torch.inference_mode():
            image, boxes, pairs = (torch.from_numpy(inputs[k]) for k in ("image", "boxes", "pairs"))
            times: dict[str, list[float]] = {"trunk": [], "roi_pool5": [], "heads": []}
            for it in range(warmup + iters):
                t0 = time.perf_counter()
                feature_map = self.model.trunk(image)
                t1 = time.perf_counter()
                features, union_features = self.model.pool_regions(feature_map, boxes, pairs)
                t2 = time.perf_counter()
                self.model.heads(features, union_features, pairs)
                t3 = time.perf_counter()
                if it >= warmup:
                    for name, seconds in (("trunk", t1 - t0), ("roi_pool5", t2 - t1), ("heads", t3 - t2)):
                        times[name].append(seconds * 1e3)
            return times
