"""RoI max pooling, installed as `srg_deploy.plugins`: the Triton kernel (`roi_pool_kernel`), its torch entry point
(`roi_pool`), the kernel as TensorRT's AOT plugins take it (`aot`: PTX shipped precompiled in `ptx/`, written by
`generate_ptx`), the TensorRT plugin (`trt_plugin`, needs TensorRT) and the plugin's identity (`spec`), which the
exporter and the engine builder read.

`roi_pool` imports torch and Triton only when called, and `aot` imports Triton only for a variant it does not ship,
so importing this package costs nothing and a device builds engines without Triton."""

from srg_deploy.plugins.roi_pool import roi_pool

__all__ = ["roi_pool"]
