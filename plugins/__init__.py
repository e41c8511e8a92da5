"""RoI max pooling: the Triton kernel and its TensorRT plugin. Installed as `srg_deploy.plugins`."""
