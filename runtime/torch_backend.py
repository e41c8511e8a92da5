"""Eager PyTorch: the reference every deployed model is checked against."""

from __future__ import annotations

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
