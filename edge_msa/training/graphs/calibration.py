"""Calibration sets for the static INT8 graphs, built from TRAINING rows only.

Text (``calibration/text/text_calibration.npz``): a seeded sample of MOSI and
MOSEI *train* sentences, normalised and tokenised exactly as at run time
(:class:`edge_msa.encoders.text.TextEncoder`), fed one sentence at a time as
the runtime does.

Fusion (``calibration/fusion/fusion_calibration.npz``): a seeded sample of
MOSI and MOSEI *train* sentences turned into the fusion model's inputs as the
joint corpus builds them (:mod:`edge_msa.data.joint`): the shipped text
model's features of the real or recognised transcript, the espeak-ng
rendering heard through the runtime's audio path (audio tokens and voice
probabilities, :mod:`edge_msa.data.spoken`) and expression tokens of
polarity-matched FER2013 *Training* faces (``calibration/face_calibration.npz``,
through the shipped expression CNN). Each row takes one of the modality
combinations the runtime meets (:data:`CASES`), so every branch of the graph
sees activations.

Never dev, valid or test rows: those measure the graphs.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edge_msa.data.labels import LabelRow, read_labels

# Which inputs a calibration row carries: t real transcript, s recognised
# transcript (simulated), a audio + voice, v vision. "" is nothing at all.
CASES = ("tav", "sav", "sa", "ta", "tv", "sv", "a", "t", "v", "av", "")


def data_root() -> Path:
    return Path(os.environ.get("EDGE_MSA_DATA", "../shared/datasets")).expanduser()


def train_sample(
    root: Path, per_set: dict[str, int], seed: int, max_words: int | None = None
) -> dict[str, list[LabelRow]]:
    """A seeded sample of each data set's *train* split (``{"mosi": 128, ...}``),
    optionally of sentences of at most ``max_words`` words."""
    rng = np.random.default_rng(seed)
    out: dict[str, list[LabelRow]] = {}
    for name, count in per_set.items():
        rows = [r for r in read_labels(root / name / "label.csv", "train") if r.text.strip()]
        if max_words is not None:
            rows = [r for r in rows if len(r.text.split()) <= max_words]
        pick = np.sort(rng.choice(len(rows), size=min(count, len(rows)), replace=False))
        out[name] = [rows[i] for i in pick]
    return out


# ------------------------------------------------------------------ text


def build_text(out: Path, text_dir: Path, per_set: dict[str, int], seed: int = 0) -> dict:
    """Write the text calibration npz; returns what its manifest records."""
    from edge_msa.encoders.text import TextEncoder

    rows = [r for part in train_sample(data_root(), per_set, seed).values() for r in part]
    encoder = TextEncoder(text_dir)
    seqs = encoder._encode([r.text for r in rows])  # the runtime's normalisation and truncation
    ids = np.zeros((len(seqs), encoder.max_len), np.int32)
    for i, s in enumerate(seqs):
        ids[i, : len(s)] = s
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        input_ids=ids,
        lengths=np.array([len(s) for s in seqs], np.int32),
        row_ids=np.array([r.id for r in rows]),
        texts=np.array([r.text for r in rows]),
    )
    return {"sentences": len(rows), "mean_tokens": round(float(np.mean([len(s) for s in seqs])), 1)}


def text_feeds(npz: Path) -> list[dict[str, np.ndarray]]:
    """One feed per sentence, unpadded, as the runtime runs the text model."""
    with np.load(npz) as z:
        ids, lengths = z["input_ids"], z["lengths"]
    return [
        {
            "input_ids": ids[i : i + 1, :n].astype(np.int64),
            "attention_mask": np.ones((1, int(n)), np.int64),
        }
        for i, n in enumerate(lengths)
    ]


# ------------------------------------------------------------------ fusion


def build_fusion(
    out: Path, per_set: dict[str, int], faces_npz: Path, seed: int = 0, jobs: int | None = None
) -> dict:
    """Write the fusion calibration npz; returns what its manifest records."""
    from edge_msa.data import banks, joint, spoken
    from edge_msa.fusion.features import FusionInputs

    root = data_root()
    sample = train_sample(root, per_set, seed, max_words=spoken.MAX_WORDS)
    heard = {}
    for name, part in sample.items():
        folder = spoken.corpus_folder(spoken.default_cache(), root / name / "label.csv", "train")
        spoken.build(part, folder, jobs or os.cpu_count() or 1, progress=True)
        heard.update({h["id"]: h for h in spoken.load(folder, [r.id for r in part])})
    rows = [r for part in sample.values() for r in part]
    texts = joint.TextBank()
    faces = banks.face_bank(faces_npz)
    pools = banks.polarity_pools(banks.face_names(faces["labels"]), banks.FACE_POLARITY)
    rng = np.random.default_rng(seed)
    items, cases = [], []
    for k, row in enumerate(rows):
        h = heard[row.id]
        case = CASES[k % len(CASES)]
        item = FusionInputs()
        asr = str(h["asr_text"]) if h["asr_state"] != "absent" else ""
        if "t" in case:
            item.text = texts.embed([row.text])[0]
        elif "s" in case and asr:
            item.text, item.simulated = texts.embed([asr])[0], True
        if "a" in case:
            item.audio = np.asarray(h["audio_tokens"], np.float32)
            item.voice = np.asarray(h["voice_probs"], np.float32)
        if "v" in case:
            pool = pools[joint.POLARITIES[joint.polarity(row.label)]]
            face = int(pool[rng.integers(len(pool))])
            variants = rng.integers(faces["tokens"].shape[1], size=int(rng.integers(4, 17)))
            item.vision = faces["tokens"][face, variants].astype(np.float32)
        items.append(item)
        cases.append(case)
    texts.save()
    tokens = [len(h["audio_tokens"]) for h in heard.values()]
    _save_fusion(out, items, rows, cases)
    return {
        "rows": len(items),
        "cases": {c or "none": cases.count(c) for c in CASES},
        "audio_tokens_mean": round(float(np.mean(tokens)), 1),
    }


def _ragged(parts: list[np.ndarray | None], width: int) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([0 if p is None else len(p) for p in parts], np.int32)
    kept = [p for p in parts if p is not None and len(p)]
    flat = np.concatenate(kept).astype(np.float16) if kept else np.zeros((0, width), np.float16)
    return flat, lengths


def _save_fusion(out: Path, items, rows: list[LabelRow], cases: list[str]) -> None:
    from edge_msa.fusion.features import AUDIO_DIM, TEXT_DIM, VISION_DIM, VOICE_DIM

    audio, audio_len = _ragged([it.audio for it in items], AUDIO_DIM)
    vision, vision_len = _ragged([it.vision for it in items], VISION_DIM)
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(
        out,
        text=np.stack(
            [np.zeros(TEXT_DIM) if it.text is None else it.text for it in items]
        ).astype(np.float32),
        has_text=np.array([it.text is not None for it in items]),
        simulated=np.array([it.simulated for it in items]),
        audio=audio,
        audio_lengths=audio_len,
        voice=np.stack(
            [np.zeros(VOICE_DIM) if it.voice is None else it.voice for it in items]
        ).astype(np.float32),
        vision=vision,
        vision_lengths=vision_len,
        row_ids=np.array([r.id for r in rows]),
        cases=np.array(cases),
    )


def fusion_items(npz: Path):
    """The calibration rows back as :class:`FusionInputs`."""
    from edge_msa.fusion.features import FusionInputs

    with np.load(npz) as z:
        d = {k: z[k] for k in z.files}
    a_off = np.concatenate([[0], np.cumsum(d["audio_lengths"])])
    v_off = np.concatenate([[0], np.cumsum(d["vision_lengths"])])
    items = []
    for i in range(len(d["text"])):
        audio = d["audio"][a_off[i] : a_off[i + 1]].astype(np.float32)
        vision = d["vision"][v_off[i] : v_off[i + 1]].astype(np.float32)
        items.append(
            FusionInputs(
                text=d["text"][i] if d["has_text"][i] else None,
                simulated=bool(d["simulated"][i]),
                audio=audio if len(audio) else None,
                voice=d["voice"][i] if len(audio) else None,
                vision=vision if len(vision) else None,
            )
        )
    return items


def fusion_feeds(npz: Path, batch_size: int = 1) -> list[dict[str, np.ndarray]]:
    """Batched model feeds of the calibration rows (the runtime runs one at a time)."""
    from edge_msa.fusion.features import batch

    items = fusion_items(npz)
    return [batch(items[i : i + batch_size]) for i in range(0, len(items), batch_size)]
