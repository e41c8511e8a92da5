"""The pipeline does not grow in memory: `benchmarks/soak.py` at a smaller count, in this process.

The backend here is a stand-in that returns contract-shaped outputs (fresh arrays every frame, as a real backend
allocates) in microseconds, so a thousand frames of capture, preprocessing, scene graphs, JSONL, MP4 encoding
and graph PNGs run in seconds. It is used for this test only: the model's own memory is covered by the 10,000
frame run on the real model recorded in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import importlib.util

import numpy as np
from conftest import ROOT

from srg_deploy.config import SRGConfig
from srg_deploy.runtime.backend import Backend

FRAMES = 1000


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class StandInBackend(Backend):
    """Soak test only: outputs with the contract's names, shapes and dtypes, filled with seeded noise."""

    name = "stand-in (soak test only)"

    def __init__(self) -> None:
        super().__init__(SRGConfig(), "boxes", "cpu")
        self.rng = np.random.default_rng(0)

    def _run(self, inputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        n, p = len(inputs["boxes"]), len(inputs["pairs"])
        return {
            "features": self.rng.standard_normal((n, 2048), dtype=np.float32),
            "object_logits": self.rng.standard_normal((n, self.config.num_object_classes), dtype=np.float32),
            "relation_logits": self.rng.standard_normal((p, 2, self.config.num_predicate_classes), dtype=np.float32),
        }


def test_thousand_frames_without_memory_growth(tmp_path):
    result = load_soak().soak(FRAMES, "160x120", StandInBackend(), samples=20, workdir=tmp_path)
    assert result["frames"] == FRAMES
    assert result["outputs"][0].endswith(f"({FRAMES} lines)") and f"({FRAMES} frames" in result["outputs"][1]
    rss = [s["rss_mib"] for s in result["samples"]]
    assert len(rss) == 20 and all(r > 0 for r in rss)
    # Keeping one 160x120 frame per frame (56 KiB) would grow the median by ~30 MiB between the quarters compared;
    # transient allocations move single samples by a few MiB, not the medians.
    assert result["growth_mib"] <= 3.0, result["samples"]
