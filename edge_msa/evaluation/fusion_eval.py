"""Evaluate the fusion model: text only, speech (text present / simulated / absent),
and missing modalities (fixed subsets and LNLN random missing rates).

Every mode returns the MMSA metrics with ``coverage_1sigma`` and
``coverage_2sigma``. ``encoder_only`` evaluates the v0 path instead (the
text encoder's own head; the inverse-variance fusion of the encoders' own
estimates for ``missing``), for the ablation table.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_msa.evaluation.baselines import ModalityEstimate, VoiceValence, face_valence, fuse
from edge_msa.evaluation.report import rows_of, scored
from edge_msa.fusion.features import FusionInputs, text_feature
from edge_msa.types import ModalityState

RATES = tuple(round(0.1 * i, 1) for i in range(10))
SUBSETS = ("t", "a", "v", "ta", "tv", "av", "tav")
P, S, A = ModalityState.PRESENT, ModalityState.SIMULATED, ModalityState.ABSENT


def _fusion(model_dir, backend: str):
    from edge_msa.fusion.model import FusionModel

    return FusionModel(model_dir, backend)


def _text_encoder(backend: str):
    from edge_msa.encoders.text import TextEncoder, default_model_dir

    return TextEncoder(default_model_dir(), backend, threads=os.cpu_count() or 1)


def _predict(model, items: list[FusionInputs]) -> tuple[np.ndarray, np.ndarray]:
    outs = [o for a in range(0, len(items), 256) for o in model.predict_batch(items[a : a + 256])]
    return np.array([o.score for o in outs]), np.array([o.std for o in outs])


def evaluate_text(labels, split=None, model_dir=None, backend="cpu", encoder_only=False) -> dict:
    """The fused model given only the real transcripts."""
    rows = rows_of(labels, split)
    encoder = _text_encoder(backend)
    preds = encoder.predict_batch([r.text for r in rows])
    truth = np.array([r.label for r in rows])
    head = {"file": str(labels), "split": split or "all"}
    if encoder_only:
        mean, std = np.array([p.mean for p in preds]), np.array([p.std for p in preds])
        name = encoder.name
    else:
        model = _fusion(model_dir, backend)
        mean, std = _predict(model, [FusionInputs(text=text_feature(p)) for p in preds])
        name = model.name
    if all(r.sentiment for r in rows):  # 3-class labels (MELD): no score to compare with
        classes = [str(r.sentiment) for r in rows]
        return {**head, "model": name, **three_class_scored(mean, classes),
                "_arrays": (mean, std, truth)}
    return {**head, "model": name, **scored(mean, std, truth), "_arrays": (mean, std, truth)}


def three_class_scored(mean: np.ndarray, classes: list[str]) -> dict:
    """3-class labels against the polarity the runtime publishes for each score
    (``acc_3class``, weighted ``f1_3class``, balanced accuracy), and ``acc2``:
    positive vs negative labels (neutral left out) against the score's sign."""
    from edge_msa.data.class_metrics import three_class
    from edge_msa.publishing.result import polarity

    out: dict = {"n": float(len(classes)), **three_class(classes, [polarity(m) for m in mean])}
    polar = [(c == "positive", m > 0) for c, m in zip(classes, mean, strict=True) if c != "neutral"]
    out["acc2"] = float(np.mean([t == p for t, p in polar])) if polar else float("nan")
    return out


def _heard(labels, split, limit: int | None, jobs: int | None):
    """The rows, spoken and heard through the runtime's audio path (cached)."""
    from edge_msa.data import spoken

    rows = rows_of(labels, split)
    if rows[0].sentiment:
        raise ValueError(f"{labels}: 3-class labels (MELD) have no score; use `eval text`")
    rows = spoken.select(rows, limit, seed=0)
    folder = spoken.corpus_folder(spoken.default_cache(), Path(labels), split or "all")
    spoken.build(rows, folder, jobs or os.cpu_count() or 1, progress=True)
    by_id = {h["id"]: h for h in spoken.load(folder, [r.id for r in rows])}
    return rows, [by_id[r.id] for r in rows]


