"""Export a model bundle to ONNX for the light (torch-free) deployment."""
