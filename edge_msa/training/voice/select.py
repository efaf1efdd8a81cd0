"""Grouped cross-validation of the voice head (no person in both training and
validation fold), model selection over it, and the final fit.

Rows come from two corpora (``corpus``: "ravdess" or "emodb"), each person a
group (``groups``: "ravdess15", "03"). Fold i holds out the i-th block of
RAVDESS actors and the i-th block of EmoDB speakers (:func:`group_folds`), so
one fit scores both corpora. A setting's score is the mean of the two
corpora's per-person UAR means (one corpus when the other is absent).
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edge_msa.data.metrics import classification_metrics
from edge_msa.data.voice_corpus import balanced_weights, group_folds
from edge_msa.training.voice.features import C_GRID, KEEP_MARGIN, SELECT_CONTEXTS, features, log
from edge_msa.types import VOICE_EMOTIONS

CORPORA = ("ravdess", "emodb")


def _fit_path(x_train, y_train, w_train, c_grid):
    """One scaler, then a logistic regression per C, warm-started along the
    grid (ascending): the fits of one fold share most of their iterations."""
    from copy import deepcopy

    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(x_train)
    z = scaler.transform(x_train)
    lr = LogisticRegression(max_iter=3000, warm_start=True)
    out = {}
    for c in sorted(c_grid):
        lr.set_params(C=c)
        lr.fit(z, y_train, sample_weight=w_train)
        out[c] = make_pipeline(scaler, deepcopy(lr))
    return out


def make_model(c: float):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=3000))


def _train(x, y, w, rows, x_aug):
    """The rows' features, labels and weights and their augmented views (training only)."""
    xs = [x[rows], *(a[rows] for a in x_aug)]
    n = len(xs)
    return np.concatenate(xs), np.concatenate([y[rows]] * n), np.concatenate([w[rows]] * n)


def corpus_scores(y, probs, groups, corpus) -> dict:
    """Per corpus: mean per-person UAR, pooled UAR, accuracy, per-class recall."""
    out = {}
    for name in CORPORA:
        rows = corpus == name
        if not rows.any():
            continue
        truth = [VOICE_EMOTIONS[i] for i in y[rows]]
        pooled = classification_metrics(truth, probs[rows])
        per = {}
        for g in sorted(set(groups[rows])):
            sel = groups == g
            per[g] = classification_metrics([VOICE_EMOTIONS[i] for i in y[sel]], probs[sel])["uar"]
        pred = probs[rows].argmax(1)
        recall = {
            VOICE_EMOTIONS[k]: round(float(np.mean(pred[y[rows] == k] == k)), 4)
            for k in range(len(VOICE_EMOTIONS))
            if (y[rows] == k).any()
        }
        out[name] = {
            "uar_mean": float(np.mean(list(per.values()))),
            "uar_pooled": pooled["uar"],
            "accuracy": pooled["accuracy"],
            "valence_accuracy": pooled["valence_accuracy"],
            "uar_per_speaker": per,
            "recall": recall,
        }
    return out


def score_of(scores: dict) -> float:
    return float(np.mean([s["uar_mean"] for s in scores.values()]))


def grouped_cv(
    x, y, groups, corpus, c_grid, x_aug=(), folds: int = 6, balance: bool = True
) -> dict:
    """Out-of-fold probabilities per C; augmented views join training folds only."""
    fold = group_folds(groups, corpus, folds)
    probs = {c: np.zeros((len(y), len(VOICE_EMOTIONS))) for c in c_grid}
    for f in np.unique(fold):
        test = fold == f
        w = balanced_weights(y[~test], corpus[~test], balance)
        w_all = np.zeros(len(y))
        w_all[~test] = w
        for c, model in _fit_path(*_train(x, y, w_all, ~test, x_aug), c_grid).items():
            probs[c][np.ix_(test, model[1].classes_)] = model.predict_proba(x[test])
    results = {}
    for c in c_grid:
        scores = corpus_scores(y, probs[c], groups, corpus)
        results[c] = {"score": score_of(scores), "corpora": scores, "probs": probs[c]}
    return results


