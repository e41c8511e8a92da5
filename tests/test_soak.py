"""The pipeline does not grow in memory: `benchmarks/soak.py` at a smaller count, in this process.

The real model runs (the ResNet-101 trunk, RoI pooling, pool5 and the heads, exported to ONNX and run by ONNX
Runtime) on frames resized to 32..48 px, so a thousand frames of capture, preprocessing, model, scene graphs,
JSONL, MP4 encoding and graph PNGs take well under a minute; the 10,000-frame run is in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import importlib.util

from conftest import ROOT

from srg_deploy.runtime.loader import open_backend

FRAMES = 1000


def load_soak():
    spec = importlib.util.spec_from_file_location("soak", ROOT / "benchmarks" / "soak.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_thousand_frames_without_memory_growth(tmp_path):
    soak = load_soak()
    with open_backend(soak.build_model(tmp_path, "onnxruntime")) as runner:
        assert runner.name == "onnxruntime"
        result = soak.soak(FRAMES, "160x120", runner, samples=20, workdir=tmp_path)
    assert result["frames"] == FRAMES
    assert result["outputs"][0].endswith(f"({FRAMES} lines)") and f"({FRAMES} frames" in result["outputs"][1]
    rss = [s["rss_mib"] for s in result["samples"]]
    assert len(rss) == 20 and all(r > 0 for r in rss)
    # Keeping one 160x120 frame per frame (56 KiB) would grow the median by ~30 MiB between the quarters compared;
    # transient allocations move single samples by a few MiB, not the medians.
    assert result["growth_mib"] <= 3.0, result["samples"]
