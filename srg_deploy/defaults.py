"""Defaults that the library and the command line share, in a module that imports nothing, so that
`srg-deploy --help` shows them without loading numpy and a default is written once."""

TOP_K = 20  # triplets per frame in a scene-graph record
ONNX_OPSET = 17  # the opset `export` writes unless told otherwise (17..20 are supported)
VAL_IMAGES = 5000  # the field's VG-SGG convention: the first 5000 images of split 0 are val, the rest train
