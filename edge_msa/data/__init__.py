"""Data both evaluation and training read: label files, metrics, the voice
corpora, the spoken and joint corpora and their feature banks, cross-fitting
folds.

Layers: runtime <- data <- evaluation <- training. Nothing here imports
``edge_msa.evaluation`` or ``edge_msa.training``.
"""
