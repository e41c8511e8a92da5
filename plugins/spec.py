"""The RoI pooling plugin's identity and attributes: the one definition that the ONNX node, the ONNX local
function and the TensorRT registration all follow (tests read each of them back and compare)."""

from __future__ import annotations

from typing import Any

import numpy as np

PLUGIN_DOMAIN = "srg"  # ONNX domain of the node and TensorRT plugin namespace
PLUGIN_NAME = "roi_pool"
PLUGIN_VERSION = "1"
PLUGIN_ID = f"{PLUGIN_DOMAIN}::{PLUGIN_NAME}"

# Plugin attributes in registration order (TensorRT's AOT path passes them positionally).
ATTRIBUTES = ("pooled_shape", "spatial_scale")


class Int32Array:
    """Annotation of an int32 array plugin attribute (ONNX INTS), accepted by `tensorrt.plugin` 10.6 to 11.x.

    The documented `numpy.typing.NDArray[np.int32]` breaks registration on TensorRT 10.6 to 11.1: `_validate.py`
    calls `issubclass()` on every annotation, which raises TypeError for a generic alias on Python >= 3.13, and for
    numpy >= 2.5's NDArray (a PEP 695 alias) on any Python; 11.2 guards the call with `inspect.isclass`.
    `tensorrt.plugin` recognizes an array annotation by `__origin__ is np.ndarray` and reads the dtype from
    `__args__[1]`, so a plain class that carries both passes every version's checks as NDArray[int32] does,
    whatever numpy and Python make of generics."""

    __origin__ = np.ndarray
    __args__ = (Any, np.dtype[np.int32])


class Float32Array:
    """Annotation of a float32 array plugin attribute (ONNX FLOAT, one element), for the reason `Int32Array` gives.
    An array and not `float`: TensorRT up to 11.1 decodes scalar attributes with `float(array)`, which numpy >= 2.4
    refuses for a one-element 1-D array (11.2 decodes `float(array[0])`)."""

    __origin__ = np.ndarray
    __args__ = (Any, np.dtype[np.float32])


def node_attributes(pooled_shape: list[int] | tuple[int, int], spatial_scale: float) -> dict[str, object]:
    """Attributes of an ONNX `srg::roi_pool` node: the plugin's own, then `plugin_namespace`, which tells
    TensorRT's ONNX parser to look the op up as a plugin in that namespace."""
    return {
        "pooled_shape": [int(pooled_shape[0]), int(pooled_shape[1])],
        "spatial_scale": float(spatial_scale),
        "plugin_namespace": PLUGIN_DOMAIN,
    }
