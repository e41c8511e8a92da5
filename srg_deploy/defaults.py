"""Defaults that the library and the command line share, in a module that imports nothing, so that
`srg-deploy --help` shows them without loading numpy and a default is written once."""

TOP_K = 20  # triplets per frame in a scene-graph record
ONNX_OPSET = 17  # the opset `export` writes unless told otherwise (17..20 are supported)
VAL_IMAGES = 5000  # the field's VG-SGG convention: the first 5000 images of split 0 are val, the rest train
# The TensorRT optimization profile build-engine makes (HxW image bounds; boxes and pairs per frame): opt is what
# TensorRT tunes for, max what the engine accepts (2016 = every pair of 64 boxes).
ENGINE_MIN_SIZE = "64x64"
ENGINE_OPT_SIZE = "600x800"
ENGINE_MAX_SIZE = "1000x1000"
ENGINE_OPT_BOXES = 36
ENGINE_MAX_BOXES = 64
ENGINE_OPT_PAIRS = 630
ENGINE_MAX_PAIRS = 2016
# OpenVINO (`--backend openvino`): the inference precision and device when none is asked for. fp32 on the CPU is
# what every other backend runs; bf16, f16 and other devices are explicit requests (docs/openvino.md).
OPENVINO_PRECISION = "fp32"
OPENVINO_DEVICE = "CPU"
