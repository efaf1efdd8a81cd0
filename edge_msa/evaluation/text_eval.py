"""Evaluate the text sentiment model on a labelled CSV file."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_msa.evaluation.labels import read_labels, split_names
from edge_msa.evaluation.metrics import regression_metrics

# Printed in this order; anything else in the dict follows alphabetically.
_ORDER = (
    "n",
    "mae",
    "corr",
    "acc2",
    "acc2_has0",
    "f1",
    "acc5",
    "acc7",
    "within_1std",
    "within_2std",
)


def _coverage(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    # Calibration check (DESIGN.md §6): a calibrated Gaussian puts about
    # 68.3% / 95.4% of labels inside ±1σ / ±2σ.
    err = np.abs(truth - mean)
    return {
        "within_1std": float(np.mean(err <= std)),
        "within_2std": float(np.mean(err <= 2.0 * std)),
    }


def evaluate_text(
    labels_path: str | Path,
    split: str | None = None,
    model_dir: str | Path | None = None,
    backend: str = "cpu",
    threads: int = 1,
) -> dict[str, object]:
    """Run the text encoder over ``labels_path`` rows of ``split`` (all if None).

    Returns the MMSA regression metrics plus ``within_1std``/``within_2std``,
    ``split``, ``file`` and ``model``.
    """
    from edge_msa.encoders.text import TextEncoder, default_model_dir

    rows = read_labels(labels_path, split)
    if not rows:
        raise ValueError(
            f"{labels_path}: no rows with split {split!r}; "
            f"splits present: {', '.join(split_names(labels_path))}"
        )
    encoder = TextEncoder(Path(model_dir) if model_dir else default_model_dir(), backend, threads)
    preds = encoder.predict_batch([r.text for r in rows])
    mean = np.array([p.mean for p in preds])
    std = np.array([p.std for p in preds])
    truth = np.array([r.label for r in rows])
    result: dict[str, object] = {"file": str(labels_path), "split": split or "all"}
    result["model"] = encoder.name
    result.update(regression_metrics(mean, truth))
    result.update(_coverage(mean, std, truth))
    return result


def _fmt(value: object) -> str:
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() and abs(value) >= 1 else f"{value:.4f}"
    return str(value)


def format_table(metrics: dict) -> str:
    """A two-column aligned table; header lines for file, split and model."""
    header_keys = [k for k in ("file", "split", "model") if k in metrics]
    keys = [k for k in _ORDER if k in metrics]
    keys += sorted(k for k in metrics if k not in keys and k not in header_keys)
    width = max((len(k) for k in header_keys + keys), default=0)
    lines = [f"{k:<{width}}  {metrics[k]}" for k in header_keys]
    if header_keys:
        lines.append("-" * (width + 10))
    lines += [f"{k:<{width}}  {_fmt(metrics[k]):>8}" for k in keys]
    return "\n".join(lines)
