"""Running a model without PyTorch: the backends (ONNX Runtime, TensorRT, and the eager one, loaded only for a
checkpoint folder), the frame predictor, the video pipeline with its sources and sinks, verification, evaluation,
batch runs on Ray and benchmarks. Installed as `srg_deploy.runtime`; docs/layers.md says what it may import.
"""
