"""The one thing pyproject.toml cannot say: the package list.

``models/`` is installed as the package ``edge_msa_models`` (see
``edge_msa.models``), a name that is not its folder's. pyproject.toml takes
either a discovery rule or a fixed list, not both; the rule keeps new
``edge_msa`` subpackages included without editing a list. Everything else is
in pyproject.toml.
"""

from setuptools import find_packages, setup

setup(
    packages=[*find_packages(include=["edge_msa", "edge_msa.*"]), "edge_msa_models"],
    package_dir={"edge_msa_models": "models"},
)
