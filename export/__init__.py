"""ONNX export, fp16 conversion, export checks and TensorRT engine builds. Installed as `srg_deploy.export`."""
