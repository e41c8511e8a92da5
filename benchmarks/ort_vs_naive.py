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
from srg_deploy.runtime.bench import Workload, count_macs, time_calls
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
        macs = count_macs(model.config, WORKLOAD)
        naive_macs = macs.total + p * macs.per_roi + p * 2048 * 512
        runs = {
            "naive eager (a union per ordered pair)": (
                2 * p,
                naive_macs,
                time_calls(lambda: naive(model, *tensors), args.iters, args.warmup),
            ),
            "eager SRGNet (a union per unordered pair)": (
                p,
                macs.total,
                time_calls(lambda: eager.run(inputs), args.iters, args.warmup),
            ),
            "deployed ONNX, ONNX Runtime CPU": (
                p,
                macs.total,
                time_calls(lambda: ort.run(inputs), args.iters, args.warmup),
            ),
        }
    rows = [
        [name, unions, WORKLOAD.boxes + unions, f"{m / 1e9:.1f}", f"{median(t):.0f}", f"{max(t):.0f}"]
        for name, (unions, m, t) in runs.items()
    ]
    out += "\n" + table(["pipeline", "unions pooled", "RoIs through res5", "GMAC", "median ms", "max ms"], rows)
    times = [median(t) for _, _, t in runs.values()]
    ratio = times[0] / times[2]
    out += (
        f"\n**ONNX Runtime vs naive eager: {ratio:.2f}x** (target >= 2x: {'met' if ratio >= 2 else 'NOT met'});"
        f" of which union de-duplication (eager vs naive eager) {times[0] / times[1]:.2f}x and ONNX Runtime vs"
        f" eager {times[1] / times[2]:.2f}x.\n\n" + footer()
    )
    print(out)


if __name__ == "__main__":
    main()
