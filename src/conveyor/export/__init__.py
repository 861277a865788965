"""From a trained model to what runs elsewhere: ONNX graphs with parity checks, and int8 edge bundles."""
