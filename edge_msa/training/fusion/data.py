"""The fusion training's data: the joint corpus's sentences and witnesses, and
fixed validation feeds (:mod:`edge_msa.data.joint`), or an MMSA pickle."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edge_msa.training.fusion.config import SplitSpec, TrainConfig
from edge_msa.training.fusion.flows import corpus_flows


def corpus_data(cfg: TrainConfig):
    """(train Sentences, train Witnesses), {name: (Sentences, Witnesses)} for validation."""
    from edge_msa.data import banks, joint
    from edge_msa.data.labels import read_labels

    root = Path(cfg.data.root)
    check_corpus_files(cfg)
    cache = Path(cfg.data.spoken_cache) if cfg.data.spoken_cache else None
    texts = joint.TextBank()
    folded = (
        joint.FoldedTextBank([Path(d).expanduser() for d in cfg.data.text_folds])
        if cfg.data.text_folds
        else texts
    )
    voices = banks.voice_bank(root)

    def sentences(spec: SplitSpec, seed: int, bank=texts):
        rows = read_labels(root / spec.labels, spec.split)[: spec.limit]
        folder = joint.spoken_folder_for(root / spec.labels, spec.split, cache)
        out = joint.load_sentences(rows, folder, bank, seed)
        polar_from = cfg.data.meld_polar_from
        out.ranges = np.array([r.label_range(polar_from) for r in rows], np.float32).reshape(-1, 2)
        return out

    train_parts = [sentences(s, cfg.seed + i, folded) for i, s in enumerate(cfg.data.train)]
    train = concat_sentences(train_parts)
    w_train = joint.Witnesses(
        banks.face_bank(root / cfg.data.faces_train), voices, cfg.data.disagree
    )
    w_valid = joint.Witnesses(
        banks.face_bank(root / cfg.data.faces_valid), voices, cfg.data.disagree
    )
    valid = {
        f"{Path(s.labels).parent.name}_{s.split}": (sentences(s, cfg.seed), w_valid)
        for s in cfg.data.valid
    }
    real = None
    if cfg.data.real_voices is not None:
        from edge_msa.training.fusion.voices import load_real_voices

        # The shipped text model scores the clips' sentences: no text model saw them.
        real = load_real_voices(cfg, texts)
    texts.save()
    if folded is not texts:
        folded.save()
    return (train, w_train), valid, real


def check_corpus_files(cfg: TrainConfig) -> None:
    """Every input file of the joint corpus, before minutes of feature extraction;
    a missing one is one line naming its config key."""
    from edge_msa.config import ConfigError

    root = Path(cfg.data.root)
    wanted = [(f"data.train[{i}].labels", s.labels) for i, s in enumerate(cfg.data.train)]
    wanted += [(f"data.valid[{i}].labels", s.labels) for i, s in enumerate(cfg.data.valid)]
    wanted += [("data.faces_train", cfg.data.faces_train)]
    wanted += [("data.faces_valid", cfg.data.faces_valid), ("data.root (voice bank)", "emodb")]
    if cfg.data.real_voices is not None:
        wanted += [("data.real_voices.ravdess", cfg.data.real_voices.ravdess)]
    for key, rel in wanted:
        if not (root / rel).exists():
            raise ConfigError(
                f"{key}: {root / rel} not found; set data.root in the config (or EDGE_MSA_DATA) "
                "to the data sets folder"
            )


def concat_sentences(parts):
    from edge_msa.data.joint import Sentences

    offsets = np.cumsum([0] + [len(p.audio) for p in parts])[:-1]
    return Sentences(
        ids=[i for p in parts for i in p.ids],
        labels=np.concatenate([p.labels for p in parts]),
        ranges=np.concatenate([p.label_ranges() for p in parts]),
        text=np.concatenate([p.text for p in parts]),
        text_dropped=np.concatenate([p.text_dropped for p in parts]),
        speech=np.concatenate(
            [np.where(p.speech >= 0, p.speech + o, -1) for p, o in zip(parts, offsets, strict=True)]
        ),
        asr_text=np.concatenate([p.asr_text for p in parts]),
        asr_state=np.concatenate([p.asr_state for p in parts]),
        audio=[a for p in parts for a in p.audio],
        voice_probs=np.concatenate([p.voice_probs for p in parts]),
    )


def validation_feeds(S, W, cfg: TrainConfig, seed: int) -> dict[str, tuple[dict, np.ndarray]]:
    """Fixed feeds per case: ``present`` (real text + audio + vision; every row),
    ``text`` (the real transcript alone, as ``eval text``), and on the spoken rows
    ``asr`` (the ASR transcript) and ``absent`` (no text), heard as ``eval speech``
    hears them: the rendering's own voice and no face. A voice drawn to match the
    label would tell the model the answer; selecting on it rewarded trusting it."""
    rng = np.random.default_rng(seed)
    # Spoken rows first: prediction chunks without audio are then cheap.
    everyone = np.argsort(S.speech < 0, kind="stable")
    f1, f2, y, speech = corpus_flows(S, W, everyone, rng, cfg, train=False)
    only_text = np.array([1, 0, 0], np.float32)
    out = {
        "present": (f1, y),
        "text": ({**f1, "present": f1["present"] * only_text}, y),
    }
    if speech.any():
        rows = np.flatnonzero(speech)
        heard = {k: v[rows] for k, v in f2.items()}
        heard["voice"] = S.voice_probs[S.speech[everyone[rows]]]
        heard["present"] = heard["present"] * np.array([1, 1, 0], np.float32)
        out["asr"] = (heard, y[rows])
        absent = {
            **heard,
            "text": np.zeros_like(heard["text"]),
            "present": heard["present"] * np.array([0, 1, 0], np.float32),
            "simulated": np.zeros_like(heard["simulated"]),
        }
        out["absent"] = (absent, y[rows])
    return out


def training_data(cfg: TrainConfig):
    """(batcher, validation feeds, model dims) from the corpus or an MMSA pickle."""
    if cfg.data.source == "mmsa":
        from edge_msa.training.fusion.mmsa import mmsa_data

        return mmsa_data(cfg)
    (s_train, w_train), valid, real = corpus_data(cfg)
    valid_feeds = {name: validation_feeds(s, w, cfg, cfg.seed) for name, (s, w) in valid.items()}
    if real is None:

        def batcher(rows, rng):
            return corpus_flows(s_train, w_train, rows, rng, cfg, train=True)

        batcher.speech = s_train.speech >= 0
        return batcher, valid_feeds, {}
    from edge_msa.training.fusion.voices import RAVDESS_FEED
    from edge_msa.training.fusion.voices import valid_feeds as real_feeds

    v_train, v_valid = real
    if len(v_valid):
        valid_feeds[RAVDESS_FEED] = real_feeds(v_valid)
    return mixed_batcher(s_train, w_train, v_train, cfg), valid_feeds, {}


def mixed_batcher(s_train, w_train, v_train, cfg: TrainConfig):
    """A batcher over the sentences (rows 0..N-1) and the real-voice clip rows
    after them (each clip repeated as :func:`balanced_repeats` says): all
    clip rows are spoken."""
    from edge_msa.fusion.features import batch
    from edge_msa.training.fusion.flows import corpus_inputs, interval_targets
    from edge_msa.training.fusion.voices import balanced_repeats, clip_inputs, neutral_pool

    rv = cfg.data.real_voices
    assert rv is not None
    clip_of = balanced_repeats(v_train, rv)
    pool = neutral_pool(s_train, rv.neutral_below)
    n = len(s_train)

    def batcher(rows, rng):
        sent, clips = rows[rows < n], clip_of[rows[rows >= n] - n]
        teacher, student = corpus_inputs(s_train, w_train, sent, rng, cfg, train=True)
        for k in clips:
            t, s, _ = clip_inputs(v_train, int(k), s_train, pool, rng, cfg, rv)
            teacher.append(t)
            student.append(s)
        sent_y, clip_y = s_train.labels[sent], v_train.labels[clips]
        if interval_targets(cfg):
            sent_y, clip_y = s_train.label_ranges()[sent], np.stack([clip_y, clip_y], 1)
        y = np.concatenate([sent_y, clip_y]).astype(np.float32)
        speech = np.concatenate([s_train.speech[sent] >= 0, np.ones(len(clips), bool)])
        return batch(teacher), batch(student), y, speech

    batcher.speech = np.concatenate([s_train.speech >= 0, np.ones(len(clip_of), bool)])
    return batcher
