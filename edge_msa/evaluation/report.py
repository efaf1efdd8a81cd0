"""Evaluation output: coverage of the predicted intervals and the printed table."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_msa.data.labels import read_labels, split_names
from edge_msa.data.metrics import regression_metrics

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
    "coverage_1sigma",
    "coverage_2sigma",
)


def coverage(mean: np.ndarray, std: np.ndarray, truth: np.ndarray) -> dict[str, float]:
    """Calibration (DESIGN.md §6): a calibrated Gaussian puts about 68.3% / 95.4%
    of labels inside ±1σ / ±2σ."""
    err = np.abs(np.asarray(truth) - np.asarray(mean))
    return {
        "coverage_1sigma": float(np.mean(err <= std)),
        "coverage_2sigma": float(np.mean(err <= 2.0 * np.asarray(std))),
    }


def scored(mean, std, truth) -> dict[str, float]:
    """MMSA metrics plus coverage."""
    return {**regression_metrics(mean, truth), **coverage(mean, std, truth)}


def rows_of(labels_path: str | Path, split: str | None):
    rows = read_labels(labels_path, split)
    if not rows:
        raise ValueError(
            f"{labels_path}: no rows with split {split!r}; "
            f"splits present: {', '.join(split_names(labels_path))}"
        )
    return rows


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
