"""Where the shipped models live, and their manifests."""

from __future__ import annotations

import json
import os
from pathlib import Path


def model_dir(name: str) -> Path:
    """``$EDGE_MSA_MODELS/<name>`` when set, else ``<repo>/models/<name>``."""
    root = os.environ.get("EDGE_MSA_MODELS")
    return (Path(root) if root else Path(__file__).resolve().parents[1] / "models") / name


def load_manifest(folder: Path, script: str) -> dict:
    """The folder's manifest.json; a missing one names the script that makes it."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(
            f"{path} not found: the model folder must hold manifest.json and its model files "
            f"(made by {script})"
        )
    return json.loads(path.read_text(encoding="utf-8"))
