"""The model server: one model's production version (and a canary beside it) over HTTP, scored by ONNX Runtime."""
