"""The RoI pooling plugin's identity and attributes: the one definition that the ONNX node, the ONNX local
function and the TensorRT registration all follow (tests read each of them back and compare)."""

from __future__ import annotations

PLUGIN_DOMAIN = "srg"  # ONNX domain of the node and TensorRT plugin namespace
PLUGIN_NAME = "roi_pool"
PLUGIN_VERSION = "1"
PLUGIN_ID = f"{PLUGIN_DOMAIN}::{PLUGIN_NAME}"

# Plugin attributes in registration order (TensorRT's AOT path passes them positionally).
ATTRIBUTES = ("pooled_shape", "spatial_scale")


def node_attributes(pooled_shape: list[int] | tuple[int, int], spatial_scale: float) -> dict[str, object]:
    """Attributes of an ONNX `srg::roi_pool` node: the plugin's own, then `plugin_namespace`, which tells
    TensorRT's ONNX parser to look the op up as a plugin in that namespace."""
    return {
        "pooled_shape": [int(pooled_shape[0]), int(pooled_shape[1])],
        "spatial_scale": float(spatial_scale),
        "plugin_namespace": PLUGIN_DOMAIN,
    }
