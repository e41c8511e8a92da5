"""`roi_pool(features, rois, output_size, spatial_scale)` on torch tensors, through the Triton kernel.

Same signature and semantics as `torchvision.ops.roi_pool` with `rois` given as an [R, 5] tensor (batch index,
x1, y1, x2, y2), except that `rois` stay fp32 when the features are fp16 (box coordinates need fp32 resolution).
On a CUDA tensor the kernel runs on the GPU; on a CPU tensor it runs in Triton's interpreter, which needs
TRITON_INTERPRET=1 set before this module is first imported (slow: correctness tests only).
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from srg_deploy.errors import SRGError

if TYPE_CHECKING:
    import torch

_INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"


def roi_pool(
    features: torch.Tensor, rois: torch.Tensor, output_size: int | tuple[int, int], spatial_scale: float = 1.0
) -> torch.Tensor:
    """Fast R-CNN RoI max pooling: features [B,C,H,W] fp32/fp16, rois [R,5] fp32 -> [R,C,PH,PW] (features' dtype).

    torch and Triton are imported here, not at module level, so `import srg_deploy.plugins` stays free for the
    runtime (which reads only the plugin's spec)."""
    import torch

    from srg_deploy.plugins.roi_pool_kernel import BLOCK_C, BLOCK_W, NUM_WARPS, grid, roi_pool_kernel

    ph, pw = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    if features.dim() != 4:
        raise SRGError(f"roi_pool: features must be [B,C,H,W]; got shape {tuple(features.shape)}")
    if rois.dim() != 2 or rois.shape[1] != 5:
        raise SRGError(f"roi_pool: rois must be [R,5] (batch index, x1, y1, x2, y2); got shape {tuple(rois.shape)}")
    if features.dtype not in (torch.float32, torch.float16):
        raise SRGError(f"roi_pool: features must be float32 or float16; got {features.dtype}")
    if rois.dtype != torch.float32:
        raise SRGError(
            f"roi_pool: rois must be float32 (coordinates keep fp32 even for fp16 features); got {rois.dtype}"
        )
    if features.device != rois.device:
        raise SRGError(f"roi_pool: features on {features.device} but rois on {rois.device}")
    if features.device.type == "cpu" and not _INTERPRETING:
        raise SRGError("roi_pool on CPU tensors needs Triton's interpreter: set TRITON_INTERPRET=1 before importing")
    if ph < 1 or pw < 1:
        raise SRGError(f"roi_pool: output_size must be positive; got {(ph, pw)}")
    _, c, h, w = features.shape
    out = torch.empty((rois.shape[0], c, ph, pw), dtype=features.dtype, device=features.device)
    if out.numel() == 0:
        return out
    roi_pool_kernel[grid(rois.shape[0], c, ph, pw)](
        features.contiguous(),
        rois.contiguous(),
        rois.shape[0],
        c,
        h,
        w,
        out,
        SPATIAL_SCALE=float(spatial_scale),
        PH=ph,
        PW=pw,
        BLOCK_C=BLOCK_C,
        BLOCK_W=BLOCK_W,
        num_warps=NUM_WARPS,
    )
    return out
