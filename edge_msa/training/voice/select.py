"""Leave-one-speaker-out model selection of the voice head, and the final fit."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from edge_msa.data.metrics import classification_metrics
from edge_msa.training.voice.features import (
    C_GRID,
    CONTEXT_GRID,
    KEEP_MARGIN,
    features,
    log,
    make_model,
    training_rows,
)
from edge_msa.types import VOICE_EMOTIONS


def loso(
    x: np.ndarray,
    y: np.ndarray,
    speakers: np.ndarray,
    extra: tuple[np.ndarray, np.ndarray] | None,
    c: float,
    x_aug: list[np.ndarray] = (),
) -> dict:
    """Leave-one-EmoDB-speaker-out; ``extra`` data and the training speakers'
    augmented views (``x_aug``, row-aligned with ``x``) join every training fold."""
    probs = np.zeros((len(y), len(VOICE_EMOTIONS)))
    per_speaker = {}
    for speaker in sorted(set(speakers)):
        test = speakers == speaker
        model = make_model(c).fit(*training_rows(x, y, ~test, extra, x_aug))
        probs[test] = model.predict_proba(x[test])
        truth = [VOICE_EMOTIONS[i] for i in y[test]]
        per_speaker[speaker] = classification_metrics(truth, probs[test])["uar"]
    pooled_metrics = classification_metrics([VOICE_EMOTIONS[i] for i in y], probs)
    return {
        "uar_mean": float(np.mean(list(per_speaker.values()))),
        "uar_per_speaker": per_speaker,
        "accuracy": pooled_metrics["accuracy"],
        "valence_accuracy": pooled_metrics["valence_accuracy"],
        "uar_pooled": pooled_metrics["uar"],
        "probs": probs,
    }


def nested_loso(x, y, speakers, extra, grid, x_aug=()) -> float:
    """Mean outer-fold UAR with C chosen by an inner LOSO on the training speakers
    only: the honest estimate, free of the selection on the outer folds."""
    scores = []
    for speaker in sorted(set(speakers)):
        inner = speakers != speaker
        aug_in = [a[inner] for a in x_aug]
        best = max(
            grid,
            key=lambda c: loso(x[inner], y[inner], speakers[inner], extra, c, aug_in)["uar_mean"],
        )
        model = make_model(best).fit(*training_rows(x, y, inner, extra, x_aug))
        truth = [VOICE_EMOTIONS[i] for i in y[~inner]]
        scores.append(classification_metrics(truth, model.predict_proba(x[~inner]))["uar"])
        log(f"  nested: speaker {speaker} C={best} uar={scores[-1]:.4f}")
    return float(np.mean(scores))


def select(e_data, y, speakers, r_data, y_r, args: SimpleNamespace, aug_data=()) -> dict:
    """Prosody, RAVDESS, context K and C by LOSO over ``speakers``; ``c`` (with
    ``prosody``, ``ravdess``, ``context``) fixes the setting for quick runs."""
    c_grid = C_GRID if args.c is None else (args.c,)
    options = [(p, rv) for p in (False, True) for rv in (False, True)]
    if args.c is not None:
        options = [(args.prosody, args.ravdess)]
    grid_results = {}
    for use_prosody, use_ravdess in options:
        x = features(e_data, use_prosody)
        x_aug = [features(a, use_prosody) for a in aug_data]
        extra = (features(r_data, use_prosody), y_r) if use_ravdess and len(y_r) else None
        for c in c_grid:
            r = loso(x, y, speakers, extra, c, x_aug)
            grid_results[(use_prosody, use_ravdess, 0, c)] = r
            log(
                f"prosody={use_prosody!s:5} ravdess={use_ravdess!s:5} C={c:<6} "
                f"LOSO UAR {r['uar_mean']:.4f} acc {r['accuracy']:.4f} "
                f"val3 {r['valence_accuracy']:.4f}"
            )

    def best_of(p: bool, rv: bool, k: int) -> tuple[float, dict]:
        c = max(c_grid, key=lambda c: grid_results[(p, rv, k, c)]["uar_mean"])
        return c, grid_results[(p, rv, k, c)]

    variants = {(*option, 0): best_of(*option, 0) for option in options}
    use_prosody, use_ravdess = options[0]
    if len(options) > 1:
        use_ravdess = variants[(False, True, 0)][1]["uar_mean"] >= (
            variants[(False, False, 0)][1]["uar_mean"] - KEEP_MARGIN
        )
        use_prosody = variants[(True, use_ravdess, 0)][1]["uar_mean"] >= (
            variants[(False, use_ravdess, 0)][1]["uar_mean"] + KEEP_MARGIN
        )
    # Then the context mean, on top of the chosen prosody and RAVDESS setting.
    contexts = [k for k in CONTEXT_GRID if k] if args.context is None else [args.context]
    for k in [k for k in contexts if k]:
        x = features(e_data, use_prosody, k)
        x_aug = [features(a, use_prosody, k) for a in aug_data]
        extra = (features(r_data, use_prosody, k), y_r) if use_ravdess and len(y_r) else None
        for c in c_grid:
            r = loso(x, y, speakers, extra, c, x_aug)
            grid_results[(use_prosody, use_ravdess, k, c)] = r
            log(f"context={k:<4} C={c:<6} LOSO UAR {r['uar_mean']:.4f} acc {r['accuracy']:.4f}")
        variants[(use_prosody, use_ravdess, k)] = best_of(use_prosody, use_ravdess, k)
    context = 0
    if args.context is not None:
        context = args.context
    else:
        base = variants[(use_prosody, use_ravdess, 0)][1]["uar_mean"]
        best = max(contexts, key=lambda k: variants[(use_prosody, use_ravdess, k)][1]["uar_mean"])
        if variants[(use_prosody, use_ravdess, best)][1]["uar_mean"] >= base + KEEP_MARGIN:
            context = best
    c, chosen = variants[(use_prosody, use_ravdess, context)]
    log(
        f"chosen: prosody={use_prosody} ravdess={use_ravdess} context={context} C={c} "
        f"LOSO UAR {chosen['uar_mean']:.4f}"
    )
    table = {
        f"prosody={p},ravdess={rv},context={k}": {"C": vc, "uar_mean": vr["uar_mean"]}
        for (p, rv, k), (vc, vr) in variants.items()
    }
    return {
        "prosody": use_prosody,
        "ravdess": use_ravdess,
        "context": context,
        "C": c,
        "chosen": chosen,
        "variants": table,
    }


def fit(e_data, y, r_data, y_r, sel: dict, aug_data=()):
    p, k = sel["prosody"], sel["context"]
    extra = (features(r_data, p, k), y_r) if sel["ravdess"] else None
    x_aug = [features(a, p, k) for a in aug_data]
    rows = np.ones(len(y), bool)
    return make_model(sel["C"]).fit(*training_rows(features(e_data, p, k), y, rows, extra, x_aug))
