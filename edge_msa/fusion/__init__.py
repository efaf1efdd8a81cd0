"""Fusion of per-modality Gaussian estimates into one score and uncertainty."""

from edge_msa.fusion.inverse_variance import PRIOR_MEAN, PRIOR_STD, ModalityEstimate, fuse

__all__ = ["PRIOR_MEAN", "PRIOR_STD", "ModalityEstimate", "fuse"]
