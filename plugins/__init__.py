"""RoI max pooling: the Triton kernel, its torch entry point and its TensorRT plugin. Installed as
`srg_deploy.plugins`.

`roi_pool` is imported on first use (it needs torch and Triton), so `srg_deploy.plugins.spec` — the plugin's
identity, which the exporter and the op-coverage check read — costs nothing. `srg_deploy.plugins.trt_plugin`
registers the TensorRT plugin and needs TensorRT."""

from __future__ import annotations

from typing import Any

__all__ = ["roi_pool"]


def __getattr__(name: str) -> Any:
    if name == "roi_pool":
        from srg_deploy.plugins.roi_pool import roi_pool

        # Importing the submodule bound the package attribute `roi_pool` to the module; `from srg_deploy.plugins
        # import roi_pool` reads that attribute after this call, so rebind it to the function.
        globals()["roi_pool"] = roi_pool
        return roi_pool
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
