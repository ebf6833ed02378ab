"""``aelab export``: a trained run's encoder and decoder as graphs that leave Python (ONNX)."""
