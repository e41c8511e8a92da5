"""RoI max pooling: the Triton kernel, its torch entry point and its TensorRT plugin. Installed as
`srg_deploy.plugins`. Importing this package needs Triton but not TensorRT; `srg_deploy.plugins.trt_plugin`
registers the TensorRT plugin and needs TensorRT."""

from srg_deploy.plugins.roi_pool import roi_pool

__all__ = ["roi_pool"]
