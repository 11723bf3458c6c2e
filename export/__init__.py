"""Model contracts, ONNX export and engine builds (installed as ``refsd_trt.export``)."""
