"""Model Inference: serves the champion ONNX model(s) from the model registry with ONNX Runtime."""
