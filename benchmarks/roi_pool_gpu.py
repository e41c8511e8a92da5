"""RoI pooling on a GPU: the Triton kernel vs torchvision's CUDA roi_pool, and SRGNet's stages, side by side.

Checks bit-identity at full size first (1024 channels, the 38x63 res4b22 map of a 600x1000 frame, 666 RoIs = 36
boxes + 630 unions), then times both with CUDA events (triton.testing.do_bench, median). Prints a Markdown table
with the device and date; `--out FILE` also writes it. Needs a CUDA GPU.

    python benchmarks/roi_pool_gpu.py --out benchmarks/results/roi_pool_h100.md
"""

from __future__ import annotations

import argparse
import datetime
import platform

import torch
import torchvision
import triton.testing

from srg_deploy.checkpoint import random_model
from srg_deploy.config import SRGConfig
from srg_deploy.plugins import roi_pool
from srg_deploy.scene_graph import all_pairs


def rois_for(n: int, height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy1 = torch.rand(n, 2, generator=g) * torch.tensor([width * 0.8, height * 0.8])
    wh = 16 + torch.rand(n, 2, generator=g) * torch.tensor([width * 0.5, height * 0.5])
    return torch.cat([torch.zeros(n, 1), xy1, xy1 + wh], dim=1)


def bench(fn) -> float:
    return triton.testing.do_bench(fn, warmup=25, rep=200, return_mode="median")


def roi_pool_rows(n_rois: int) -> list[str]:
    rows = []
    rois = rois_for(n_rois, 600, 1000).cuda()
    for dtype in (torch.float32, torch.float16):
        x = torch.randn(1, 1024, 38, 63, device="cuda", dtype=dtype)
        ours = roi_pool(x, rois, 7, 1 / 16)
        ref = torchvision.ops.roi_pool(x.float(), rois, (7, 7), 1 / 16).to(dtype)
        identical = torch.equal(ours, ref)
        t_ours = bench(lambda x=x: roi_pool(x, rois, 7, 1 / 16))
        rois_low = rois.to(dtype)  # torchvision's CUDA kernel wants rois in the features' dtype; ours keeps fp32
        t_tv = bench(lambda x=x, r=rois_low: torchvision.ops.roi_pool(x, r, (7, 7), 1 / 16))
        # bytes: every RoI reads its whole region once per channel block at best; output written once
        out_bytes = ours.numel() * ours.element_size()
        rows.append(
            f"| roi_pool {str(dtype).removeprefix('torch.')} | {n_rois} | {t_tv * 1e3:.1f} | {t_ours * 1e3:.1f} |"
            f" {t_tv / t_ours:.2f}x | {'yes' if identical else '**NO**'} | {out_bytes / t_ours / 1e6:.0f} |"
        )
    return rows


@torch.inference_mode()
def model_rows() -> list[str]:
    model = random_model(SRGConfig(), 0).cuda().eval()
    image = torch.randn(1, 3, 600, 1000, device="cuda")
    boxes = rois_for(36, 600, 1000)[:, 1:].cuda()
    rows = []
    for name, pairs in (("all 630 pairs", all_pairs(36)), ("128-pair budget", all_pairs(36)[:128])):
        pairs = torch.from_numpy(pairs).cuda()
        for dtype in (torch.float32, torch.float16):
            with torch.autocast("cuda", dtype=torch.float16, enabled=dtype == torch.float16):
                t_trunk = bench(lambda: model.trunk(image))
                fmap = model.trunk(image)
                t_rel = bench(lambda fmap=fmap, pairs=pairs: model.relate(fmap, boxes, pairs))
                t_all = bench(lambda pairs=pairs: model(image, boxes, pairs))
            label = "fp32" if dtype == torch.float32 else "fp16 autocast"
            rows.append(
                f"| eager SRGNet {label}, 36 boxes, {name} | {t_trunk:.2f} | {t_rel:.2f} | {t_all:.2f} | {1e3 / t_all:.0f} |"
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the Markdown here")
    args = parser.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("needs a CUDA GPU")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    device = torch.cuda.get_device_name()
    lines = [
        f"## RoI pooling and SRGNet on {device} ({datetime.date.today()}, torch {torch.__version__},"
        f" torchvision {torchvision.__version__}, triton {triton.__version__}, {platform.machine()})",
        "",
        "| kernel | RoIs | torchvision CUDA (µs) | Triton (µs) | speed-up | bit-identical | output MB/s |",
        "|---|---|---|---|---|---|---|",
        *roi_pool_rows(666),
        *roi_pool_rows(4000),
        "",
        "| eager model (TF32 off) | trunk ms | RoI + pool5 + heads ms | end to end ms | frames/s |",
        "|---|---|---|---|---|",
        *model_rows(),
    ]
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text)


if __name__ == "__main__":
    main()
