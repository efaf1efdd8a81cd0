"""PNG plots for `edge-msa eval ... --plot DIR`; matplotlib is imported only when a plot
is asked for (:mod:`edge_msa.plots`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_msa.plots import pyplot as _pyplot
from edge_msa.plots import save as _save


def confusion_png(confusion, labels: list[str], title: str, path: Path) -> Path:
    """Row-normalised confusion matrix (rows: truth), counts written in the cells."""
    plt = _pyplot()
    counts = np.asarray(confusion, dtype=float)
    rates = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    fig, ax = plt.subplots(figsize=(6, 5))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title)
    for i in range(len(labels)):
        for j in range(len(labels)):
            colour = "white" if rates[i, j] > 0.5 else "black"
            ax.text(j, i, int(counts[i, j]), ha="center", va="center", color=colour, fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def calibration_png(mean, std, truth, path: Path) -> Path:
    """Observed share of labels within ±kσ against the Gaussian's, k in 0.1..3."""
    from math import erf, sqrt

    plt = _pyplot()
    z = np.abs(np.asarray(truth) - np.asarray(mean)) / np.asarray(std)
    ks = np.linspace(0.1, 3.0, 30)
    fig, ax = plt.subplots(figsize=(5, 4))
    ax.plot(
        [erf(k / sqrt(2)) for k in ks], [np.mean(z <= k) for k in ks], "o-", ms=3, label="model"
    )
    ax.plot([0, 1], [0, 1], "k--", lw=1, label="calibrated")
    ax.set_xlabel("expected coverage (Gaussian, ±kσ)")
    ax.set_ylabel("observed coverage")
    ax.set_title(f"calibration (n={len(z)})")
    ax.legend()
    return _save(fig, path)


def robustness_png(curve: dict[str, dict], path: Path, others: dict | None = None) -> Path:
    """MAE and Acc-2 against the random missing rate r."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.5))
    for name, c in {"fusion": curve, **(others or {})}.items():
        rates = [float(r) for r in c]
        for ax, key in zip(axes, ("mae", "acc2"), strict=True):
            ax.plot(rates, [m[key] for m in c.values()], "o-", ms=3, label=name)
    for ax, key in zip(axes, ("MAE", "Acc-2 (non-zero)"), strict=True):
        ax.set_xlabel("missing rate r")
        ax.set_ylabel(key)
        ax.grid(alpha=0.3)
    axes[0].legend()
    return _save(fig, path)
