"""Block sizes of the Triton RoI pooling kernel on a GPU: every (BLOCK_C, BLOCK_W, num_warps) timed at full size
(1024 channels, the 38x63 map of a 600x1000 frame, 666 RoIs) and checked bit for bit against torchvision's CUDA
roi_pool. What the shipped constants (plugins/roi_pool_kernel.py) should be on a given GPU; changing them means
regenerating the shipped PTX (`python -m srg_deploy.plugins.generate_ptx`). Needs a CUDA GPU.

    python benchmarks/roi_pool_tune.py [--rois 666]
"""

from __future__ import annotations

import argparse
import itertools

import torch
import torchvision
import triton
import triton.testing
from roi_pool_gpu import rois_for

from srg_deploy.plugins.roi_pool_kernel import BLOCK_C, BLOCK_W, NUM_WARPS, roi_pool_kernel


def run(features, rois, block_c: int, block_w: int, warps: int) -> torch.Tensor:
    _, c, h, w = features.shape
    out = torch.empty((len(rois), c, 7, 7), dtype=features.dtype, device=features.device)
    roi_pool_kernel[(len(rois), triton.cdiv(c, block_c), 49)](
        features, rois, len(rois), c, h, w, out,
        SPATIAL_SCALE=1 / 16, PH=7, PW=7, BLOCK_C=block_c, BLOCK_W=block_w, num_warps=warps,
    )  # fmt: skip
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rois", type=int, default=666)
    args = parser.parse_args()
    rois = rois_for(args.rois, 600, 1000).cuda()
    print(f"## Triton roi_pool block sizes on {torch.cuda.get_device_name()}, {args.rois} RoIs, 1024x38x63, 7x7")
    print(f"shipped: BLOCK_C {BLOCK_C}, BLOCK_W {BLOCK_W}, num_warps {NUM_WARPS}\n")
    print("| dtype | BLOCK_C | BLOCK_W | warps | µs | torchvision µs | bit-identical |")
    print("|---|---|---|---|---|---|---|")
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(1, 1024, 38, 63, device="cuda", dtype=dtype)
        expected = torchvision.ops.roi_pool(x.float(), rois, (7, 7), 1 / 16).to(dtype)
        rois_low = rois.to(dtype)  # torchvision's CUDA kernel wants RoIs in the features' dtype
        t_tv = triton.testing.do_bench(lambda x=x, r=rois_low: torchvision.ops.roi_pool(x, r, (7, 7), 1 / 16))
        rows = []
        for block_c, block_w, warps in itertools.product((16, 32, 64, 128, 256), (4, 8, 16), (1, 2, 4, 8)):
            same = torch.equal(run(x, rois, block_c, block_w, warps), expected)
            t = triton.testing.do_bench(
                lambda x=x, c=block_c, w=block_w, n=warps: run(x, rois, c, w, n), warmup=10, rep=50
            )
            rows.append((t, block_c, block_w, warps, same))
        for t, block_c, block_w, warps, same in sorted(rows)[:8]:
            name = str(dtype).removeprefix("torch.")
            print(
                f"| {name} | {block_c} | {block_w} | {warps} | {t * 1e3:.0f} | {t_tv * 1e3:.0f} | {'yes' if same else 'NO'} |"
            )
        shipped = next(r for r in rows if r[1:4] == (BLOCK_C, BLOCK_W, NUM_WARPS))
        print(
            f"| {str(dtype).removeprefix('torch.')} (shipped) | {BLOCK_C} | {BLOCK_W} | {NUM_WARPS} | {shipped[0] * 1e3:.0f} | {t_tv * 1e3:.0f} | {'yes' if shipped[4] else 'NO'} |"
        )


if __name__ == "__main__":
    main()
