"""`edge-msa eval clips`: labelled real clips, each through the path of `run --media`.

Every clip is played as ``edge-msa run --media CLIP`` plays it: the same
config (defaults, ``--config`` TOML, environment), its sources built and
opened the same way, the models loaded once by
:func:`edge_msa.runtime.app.load_models` (the face stage added when a clip has
pictures), one :class:`~edge_msa.runtime.pipeline.Pipeline` per clip, and the
published JSON read from a local sink, as ``--output jsonl --transcript``
would print it. The file is read as fast as it decodes (``run``'s default).

One clip may give several results (several utterances, or face-only results
of a video). They are combined into one score per clip: the mean of the
speech results' scores weighted by their duration (``t_end - t_start``, at
least 0.1 s each); face-only results count only when a clip has no speech
result. A clip with one result keeps its published polarity; a combined
score gets the polarity the runtime would publish for it (|score| < 0.5:
neutral). A clip with no result at all is counted (``no_result``) and left
out of the score measures; its transcript counts as empty in the WER.

Truth per clip: a ``label`` (a score) when given, else the emotion's valence
(:func:`edge_msa.data.clip_labels.emotion_valence`: happiness positive;
neutral, calm and boredom neutral; anger, disgust, fear, sadness negative;
surprise none, so it is left out of both valence measures).

- ``valence_balanced_acc``: 3 classes, the truth's valence (a label's via the
  published thresholds) against the clip's polarity; mean recall.
- ``posneg_balanced_acc``: positive vs negative clips (a label > 0 or < 0;
  neutral truth left out) against the sign of the clip's score.
- ``mae``: clips with a label. ``wer``: clips with a transcript.
- ``per_emotion``: clips, clips with no result and the mean score per emotion.
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_msa.config import Config, load_config
from edge_msa.data.class_metrics import POLARITIES, balanced_accuracy, confusion
from edge_msa.data.clip_labels import LabelledClip, emotion_valence
from edge_msa.publishing.result import polarity
from edge_msa.publishing.sinks import JsonlSink

MIN_WEIGHT_S = 0.1  # a result's weight at least: a zero-length span still counts


@dataclass
class ClipOutcome:
    path: str
    results: list[dict[str, Any]] = field(default_factory=list)
    score: float | None = None
    polarity: str | None = None
    transcript: str = ""
    error: str | None = None  # why the run ended badly (its results, if any, are kept)


class _Collect(JsonlSink):
    """The published lines of one run, kept in memory (written from the sink's thread)."""

    name = "eval clips"

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []

    def write_lines(self, text: str) -> None:
        self.payloads += [json.loads(line) for line in text.splitlines() if line.strip()]

    def close(self) -> None:
        pass


class ClipRunner:
    """Plays clips as `run --media` does, with the models loaded once."""

    def __init__(self, config: str | None = None, cli: dict[str, Any] | None = None) -> None:
        self.config = config
        self.cli = cli or {}
        self._models: tuple | None = None

    @property
    def model_name(self) -> str | None:
        """The ``model`` field of the results, once the models are loaded."""
        return self._models[3] if self._models else None

    def config_for(self, path: Path) -> Config:
        cli = {**self.cli, "source": {**self.cli.get("source", {}), "media": str(path)}}
        cli["output"] = {**cli.get("output", {}), "sinks": ["jsonl"], "include_transcript": True}
        return load_config(self.config, cli)

    async def play(self, path: Path) -> ClipOutcome:
        from edge_msa.runtime.pipeline import Pipeline
        from edge_msa.sources import SourceError, StreamClock, build_sources

        cfg = self.config_for(path)
        clock = StreamClock.start()
        try:
            sources = build_sources(cfg.source, clock)
            for src in sources:
                await asyncio.to_thread(src.open)
        except SourceError as e:
            return ClipOutcome(str(path), error=str(e))
        has_video = any(s.has_video for s in sources)
        segmenter, analyzer, face, name = await asyncio.to_thread(self._load, cfg, has_video)
        if face is not None:
            face.tracker.reset()
        sink = _Collect()
        pipeline = Pipeline(cfg, sources, segmenter, analyzer, None, [sink], name, face,
                            clock=clock)
        code = await pipeline.run()
        error = "; ".join(map(str, pipeline.errors)) or ("failed" if code else None)
        return combine(str(path), sink.payloads, error)

    def _load(self, cfg: Config, has_video: bool) -> tuple:
        from edge_msa.runtime.app import load_face_stage, load_models

        if self._models is None:
            self._models = load_models(cfg, has_video)
        segmenter, analyzer, face, name = self._models
        if face is None and has_video and cfg.vision.enabled:
            face = load_face_stage(cfg)
            self._models = (segmenter, analyzer, face, name)
        return segmenter, analyzer, face if has_video else None, name


def _seconds(payload: dict[str, Any]) -> float:
    t0 = datetime.fromisoformat(str(payload["t_start"]))
    t1 = datetime.fromisoformat(str(payload["t_end"]))
    return max((t1 - t0).total_seconds(), MIN_WEIGHT_S)


def is_speech(payload: dict[str, Any]) -> bool:
    m = payload["modalities"]
    return m["audio"] != "absent" or m["text"] in ("present", "simulated")


def combine(path: str, payloads: list[dict[str, Any]], error: str | None = None) -> ClipOutcome:
    """One clip's results as one score and polarity (see the module's docstring)."""
    payloads = sorted(payloads, key=lambda p: str(p["t_start"]))
    speech = [p for p in payloads if is_speech(p)]
    used = speech or payloads
    out = ClipOutcome(path, payloads, error=error)
    out.transcript = " ".join(str(p.get("transcript", "")) for p in speech).strip()
    if not used:
        return out
    weights = np.array([_seconds(p) for p in used])
    out.score = float(np.dot(weights, [float(p["score"]) for p in used]) / weights.sum())
    out.polarity = str(used[0]["polarity"]) if len(used) == 1 else polarity(out.score)
    return out


def clip_valence(clip: LabelledClip) -> str | None:
    if clip.label is not None:
        return polarity(clip.label)
    return emotion_valence(clip.emotion) if clip.emotion else None


def clip_sign(clip: LabelledClip) -> str | None:
    """positive / negative truth for the 2-class measure; None: not in it."""
    if clip.label is not None:
        return None if clip.label == 0 else ("positive" if clip.label > 0 else "negative")
    valence = clip_valence(clip)
    return valence if valence in ("positive", "negative") else None


def clip_metrics(clips: list[LabelledClip], outcomes: list[ClipOutcome]) -> dict[str, Any]:
    pairs = list(zip(clips, outcomes, strict=True))
    scored = [(c, o) for c, o in pairs if o.score is not None]
    out: dict[str, Any] = {
        "n": len(clips),
        "no_result": len(clips) - len(scored),
        "errors": sum(o.error is not None for o in outcomes),
    }
    valence = [(clip_valence(c), o.polarity) for c, o in scored if clip_valence(c)]
    out["valence_n"] = len(valence)
    out["valence_balanced_acc"] = balanced_accuracy(*_unzip(valence))
    out["valence_confusion"] = confusion(*_unzip(valence), POLARITIES)
    signs = [(clip_sign(c), "positive" if o.score > 0 else "negative")
             for c, o in scored if clip_sign(c)]
    out["posneg_n"] = len(signs)
    out["posneg_balanced_acc"] = balanced_accuracy(*_unzip(signs))
    labelled = [(c.label, o.score) for c, o in scored if c.label is not None]
    if labelled:
        out["mae"] = float(np.mean([abs(t - p) for t, p in labelled]))
        out["mae_n"] = len(labelled)
    spoken = [(c.transcript, o.transcript) for c, o in pairs if c.transcript]
    if spoken:
        out["wer"] = word_error_rate(*_unzip(spoken))
        out["wer_n"] = len(spoken)
    out["per_emotion"] = _per_emotion(pairs)
    return out


def _unzip(pairs: list[tuple]) -> tuple[list, list]:
    return [a for a, _ in pairs], [b for _, b in pairs]


def word_error_rate(refs: list[str], hyps: list[str]) -> float:
    """Corpus WER after the normalisation `eval asr` uses (case, punctuation)."""
    from edge_msa.evaluation.asr_eval import _wer, normalise

    return _wer([normalise(r) for r in refs], [normalise(h) for h in hyps])


def _per_emotion(pairs: list[tuple[LabelledClip, ClipOutcome]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for emotion in sorted({c.emotion for c, _ in pairs if c.emotion}):
        mine = [o for c, o in pairs if c.emotion == emotion]
        scores = [o.score for o in mine if o.score is not None]
        out[emotion] = {
            "n": len(mine),
            "no_result": len(mine) - len(scores),
            "mean_score": float(np.mean(scores)) if scores else float("nan"),
            "valence": emotion_valence(emotion),
        }
    return out


async def _play_all(
    runner: ClipRunner, clips: list[LabelledClip], log: Callable[[str], None]
) -> list[ClipOutcome]:
    outcomes = []
    for i, clip in enumerate(clips, 1):
        outcome = await runner.play(clip.path)
        score = "no result" if outcome.score is None else f"{outcome.score:+.2f}"
        log(f"[{i}/{len(clips)}] {clip.path.name}: {score} ({clip.emotion or clip.label})")
        outcomes.append(outcome)
    return outcomes


def evaluate_clips(
    clips: list[LabelledClip],
    config: str | None = None,
    cli: dict[str, Any] | None = None,
    out: Path | None = None,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Every clip through the runtime, then :func:`clip_metrics`; ``out``: one
    JSON line per clip (its truth, combined score and published results)."""
    runner = ClipRunner(config, cli)
    outcomes = asyncio.run(_play_all(runner, clips, log or (lambda _: None)))
    if out is not None:
        with Path(out).open("w", encoding="utf-8") as f:
            for clip, outcome in zip(clips, outcomes, strict=True):
                f.write(json.dumps(clip_row(clip, outcome)) + "\n")
    metrics = clip_metrics(clips, outcomes)
    metrics["model"] = runner.model_name
    return metrics


def clip_row(clip: LabelledClip, outcome: ClipOutcome) -> dict[str, Any]:
    """One clip for ``--out``: its truth, what was heard, the combined score, the results."""
    return {
        **asdict(clip),
        "path": str(clip.path),
        "score": outcome.score,
        "polarity": outcome.polarity,
        "heard": outcome.transcript,
        "error": outcome.error,
        "results": outcome.results,
    }


def format_clips_table(m: dict[str, Any]) -> str:
    lines = [
        f"clips through `run --media` (n={m['n']}, no result {m['no_result']}, "
        f"errors {m['errors']})",
        f"  valence 3-class balanced acc   {m['valence_balanced_acc']:.4f}  (n={m['valence_n']})",
        f"  positive vs negative bal. acc  {m['posneg_balanced_acc']:.4f}  (n={m['posneg_n']})",
    ]
    if "mae" in m:
        lines.append(f"  mae                            {m['mae']:.4f}  (n={m['mae_n']})")
    if "wer" in m:
        lines.append(f"  word error rate                {m['wer']:.4f}  (n={m['wer_n']})")
    if m["per_emotion"]:
        lines.append("  per emotion        n  no result  mean score  valence")
        for name, e in m["per_emotion"].items():
            lines.append(f"    {name:<12} {e['n']:>5} {e['no_result']:>10} "
                         f"{e['mean_score']:>+11.3f}  {e['valence'] or '-'}")
    lines.append("  valence confusion (rows: truth, columns: published polarity)")
    lines.append("    " + " " * 10 + " ".join(f"{p[:4]:>5}" for p in POLARITIES))
    for name, row in zip(POLARITIES, m["valence_confusion"], strict=True):
        lines.append(f"    {name:<10}" + " ".join(f"{v:>5d}" for v in row))
    return "\n".join(lines)


def progress(line: str) -> None:
    print(line, file=sys.stderr, flush=True)
