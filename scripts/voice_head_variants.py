"""Grouped-CV score of voice-head variants on the shipped features (an experiment,
not the training): the logistic regression that ships, a one-hidden-layer MLP, and
EmoDB's share of the sample weight.

Same rows, folds, augmented views and score as `edge-msa train voice` (the
held-out people of configs/voice.toml are left out, as its selection does); the
embeddings come from the training's cache, so run the training once first:

    OMP_NUM_THREADS=1 edge-msa train voice --config configs/voice.toml --set out=runs/voice
    OMP_NUM_THREADS=1 python scripts/voice_head_variants.py
"""

from __future__ import annotations

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from edge_msa.data.voice_augment import AUGMENTS
from edge_msa.data.voice_corpus import balanced_weights, group_folds
from edge_msa.training.settings import expand, read_toml
from edge_msa.training.voice.config import VoiceConfig
from edge_msa.training.voice.features import features
from edge_msa.training.voice.run import _corpora
from edge_msa.training.voice.select import corpus_scores, score_of
from edge_msa.types import VOICE_EMOTIONS

CONTEXT = 50  # the shipped setting (no prosody)
HEADS = {
    "lr C=0.01 (shipped)": lambda: LogisticRegression(C=0.01, max_iter=3000),
    "lr C=0.03": lambda: LogisticRegression(C=0.03, max_iter=3000),
    "mlp 256, alpha 1": lambda: MLPClassifier((256,), alpha=1.0, max_iter=200, random_state=0),
    "mlp 512, alpha 3": lambda: MLPClassifier((512,), alpha=3.0, max_iter=200, random_state=0),
}
EMODB_SHARES = (None, 0.7, 0.9)  # None: each class of each corpus the same weight (shipped)


def weights(y: np.ndarray, corpus: np.ndarray, emodb_share: float | None) -> np.ndarray:
    w = balanced_weights(y, corpus, True)
    emodb = corpus == "emodb"
    if emodb_share is not None and emodb.any() and (~emodb).any():
        w[emodb] *= emodb_share / w[emodb].sum()
        w[~emodb] *= (1 - emodb_share) / w[~emodb].sum()
        w *= len(w) / w.sum()
    return w


def fit(make_head, x, views, y, corpus, emodb_share=None):
    """A head on the rows and their augmented views (each view repeats the weights)."""
    n = 1 + len(views)
    w = np.tile(weights(y, corpus, emodb_share), n)
    model = make_pipeline(StandardScaler(), make_head())
    head = model.steps[-1][0]
    return model.fit(np.concatenate([x, *views]), np.tile(y, n), **{f"{head}__sample_weight": w})


def probs_of(model, x) -> np.ndarray:
    out = np.zeros((len(x), len(VOICE_EMOTIONS)))
    out[:, model[-1].classes_] = model.predict_proba(x)
    return out


def grouped_cv(make_head, x, views, y, groups, corpus, folds, emodb_share=None) -> dict:
    fold = group_folds(groups, corpus, folds)
    probs = np.zeros((len(y), len(VOICE_EMOTIONS)))
    for f in np.unique(fold):
        train = fold != f
        model = fit(make_head, x[train], [v[train] for v in views], y[train], corpus[train],
                    emodb_share)
        probs[~train] = probs_of(model, x[~train])
    return corpus_scores(y, probs, groups, corpus)


def main() -> None:
    cfg = VoiceConfig(**read_toml("configs/voice.toml"))
    d = _corpora(cfg, expand(cfg.data), expand(cfg.cache), AUGMENTS)
    rest = ~np.isin(d.groups, list(cfg.holdout_speakers))
    x = features(d.data, False, CONTEXT)[rest]
    views = [features(v, False, CONTEXT)[rest] for v in d.views]
    for name, make_head in HEADS.items():
        for share in EMODB_SHARES:
            if share is not None and not name.startswith("lr"):
                continue
            s = grouped_cv(make_head, x, views, d.y[rest], d.groups[rest], d.corpus[rest],
                           cfg.folds, share)
            parts = " ".join(f"{c} {v['uar_mean']:.4f}" for c, v in s.items())
            print(f"{name:22} emodb share {share or 'balanced':8} UAR {score_of(s):.4f} ({parts})",
                  flush=True)


if __name__ == "__main__":
    main()
