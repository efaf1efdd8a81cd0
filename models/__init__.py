"""The shipped models, installed as the package ``edge_msa_models``.

This folder is the package: ``pyproject.toml``/``setup.py`` map ``edge_msa_models``
onto ``models/``, so a wheel carries every model folder and an editable install
(``pip install -e .``) finds this very folder. Find it through
:mod:`edge_msa.models`, never by path.
"""
