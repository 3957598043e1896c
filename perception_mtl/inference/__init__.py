"""Inference with a trained checkpoint: reading frames (images, folders, videos), the predictor,
overlays, side-by-side comparisons with ground truth, ONNX / torch.export graphs and their
runtime, parity checks and latency benchmarks."""
