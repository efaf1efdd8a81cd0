"""Plot helpers below every layer: the matplotlib guard and the latency plot.

``edge-msa bench --plot`` (runtime) and ``edge-msa eval --plot`` (evaluation)
both draw; the runtime may not import evaluation, so what both need is here.
matplotlib is imported only when a plot is asked for.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


def pyplot():
    """matplotlib.pyplot on the Agg backend, or one line naming the extra to install."""
    try:
        import matplotlib

        matplotlib.use("Agg")  # no display on a kiosk or in CI
        import matplotlib.pyplot as plt
    except ImportError:
        raise RuntimeError("--plot needs matplotlib: pip install 'edge-msa[dev]'") from None
    return plt


def save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path


def latency_png(stage_ms: dict[str, list[float]], path: Path) -> Path:
    """Milliseconds per stage on one log axis (box: quartiles, whiskers: 5-95 %),
    end of utterance to result first."""
    plt = pyplot()
    order = ["total", *sorted(k for k in stage_ms if k != "total")]
    names = [k for k in order if len(stage_ms.get(k, ()))][::-1]
    values = [np.maximum(np.asarray(stage_ms[k], float), 0.01) for k in names]
    labels = ["end of utterance to result" if k == "total" else k for k in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1.2))
    ax.boxplot(values, vert=False, whis=(5, 95), showfliers=False)
    ax.set_yticks(range(1, len(names) + 1), labels)
    ax.set_xscale("log")
    ax.set_xlabel("milliseconds per call (box: quartiles, whiskers: 5-95 %)")
    ax.grid(axis="x", which="both", alpha=0.3)
    return save(fig, path)
