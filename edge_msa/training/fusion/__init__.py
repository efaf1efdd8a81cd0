"""The fusion model's training: ``edge-msa train fusion --config configs/fusion.toml``.

config (TOML -> :class:`TrainConfig`), data (joint corpus or MMSA pickle),
flows (two flows per batch, losses), loop (epochs, selection, export call),
net (the PyTorch model), export (ONNX, INT8, temperature, manifest), mmsa.
"""