def nested_cv(
    x, y, groups, corpus, c_grid, x_aug=(), folds: int = 6, balance: bool = True
) -> float:
    """Outer-fold score with C chosen by an inner grouped CV on the training
    folds only: the honest estimate, free of the selection on the outer folds."""
    fold = group_folds(groups, corpus, folds)
    probs = np.zeros((len(y), len(VOICE_EMOTIONS)))
    for f in np.unique(fold):
        inner = fold != f
        res = grouped_cv(
            x[inner], y[inner], groups[inner], corpus[inner], c_grid,
            [a[inner] for a in x_aug], folds - 1, balance,
        )
        best = max(c_grid, key=lambda c: res[c]["score"])
        model = _fit(make_model(best), x, y, corpus, inner, x_aug, balance)
        probs[np.ix_(~inner, model[1].classes_)] = model.predict_proba(x[~inner])
        log(f"  nested: fold {f} C={best}")
    return score_of(corpus_scores(y, probs, groups, corpus))


def select(data, y, groups, corpus, args: SimpleNamespace, aug_data=()) -> dict:
    """Prosody, context K and C by grouped CV; ``c`` (with ``prosody`` and
    ``context``) fixes the setting for quick runs."""
    c_grid = C_GRID if args.c is None else (args.c,)
    prosodies = (False, True) if args.c is None else (args.prosody,)
    contexts = SELECT_CONTEXTS if args.context is None else (args.context,)
    variants = {}
    for p in prosodies:
        for k in contexts:
            x = features(data, p, k)
            x_aug = [features(a, p, k) for a in aug_data]
            res = grouped_cv(
                x, y, groups, corpus, c_grid, x_aug, args.folds, args.balance_corpora
            )
            for c in c_grid:
                parts = " ".join(
                    f"{n} {s['uar_mean']:.4f}" for n, s in res[c]["corpora"].items()
                )
                log(f"prosody={p!s:5} context={k:<3} C={c:<5} UAR {res[c]['score']:.4f} ({parts})")
            best = max(c_grid, key=lambda c: res[c]["score"])
            variants[(p, k)] = (best, res[best])
    # The simplest variant unless a richer one beats it by KEEP_MARGIN.
    order = sorted(variants, key=lambda v: (v[0], v[1]))
    chosen_key = order[0]
    for v in order[1:]:
        if variants[v][1]["score"] >= variants[chosen_key][1]["score"] + KEEP_MARGIN:
            chosen_key = v
    c, chosen = variants[chosen_key]
    log(f"chosen: prosody={chosen_key[0]} context={chosen_key[1]} C={c} UAR {chosen['score']:.4f}")
    table = {
        f"prosody={p},context={k}": {
            "C": vc,
            "score": round(vr["score"], 4),
            **{f"{n}_uar_mean": round(s["uar_mean"], 4) for n, s in vr["corpora"].items()},
        }
        for (p, k), (vc, vr) in variants.items()
    }
    return {
        "prosody": chosen_key[0],
        "context": chosen_key[1],
        "C": c,
        "chosen": chosen,
        "variants": table,
    }


def _fit(model, x, y, corpus, rows, x_aug, balance: bool):
    w = np.zeros(len(y))
    w[rows] = balanced_weights(y[rows], corpus[rows], balance)
    xt, yt, wt = _train(x, y, w, rows, x_aug)
    return model.fit(xt, yt, logisticregression__sample_weight=wt)


def fit(data, y, corpus, sel: dict, aug_data=(), balance: bool = True):
    p, k = sel["prosody"], sel["context"]
    x_aug = [features(a, p, k) for a in aug_data]
    rows = np.ones(len(y), bool)
    return _fit(make_model(sel["C"]), features(data, p, k), y, corpus, rows, x_aug, balance)
