"""The runtime: video, detection, crops, ONNX inference and overlays; no Qt, no torch."""
