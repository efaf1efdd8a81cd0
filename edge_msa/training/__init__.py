"""Every trainer: ``edge-msa train text|voice|face|fusion --config FILE``.

One sub-package per model (``text``, ``voice``, ``face``, ``fusion``), each
with a TOML config (``configs/<kind>.toml`` reproduces the shipped model);
:mod:`edge_msa.training.run` dispatches, :mod:`edge_msa.training.manifest`
writes every manifest. Training may import ``edge_msa.data`` and
``edge_msa.evaluation``; neither imports training.
"""
