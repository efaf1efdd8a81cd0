"""Speech recognition by encoder window: word error rate, time, fallbacks and
how much the acoustic features change (``edge-msa eval asr``, docs/asr.md).

Every clip goes through each candidate window in turn, in one process, on
the same loaded model, so the times compare under the same load. The first
candidate is the reference (normally ``full``, Whisper's 30 s window): each
other candidate's time is also given as a ratio to its median, and its
encoder frames over the real audio are compared with the reference's (what
the voice head and the fusion model read, so what a switch would retrain).

With emotion labels (RAVDESS, EmoDB) the shipped voice head's UAR is also
given per window, unchanged head on changed frames: what a switch costs
before the head is retrained. EmoDB (German, no transcripts) is heard
without decoding.

A candidate is ``full``, ``fit`` (the audio plus the margin in whole
seconds) or window sizes in seconds (``5,10,15,30``), then optionally
``@MARGIN`` (seconds of padding after the audio, default 1) and ``:nrN``
(CTranslate2's no-repeat n-gram size), e.g. ``fit@2:nr4``.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edge_msa.data.metrics import classification_metrics
from edge_msa.data.voice_corpus import RAVDESS_MAP, emodb_files, emodb_label, load_audio_16k
from edge_msa.encoders.asr import duration_frames
from edge_msa.encoders.asr_window import FULL_WINDOW, WindowPolicy, window_policy
from edge_msa.types import VOICE_EMOTIONS

RAVDESS_STATEMENTS = {"01": "kids are talking by the door", "02": "dogs are sitting by the door"}
CORPORA = ("media", "ravdess", "espeak", "emodb")
_CANDIDATE = re.compile(r"^(full|fit|[0-9.,]+)(?:@([0-9.]+))?(?::nr([0-9]+))?$")


@dataclass(frozen=True)
class Clip:
    id: str
    audio: np.ndarray
    reference: str | None  # None: not transcribed (no known words)
    emotion: str | None = None  # one of VOICE_EMOTIONS, when known


def normalise(text: str) -> str:
    """Lower case, no punctuation, apostrophes dropped (MOSI writes "didnt"),
    hyphens as spaces: the same for references and hypotheses."""
    text = text.lower().replace("'", "").replace("’", "").replace("-", " ")
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text).split())


def parse_candidate(spec: str) -> WindowPolicy:
    """``full``, ``fit``, ``5,10,15,30``, each with optional ``@MARGIN`` and ``:nrN``."""
    m = _CANDIDATE.match(spec.strip())
    if m is None:
        raise ValueError(f"window candidate {spec!r}: expected full, fit or sizes like 5,10,30, "
                         "optionally @MARGIN and :nrN")
    if m.group(1) == "full":
        return FULL_WINDOW
    margin = float(m.group(2)) if m.group(2) else 1.0
    policy = window_policy(m.group(1), margin_s=margin)
    return replace(policy, no_repeat_ngram_size=int(m.group(3) or 0))


# --- corpora -------------------------------------------------------------------------------


def media_clips(folder: Path, labels: Path) -> Iterator[Clip]:
    """The real MOSI clips in ``folder`` (``mosi_<id>.*``), transcripts from ``labels``."""
    from edge_msa.data.labels import read_labels

    texts = {row.id: row.text for row in read_labels(labels)}
    for path in sorted(Path(folder).glob("mosi_*")):
        key = path.stem[len("mosi_"):]
        if key in texts:
            yield Clip(key, load_audio_16k(path), texts[key])


def ravdess_clips(folder: Path, limit: int | None = None) -> Iterator[Clip]:
    """RAVDESS speech (``Actor_NN/03-01-EE-II-SS-RR-AA.flac``); ``limit``: an
    evenly spaced subset, so every actor and emotion stays in."""
    paths = sorted(Path(folder).glob("Actor_*/*.flac"))
    if not paths:
        raise FileNotFoundError(f"no RAVDESS .flac files under {folder}")
    for path in _spread(paths, limit):
        fields = path.stem.split("-")
        yield Clip(path.stem, load_audio_16k(path), RAVDESS_STATEMENTS[fields[4]],
                   RAVDESS_MAP.get(fields[2]))


def emodb_clips(folder: Path, limit: int | None = None) -> Iterator[Clip]:
    """EmoDB (German, 2.0 s clips): emotions only, no transcripts."""
    for path in _spread(emodb_files(Path(folder)), limit):
        yield Clip(path.stem, load_audio_16k(path), None, emodb_label(path)[1])


def espeak_clips(labels: Path, split: str | None, limit: int | None = None) -> Iterator[Clip]:
    """The label file's sentences spoken by espeak-ng with the spoken corpus's
    voice, rate and pitch for each id (:mod:`edge_msa.data.spoken`)."""
    from edge_msa.data.labels import read_labels
    from edge_msa.data.spoken import speak, voice_for

    rows = [r for r in read_labels(labels, split) if r.text.strip()]
    for row in _spread(rows, limit):
        yield Clip(row.id, speak(row.text, voice_for(row.id)), row.text)


def _spread(items: list, limit: int | None) -> list:
    if limit is None or limit >= len(items):
        return items
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


# --- measurement ---------------------------------------------------------------------------


@dataclass
class _Tally:
    refs: list[str] = field(default_factory=list)
    hyps: list[str] = field(default_factory=list)
    short: list[str] = field(default_factory=list)
    ms: list[float] = field(default_factory=list)
    encode_ms: list[float] = field(default_factory=list)
    decode_ms: list[float] = field(default_factory=list)
    windows: list[float] = field(default_factory=list)
    fallbacks: int = 0
    to_full: int = 0
    emotions: list[str] = field(default_factory=list)
    probs: list[np.ndarray] = field(default_factory=list)
    change: dict[str, list[float]] = field(default_factory=dict)


def evaluate_asr(
    corpora: dict[str, Iterable[Clip]],
    candidates: list[str],
    threads: int = 1,
    backend: str = "cpu",
    per_utterance: Path | None = None,
    progress: bool = True,
) -> dict:
    """Per corpus and candidate: n; wer and wer_short (the first window's own
    text, before any fallback), for clips with known words; ms_p50, ms_mean,
    ms_p95 (encoder + decoder per utterance), encode_ms_p50, decode_ms_p50,
    ratio_p50 and ratio_p95 (to the first candidate's); fallback (share
    decoded again), fallback_full (share decoded again from the full window),
    window_s (mean); against the first candidate's frames: frame_cos (per
    speech frame), pooled_cos (mean + std over the speech frames), embed_cos
    (the voice head's input), tokens_cos (the fusion model's audio tokens),
    emotion_agree (the voice head's top emotion), probs_l1 (its
    probabilities); voice_uar (the shipped voice head's unweighted recall) for
    clips with known emotions. EmoDB clips are only heard (no decoding), so
    their ms are the encoder's alone."""
    from edge_msa.encoders.asr import SpeechRecognizer
    from edge_msa.encoders.voice import VoiceEncoder, default_model_dir

    policies = {spec: parse_candidate(spec) for spec in candidates}
    asr = SpeechRecognizer(beam_size=1, threads=threads, backend=backend)
    voice = VoiceEncoder(default_model_dir(), backend, 1)
    out: dict[str, dict] = {}
    sink = open(per_utterance, "w") if per_utterance else None  # noqa: SIM115
    try:
        for corpus, clips in corpora.items():
            tallies = {spec: _Tally() for spec in candidates}
            for i, clip in enumerate(clips):
                _one_clip(asr, voice, clip, policies, tallies, corpus, sink)
                if progress and (i + 1) % 25 == 0:
                    head = ", ".join(f"{s} {_wer(t.refs, t.hyps):.3f}" for s, t in tallies.items())
                    print(f"{corpus}: {i + 1} clips; wer {head}", file=sys.stderr, flush=True)
            out[corpus] = _summary(tallies, candidates)
    finally:
        if sink:
            sink.close()
    return out


def _one_clip(asr, voice, clip: Clip, policies, tallies, corpus: str, sink) -> None:
    from edge_msa.fusion.features import audio_tokens

    reference = base = None
    count = duration_frames(len(clip.audio))
    words = clip.reference is not None
    for spec, policy in policies.items():
        r = asr.recognition(clip.audio, words, policy)
        text = r.transcript.text if r.transcript else ""
        t = tallies[spec]
        if words:
            t.refs.append(normalise(clip.reference))
            t.hyps.append(normalise(text))
            t.short.append(normalise(r.short_text if r.short_text is not None else text))
        t.ms.append(r.encode_ms + r.decode_ms)
        t.encode_ms.append(r.encode_ms)
        t.decode_ms.append(r.decode_ms)
        t.windows.append(r.window_s)
        t.fallbacks += int(r.fallback)
        t.to_full += int(r.fallback and r.passes[-1] >= 30.0)
        feats = voice.encode(r.frames, clip.audio)
        if clip.emotion is not None:
            t.emotions.append(clip.emotion)
            t.probs.append(feats.probs)
        tokens = audio_tokens(r.frames, count)
        if reference is None:
            reference, base = r.frames, (feats, tokens)
        else:
            n = min(count, len(r.frames), len(reference))
            change = {
                "frame_cos": float(np.mean(_cos_rows(reference[:n], r.frames[:n]))),
                "pooled_cos": _cos(_pool(reference[:n]), _pool(r.frames[:n])),
                "embed_cos": _cos(base[0].embedding, feats.embedding),
                "tokens_cos": float(np.mean(_cos_rows(base[1], tokens))),
                "emotion_agree": float(base[0].probs.argmax() == feats.probs.argmax()),
                "probs_l1": float(np.abs(base[0].probs - feats.probs).sum()),
            }
            for key, value in change.items():
                t.change.setdefault(key, []).append(value)
        if sink:
            row = {"corpus": corpus, "id": clip.id, "window": spec, "seconds":
                   round(len(clip.audio) / 16000, 3), "window_s": r.window_s,
                   "passes": list(r.passes), "ms": round(r.encode_ms + r.decode_ms, 2),
                   "encode_ms": round(r.encode_ms, 2), "decode_ms": round(r.decode_ms, 2),
                   "text": text, "short_text": r.short_text, "reference": clip.reference,
                   "emotion": clip.emotion, "voice": VOICE_EMOTIONS[int(feats.probs.argmax())]}
            sink.write(json.dumps(row) + "\n")
            sink.flush()


def _summary(tallies: dict[str, _Tally], candidates: list[str]) -> dict[str, dict]:
    out = {}
    base = tallies[candidates[0]].ms
    base_ms = float(np.median(base)) if base else 0.0
    base_p95 = float(np.percentile(base, 95)) if base else 0.0
    for spec in candidates:
        t = tallies[spec]
        if not t.ms:
            continue
        ms = float(np.median(t.ms))
        row: dict[str, float] = {"n": len(t.ms)}
        if t.refs:  # clips with known words (EmoDB is only heard)
            row.update(wer=_wer(t.refs, t.hyps), wer_short=_wer(t.refs, t.short))
        row.update({
            "ms_p50": ms,
            "ms_mean": float(np.mean(t.ms)),
            "ms_p95": float(np.percentile(t.ms, 95)),
            "encode_ms_p50": float(np.median(t.encode_ms)),
            "decode_ms_p50": float(np.median(t.decode_ms)),
            "ratio_p50": ms / base_ms if base_ms else float("nan"),
            "ratio_p95": float(np.percentile(t.ms, 95)) / base_p95 if base_p95 else float("nan"),
            "fallback": t.fallbacks / len(t.ms),
            "fallback_full": t.to_full / len(t.ms),
            "window_s": float(np.mean(t.windows)),
        })
        row.update({k: float(np.mean(v)) for k, v in t.change.items()})
        if t.emotions:
            row["voice_uar"] = classification_metrics(t.emotions, np.stack(t.probs))["uar"]
        out[spec] = row
    return out


def _wer(refs: list[str], hyps: list[str]) -> float:
    import jiwer

    return float(jiwer.wer(refs, hyps)) if refs else float("nan")


def _pool(x: np.ndarray) -> np.ndarray:
    from edge_msa.encoders.voice import pool

    return pool(x)


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    norms = np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
    return np.sum(a * b, axis=1) / norms


def format_asr_table(metrics: dict[str, dict[str, dict]]) -> str:
    """A Markdown table: one row per corpus and candidate."""
    lines = [
        "| corpus | window | n | WER | WER before fallback | ms p50 | ratio p50 | ms p95 "
        "| ratio p95 | fallback | to 30 s | mean window s | frame cos | pooled cos "
        "| voice input cos | fusion tokens cos | same top emotion | voice UAR |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for corpus, rows in metrics.items():
        for spec, m in rows.items():
            change = [m.get(k) for k in ("frame_cos", "pooled_cos", "embed_cos", "tokens_cos",
                                         "emotion_agree", "voice_uar")]
            cells = ["-" if v is None else f"{v:.3f}" for v in change]
            wer = [m.get(k) for k in ("wer", "wer_short")]
            wer_cells = ["-" if v is None else f"{v:.3f}" for v in wer]
            lines.append(
                f"| {corpus} | {spec} | {m['n']} | {wer_cells[0]} | {wer_cells[1]} "
                f"| {m['ms_p50']:.0f} | {m['ratio_p50']:.3f} | {m['ms_p95']:.0f} "
                f"| {m['ratio_p95']:.3f} | {m['fallback']:.3f} | {m['fallback_full']:.3f} "
                f"| {m['window_s']:.1f} | " + " | ".join(cells) + " |"
            )
    return "\n".join(lines)
