"""Issue 4's benchmark: the deployed ONNX graph on ONNX Runtime against a naive eager pipeline in which every
*ordered* pair pools its own union, at a 480x640 model input (no resize), 24 boxes, all 276 unordered = 552
ordered pairs. Target: ONNX Runtime >= 2x faster. The naive baseline is batched (one RoI pooling and one res5
pass over all its RoIs), so the gap is the union de-duplication plus ONNX Runtime, not a Python loop.

    .venv/bin/python benchmarks/ort_vs_naive.py [--iters 3] [--warmup 1]
"""

from __future__ import annotations

import argparse

import torch
from _common import benchmark_model, footer, header, inputs_for, median, scratch, table

from srg_deploy.model import SRGNet, union_boxes
from srg_deploy.runtime.bench import Workload, time_interleaved
from srg_deploy.runtime.ort_backend import OrtBackend
from srg_deploy.runtime.torch_backend import TorchBackend

WORKLOAD = Workload(480, 640, boxes=24)


@torch.inference_mode()
def naive(model: SRGNet, image: torch.Tensor, boxes: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """Relation logits [2P, classes] with one union pooled per ordered pair (i->j and j->i separately)."""
    ordered = torch.cat([pairs, pairs.flip(1)])
    n = len(boxes)
    pooled = model.pool5(model.trunk(image), torch.cat([boxes, union_boxes(boxes, ordered)]))
    features, unions = pooled[:n], pooled[n:]
    model.object_head(features)
    subject = torch.relu(model.subject_embed(features))[ordered[:, 0]]
    obj = torch.relu(model.object_embed(features))[ordered[:, 1]]
    return model.relation_head(torch.cat([subject, obj, torch.relu(model.union_embed(unions))], dim=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iters", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    args = parser.parse_args()
    out = header(
        "ONNX Runtime vs naive eager (issue 4)",
        f"Workload: {WORKLOAD.height}x{WORKLOAD.width} model input, {WORKLOAD.boxes} boxes, {WORKLOAD.num_pairs}"
        f" unordered / {2 * WORKLOAD.num_pairs} ordered pairs; random weights; model call only (inputs already"
        f" preprocessed); median of {args.iters} runs after {args.warmup} warm-up",
    )
    with scratch() as tmp:
        model, onnx_path = benchmark_model(tmp)
        eager, ort = TorchBackend(model), OrtBackend(onnx_path)
        inputs = inputs_for(ort, WORKLOAD)
        tensors = [torch.from_numpy(inputs[k]) for k in ("image", "boxes", "pairs")]
        dedup = eager.run(inputs)["relation_logits"]
        p = WORKLOAD.num_pairs
        # The baseline computes the same thing: forward directions first, then backward ones.
        torch.testing.assert_close(
            naive(model, *tensors),
            torch.cat([torch.from_numpy(dedup[:, 0]), torch.from_numpy(dedup[:, 1])]),
            rtol=1e-4,
            atol=1e-4,
        )
        macs = WORKLOAD.macs(model.config)
        naive_macs = macs.total + p * macs.per_roi + p * 2048 * 512
        calls = {
            "naive eager (a union per ordered pair)": lambda: naive(model, *tensors),
            "eager SRGNet (a union per unordered pair)": lambda: eager.run(inputs),
            "deployed ONNX, ONNX Runtime CPU": lambda: ort.run(inputs),
        }
        times = time_interleaved(calls, args.iters, args.warmup)
        work = dict(zip(calls, [(2 * p, naive_macs), (p, macs.total), (p, macs.total)]))
    rows = [
        [
            name,
            unions,
            WORKLOAD.boxes + unions,
            f"{m / 1e9:.1f}",
            f"{median(times[name]):.0f}",
            f"{max(times[name]):.0f}",
        ]
        for name, (unions, m) in work.items()
    ]
    out += "\n" + table(["pipeline", "unions pooled", "RoIs through res5", "GMAC", "median ms", "max ms"], rows)
    naive_ms, eager_ms, ort_ms = (median(t) for t in times.values())
    ratio = naive_ms / ort_ms
    out += (
        f"\n**ONNX Runtime vs naive eager: {ratio:.2f}x** (target >= 2x: {'met' if ratio >= 2 else 'NOT met'});"
        f" of which union de-duplication (eager vs naive eager) {naive_ms / eager_ms:.2f}x and ONNX Runtime vs"
        f" eager {eager_ms / ort_ms:.2f}x. The three take turns in each round.\n\n" + footer()
    )
    print(out)


if __name__ == "__main__":
    main()
