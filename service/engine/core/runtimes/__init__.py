"""Encoder runtimes for the vision tower: eager PyTorch, ONNX Runtime, OpenVINO (fp32,
bf16, INT8), the parity gate that admits them, and selection by measurement."""
