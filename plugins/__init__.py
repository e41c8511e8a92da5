"""RoI max pooling: the Triton kernel, its torch entry point and its TensorRT plugin. Installed as
`srg_deploy.plugins`.

`roi_pool` imports torch and Triton only when called, so importing this package (the runtime and the exporter read
`srg_deploy.plugins.spec`, the plugin's identity) costs nothing. `srg_deploy.plugins.trt_plugin` registers the
TensorRT plugin and needs TensorRT."""

from srg_deploy.plugins.roi_pool import roi_pool

__all__ = ["roi_pool"]