def evaluate_speech(
    labels, split=None, text="simulated", limit=None, model_dir=None, backend="cpu", jobs=None
) -> dict:
    """Each transcript spoken by espeak-ng and heard as at run time; ``text`` says
    what the model gets: the real transcript too (present), only the ASR
    transcript with its state (simulated), or no text (absent: imagined)."""
    if text not in ("present", "simulated", "absent"):
        raise ValueError(f"--text must be present, simulated or absent, not {text!r}")
    rows, heard = _heard(labels, split, limit, jobs)
    encoder = _text_encoder(backend)
    items = []
    for row, h in zip(rows, heard, strict=True):
        item = FusionInputs(audio=h["audio_tokens"].astype(np.float32), voice=h["voice_probs"])
        if text == "present":
            item.text = text_feature(encoder.predict(row.text))
        elif text == "simulated" and h["asr_state"] != "absent":
            item.text = text_feature(encoder.predict(str(h["asr_text"])))
            item.simulated = True
        items.append(item)
    model = _fusion(model_dir, backend)
    mean, std = _predict(model, items)
    truth = np.array([r.label for r in rows])
    out = {"file": str(labels), "split": split or "all", "text": text, "model": model.name}
    if text == "simulated":
        out["asr_states"] = {
            s: int(sum(h["asr_state"] == s for h in heard))
            for s in ("present", "simulated", "absent")
        }
    return {**out, **scored(mean, std, truth), "_arrays": (mean, std, truth)}


def evaluate_missing(
    labels,
    split=None,
    limit=200,
    model_dir=None,
    backend="cpu",
    jobs=None,
    encoder_only=False,
    seed=0,
) -> dict:
    """The joint corpus built from ``labels`` (spoken sentences, FER2013
    PublicTest faces, EmoDB/RAVDESS voices; see ``edge_msa/data/joint.py``):
    every fixed subset of modalities, and LNLN random missing rates."""
    from edge_msa.data import banks, joint

    data = Path(os.environ.get("EDGE_MSA_DATA", "../shared/datasets"))
    rows, heard = _heard(labels, split, limit, jobs)
    texts = joint.TextBank()
    witnesses = joint.Witnesses(
        banks.face_bank(data / "fer2013" / "fer2013_PublicTest.npz"), banks.voice_bank(data)
    )
    rng = np.random.default_rng(seed)
    truth = np.array([r.label for r in rows], np.float32)
    faces = [witnesses.face(y, rng) for y in truth]
    voices = [witnesses.voice(y, rng) for y in truth]
    run = (
        _baseline_runner(texts)
        if encoder_only
        else _model_runner(_fusion(model_dir, backend), texts)
    )

    arrays = []

    def case(keep: str, rate: float, r: np.random.Generator) -> dict:
        items, sentences = [], []
        for row, h, face, voice in zip(rows, heard, faces, voices, strict=True):
            words = joint.drop_words(row.text, rate, r) if rate else row.text
            audio = joint_drop(h["audio_tokens"].astype(np.float32), rate, r)
            vision = joint_drop(face, rate, r)
            sentences.append(words if "t" in keep and words else None)
            items.append(
                FusionInputs(
                    audio=audio if "a" in keep else None,
                    voice=voice,
                    vision=vision if "v" in keep else None,
                )
            )
        mean, std = run(items, sentences)
        arrays.append((mean, std, truth))
        return scored(mean, std, truth)

    subsets = {k: case(k, 0.0, rng) for k in SUBSETS}
    curve = {str(r): case("tav", r, np.random.default_rng(seed + int(r * 10))) for r in RATES}
    mean_curve = {k: float(np.mean([m[k] for m in curve.values()])) for k in curve["0.0"]}
    texts.save()
    return {
        "file": str(labels),
        "split": split or "all",
        "n": len(rows),
        "subsets": subsets,
        "random": curve,
        "random_mean": mean_curve,
        "_arrays": arrays[SUBSETS.index("tav")],
    }


def joint_drop(x, rate: float, rng: np.random.Generator):
    if x is None or not rate:
        return x
    keep = rng.random(len(x)) >= rate
    return x[keep] if keep.any() else None


def _model_runner(model, texts):
    def run(items: list[FusionInputs], sentences: list[str | None]):
        embedded = iter(texts.embed([t for t in sentences if t is not None]))
        for it, sentence in zip(items, sentences, strict=True):
            it.text = next(embedded) if sentence is not None else None
        return _predict(model, items)

    return run


def _baseline_runner(texts):
    """v0: the text head, the voice stage's valence and the mean face valence,
    fused by inverse variance."""
    voice = VoiceValence.shipped()
    encoder = texts.encoder

    def run(items: list[FusionInputs], sentences: list[str | None]):
        out = []
        for it, sentence in zip(items, sentences, strict=True):
            est: dict[str, ModalityEstimate] = {}
            if sentence is not None:
                p = encoder.predict(sentence)
                est["text"] = ModalityEstimate(p.mean, p.std, P)
            if it.audio is not None:
                est["audio"] = ModalityEstimate(*voice(it.voice), P)
            if it.vision is not None:
                vals = [face_valence(f[-7:]) for f in it.vision]
                est["vision"] = ModalityEstimate(
                    float(np.mean([v for v, _ in vals])), float(np.mean([s for _, s in vals])), P
                )
            fused = fuse(est, {m: P for m in est})
            out.append((fused.score, fused.std))
        return np.array([o[0] for o in out]), np.array([o[1] for o in out])

    return run
