"""RoI max pooling in Triton, exactly `torchvision.ops.roi_pool`'s arithmetic.

For each RoI (batch index, x1, y1, x2, y2) and output bin (ph, pw), as torchvision's kernels compute it:
    start/end = round-half-away-from-zero(coord * spatial_scale)        (fp32)
    roi_w = max(end_w - start_w + 1, 1); bin_w = roi_w / pooled_w      (fp32, IEEE division)
    wstart = clamp(floor(pw * bin_w) + start_w, 0, W); wend = clamp(ceil((pw + 1) * bin_w) + start_w, 0, W)
    out = max over the bin, or 0 if the bin is empty
Arguments are ordered inputs, scalars, outputs: TensorRT's AOT launch passes them in that order. The same source
serves three callers: the torch entry point (`roi_pool`), the CPU interpreter (TRITON_INTERPRET=1)
and the TensorRT plugin, which takes it compiled ahead of time (`plugins/aot.py`; `spatial_scale` and the pooled size
are constexprs there because TensorRT's AOT launch cannot pass float scalars). That PTX ships in `plugins/ptx/`: after
editing this file run `python -m srg_deploy.plugins.generate_ptx` (tests/test_aot_ptx.py compares).
"""

from __future__ import annotations

import triton
import triton.language as tl

FLT_MAX = tl.constexpr(3.4028234663852886e38)  # -FLT_MAX starts the max, as in torchvision


@triton.jit
def _round_half_away(v):
    """std::round: |v| - floor(|v|) is exact in fp32, so the .5 test is exact (floor(v + 0.5) is not)."""
    a = tl.abs(v)
    f = tl.floor(a)
    r = f + tl.where(a - f >= 0.5, 1.0, 0.0)
    return tl.where(v < 0, -r, r)


@triton.jit
def roi_pool_kernel(
    features,  # [B, C, H, W] fp32 or fp16, contiguous
    rois,  # [R, 5] fp32: batch index, x1, y1, x2, y2
    R,
    C,
    H,
    W,
    out,  # [R, C, PH, PW], dtype of features
    SPATIAL_SCALE: tl.constexpr,
    PH: tl.constexpr,
    PW: tl.constexpr,
    BLOCK_C: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    r = tl.program_id(0)
    if r >= R:  # TensorRT launches at least one row of programs even for zero RoIs
        return
    c0 = tl.program_id(1) * BLOCK_C
    ph = tl.program_id(2) // PW
    pw = tl.program_id(2) % PW

    roi = rois + r * 5
    batch = tl.load(roi).to(tl.int32)  # C++ float -> int conversion truncates, as torchvision's does
    start_w = _round_half_away(tl.load(roi + 1) * SPATIAL_SCALE).to(tl.int32)
    start_h = _round_half_away(tl.load(roi + 2) * SPATIAL_SCALE).to(tl.int32)
    end_w = _round_half_away(tl.load(roi + 3) * SPATIAL_SCALE).to(tl.int32)
    end_h = _round_half_away(tl.load(roi + 4) * SPATIAL_SCALE).to(tl.int32)
    bin_w = tl.math.div_rn(tl.maximum(end_w - start_w + 1, 1).to(tl.float32), PW * 1.0)
    bin_h = tl.math.div_rn(tl.maximum(end_h - start_h + 1, 1).to(tl.float32), PH * 1.0)

    hstart = tl.minimum(tl.maximum(tl.floor(ph * bin_h).to(tl.int32) + start_h, 0), H)
    hend = tl.minimum(tl.maximum(tl.ceil((ph + 1) * bin_h).to(tl.int32) + start_h, 0), H)
    wstart = tl.minimum(tl.maximum(tl.floor(pw * bin_w).to(tl.int32) + start_w, 0), W)
    wend = tl.minimum(tl.maximum(tl.ceil((pw + 1) * bin_w).to(tl.int32) + start_w, 0), W)

    channels = c0 + tl.arange(0, BLOCK_C)
    cmask = channels < C
    offs_w = tl.arange(0, BLOCK_W)
    plane = features + (batch * C + channels).to(tl.int64)[:, None] * H * W
    acc = tl.full((BLOCK_C,), -FLT_MAX, tl.float32)
    for h in range(hstart, hend):
        for w0 in range(wstart, wend, BLOCK_W):
            w = w0 + offs_w
            mask = cmask[:, None] & (w < wend)[None, :]
            tile = tl.load(plane + h * W + w[None, :], mask=mask, other=-float("inf"))
            acc = tl.maximum(acc, tl.max(tile.to(tl.float32), axis=1))
    empty = (hend <= hstart) | (wend <= wstart)
    acc = tl.where(empty | ~cmask, 0.0, acc)  # lanes past C are not stored; zero them so the cast is quiet
    dst = out + (r * C + channels).to(tl.int64) * (PH * PW) + ph * PW + pw
    tl.store(dst, acc.to(out.dtype.element_ty), mask=cmask)


BLOCK_C = 64
BLOCK_W = 16
NUM_WARPS = 4


def grid(num_rois: int, channels: int, pooled_h: int, pooled_w: int) -> tuple[int, int, int]:
    """One program per (RoI, block of BLOCK_C channels, output bin)."""
    return (num_rois, triton.cdiv(channels, BLOCK_C), pooled_h * pooled_w)
