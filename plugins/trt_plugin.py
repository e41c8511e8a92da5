"""The TensorRT plugin `srg::roi_pool`, written with TensorRT's Python plugin API (`tensorrt.plugin`, 10.6+).

Importing this module registers the plugin; only the engine builder and the runtime of JIT engines import it.
TensorRT's ONNX parser maps our exported `roi_pool` nodes (domain `srg`, `plugin_namespace="srg"`) to it and loads,
in registration order, the node attributes named in `register` below; spec.ATTRIBUTES lists the same names in the
same order, and a test reads both.

- Attribute annotations are spec.Int32Array / spec.Float32Array, not `npt.NDArray[...]`: see spec.py (TensorRT
  10.6-11.1 raise TypeError on NDArray with Python >= 3.13 or numpy >= 2.5). ONNX INTS arrive as int32, FLOAT as
  float32; `spatial_scale` is a one-element array because TensorRT <= 11.1 decodes scalar attributes in a way
  numpy >= 2.4 refuses.
- `aot_impl` (TensorRT >= 10.9) is called with *every* attribute positionally, so it declares them all, in order.
  It hands TensorRT the kernel's PTX from `plugins.aot` (shipped precompiled for the project's configurations, so
  this module imports no Triton and builds on a device without it); engines built with it run without Python. The
  kernels it handed over in this process are in `compiled_kernels`, which the engine builder records in the
  sidecar, and what it refused in `refusals`.
- `impl` (JIT: Python, PyTorch and Triton at run time, imported when called) serves 10.6-10.8; when both exist the
  builder asks for AOT with PREFER_AOT_PYTHON_PLUGINS.
"""

# No `from __future__ import annotations` here: tensorrt.plugin validates these functions' annotations as real
# types (typing.Tuple/List/Union, as in NVIDIA's samples), and postponed annotations would turn them into strings.
import functools
from typing import List, Tuple, Union

import tensorrt as trt
import tensorrt.plugin as trtp

from srg_deploy.errors import SRGError
from srg_deploy.plugins.aot import AotKernel, aot_kernel
from srg_deploy.plugins.spec import PLUGIN_ID, Float32Array, Int32Array
from srg_deploy.tensorrt_env import driver_cuda_version, import_cudart, max_ptx_isa

_DTYPES = {trt.DataType.FLOAT: "fp32", trt.DataType.HALF: "fp16"}
compiled_kernels: List[AotKernel] = []  # what aot_impl handed TensorRT in this process, in order
refusals: List[SRGError] = []  # what aot_impl refused: TensorRT only logs a callback's exception, the builder re-raises


@functools.lru_cache(maxsize=1)
def _driver_ptx_isa() -> int:
    """The newest PTX ISA this machine's driver loads: the engine's kernel must not be newer."""
    return max_ptx_isa(driver_cuda_version(import_cudart()))


@trtp.register(PLUGIN_ID)
def roi_pool_desc(
    features: trtp.TensorDesc,
    rois: trtp.TensorDesc,
    pooled_shape: Int32Array,
    spatial_scale: Float32Array,
) -> trtp.TensorDesc:
    """[B,C,H,W] features and [R,5] rois -> [R,C,PH,PW] in the features' type."""
    ph, pw = (int(v) for v in pooled_shape)
    return trtp.from_shape_expr((rois.shape_expr[0], features.shape_expr[1], ph, pw), dtype=features.dtype)


@trtp.autotune(PLUGIN_ID)
def roi_pool_autotune(
    features: trtp.TensorDesc, rois: trtp.TensorDesc, outputs: Tuple[trtp.TensorDesc]
) -> List[trtp.AutoTuneCombination]:
    """fp32 or fp16 features (the output follows them); rois always fp32; linear layouts."""
    return [trtp.AutoTuneCombination("FP32|FP16, FP32, FP32|FP16", "LINEAR")]


# TensorRT >= 10.9. Defined only there: its annotations name types (KernelLaunchParams) that 10.6-10.8 lack, and
# annotations are evaluated when the function is defined.
if hasattr(trtp, "aot_impl"):

    @trtp.aot_impl(PLUGIN_ID)
    def roi_pool_aot_impl(
        features: trtp.TensorDesc,
        rois: trtp.TensorDesc,
        pooled_shape: Int32Array,
        spatial_scale: Float32Array,
        outputs: Tuple[trtp.TensorDesc],
        tactic: int,
    ) -> Tuple[Union[str, bytes], Union[str, bytes], trtp.KernelLaunchParams, trtp.SymExprs]:
        """PTX of the Triton kernel with pooled size and scale baked in (TensorRT's AOT launch passes only tensors and
        int32 scalars: R, C, H, W, between the inputs and the output), no newer than this machine's driver loads."""
        ph, pw = (int(v) for v in pooled_shape)
        try:
            kernel = aot_kernel(
                _DTYPES[features.dtype], (ph, pw), float(spatial_scale[0]), max_ptx_isa=_driver_ptx_isa()
            )
        except SRGError as e:
            refusals.append(e)
            raise
        compiled_kernels.append(kernel)
        num_rois, channels = rois.shape_expr[0], features.shape_expr[1]
        launch = trtp.KernelLaunchParams()
        launch.grid_x = trtp.max(num_rois, 1)  # a zero-size grid is a launch error; the kernel returns for r >= R
        launch.grid_y = trtp.cdiv(channels, kernel.block_c)
        launch.grid_z = ph * pw
        launch.block_x = kernel.num_warps * 32
        launch.shared_mem = kernel.shared
        extra_args = trtp.SymIntExprs(4)
        for k, expr in enumerate((num_rois, channels, features.shape_expr[2], features.shape_expr[3])):
            extra_args[k] = trtp.SymInt32(expr)
        return kernel.name, kernel.ptx, launch, extra_args


@trtp.impl(PLUGIN_ID)
def roi_pool_impl(
    features: trtp.Tensor,
    rois: trtp.Tensor,
    pooled_shape: Int32Array,
    spatial_scale: Float32Array,
    outputs: Tuple[trtp.Tensor],
    stream: int,
) -> None:
    """JIT path (needs Python, PyTorch and Triton at run time): the same kernel launched through Triton's runtime."""
    import torch

    from srg_deploy.plugins.roi_pool_kernel import BLOCK_C, BLOCK_W, NUM_WARPS, grid, roi_pool_kernel

    ph, pw = (int(v) for v in pooled_shape)
    x = torch.as_tensor(features, device="cuda")
    r = torch.as_tensor(rois, device="cuda")
    out = torch.as_tensor(outputs[0], device="cuda")
    if r.shape[0] == 0:
        return
    with torch.cuda.stream(torch.cuda.ExternalStream(stream)):
        roi_pool_kernel[grid(r.shape[0], x.shape[1], ph, pw)](
            x, r, r.shape[0], x.shape[1], x.shape[2], x.shape[3], out,
            SPATIAL_SCALE=float(spatial_scale[0]), PH=ph, PW=pw, BLOCK_C=BLOCK_C, BLOCK_W=BLOCK_W, num_warps=NUM_WARPS,
        )  # fmt: skip
