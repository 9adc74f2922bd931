"""Training service: retrains RUL models on run-to-failure data and exports them to ONNX."""
