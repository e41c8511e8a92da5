"""srg-deploy: PyTorch -> ONNX -> TensorRT deployment of the GCN-LSTM semantic relationship graph model."""

__version__ = "0.1.0"
