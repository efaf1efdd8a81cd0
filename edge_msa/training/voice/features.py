"""Voice embeddings through the run-time path (cached), and the head's features."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from edge_msa.data.voice_augment import augment
from edge_msa.data.voice_corpus import load_audio_16k
from edge_msa.encoders.asr_window import SHIPPED_WINDOW
from edge_msa.encoders.voice import embed

# With RAVDESS and EmoDB together (grouped CV, context 50) 0.01-0.03 wins and 1.0
# never did; EmoDB alone (0.4.0) preferred 0.3. Ascending: the CV warm-starts along it.
C_GRID = (0.01, 0.03, 0.1, 0.3)
# Padding frames after the audio whose mean (with the audio frames) joins the
# embedding; 0 is none. The shipped encoder window keeps at least its 1 s margin
# (50 frames) after the audio, so every K here means the same at any length.
CONTEXT_GRID = (0, 25, 50)
# The contexts the selection tries (the cache keeps all of CONTEXT_GRID).
SELECT_CONTEXTS = (0, 50)
# A variant (prosody, context) must beat the simpler one by this much grouped-CV
# UAR to be kept: smaller gaps are within the noise of the folds.
KEEP_MARGIN = 0.005


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def extract(
    files: list[Path], cache: Path, threads: int, kind: str | None = None,
    trunk: Path | None = None,
) -> dict[str, np.ndarray]:
    """Embedding parts per file (``kind``: an augmented view of it), through the
    run-time path (``embed`` itself) on the recogniser's frames or, given a
    ``trunk`` graph, on the trunk's (the caller keys ``cache`` by which)."""
    if cache.exists():
        data = dict(np.load(cache, allow_pickle=False))
        if (
            list(data["names"]) == [f.name for f in files]
            and list(data.get("context_grid", [])) == list(CONTEXT_GRID)
            and str(data.get("window", "")) == repr(SHIPPED_WINDOW)
        ):
            log(f"embeddings from cache {cache}")
            return data
    frames_of = _frames_source(threads, trunk)
    pooled, pros, context = [], [], []
    start = time.perf_counter()
    for i, path in enumerate(files):
        audio = load_audio_16k(path)
        if kind:
            audio = augment(audio, kind, path.name)
        frames = frames_of(audio)
        n_pool = 2 * frames.shape[1]
        with_prosody = embed(frames, audio, True)
        pooled.append(with_prosody[:n_pool])
        pros.append(with_prosody[n_pool:])
        context.append(
            [embed(frames, audio, False, k)[n_pool:] if k else np.zeros(0) for k in CONTEXT_GRID]
        )
        if (i + 1) % 50 == 0:
            each = (time.perf_counter() - start) / (i + 1)
            log(f"  {i + 1}/{len(files)} clips, {each:.2f} s each")
    data = {
        "names": np.array([f.name for f in files]),
        "pooled": np.stack(pooled),
        "prosody": np.stack(pros),
        "context_grid": np.array(CONTEXT_GRID),
        "window": np.array(repr(SHIPPED_WINDOW)),
    }
    for j, k in enumerate(CONTEXT_GRID):
        if k:
            data[f"context_{k}"] = np.stack([c[j] for c in context])
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, **data)
    return data


def _frames_source(threads: int, trunk: Path | None):
    if trunk is not None:
        from edge_msa.encoders.voice_trunk import VoiceTrunk

        return VoiceTrunk(trunk, SHIPPED_WINDOW, threads=threads)
    from edge_msa.encoders.asr import SpeechRecognizer

    asr = SpeechRecognizer(beam_size=1, threads=threads)
    return lambda audio: asr.recognise(audio, transcribe=False)[1]


def features(data: dict[str, np.ndarray], use_prosody: bool, context: int = 0) -> np.ndarray:
    """The columns in ``embed``'s order: pooled, prosody, context mean."""
    parts = [data["pooled"]] + ([data["prosody"]] if use_prosody else [])
    if context:
        parts.append(data[f"context_{context}"])
    return np.concatenate(parts, axis=1)


def rows_of(data: dict[str, np.ndarray], keep: np.ndarray) -> dict[str, np.ndarray]:
    return {k: (v[keep] if v.shape[:1] == keep.shape else v) for k, v in data.items()}


ROW_KEYS = ("names", "pooled", "prosody")


def stack_rows(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Two corpora's embedding parts, ``a``'s rows then ``b``'s."""
    out = dict(a)
    for key in a:
        if key in ROW_KEYS or key.startswith("context_") and key != "context_grid":
            out[key] = np.concatenate([a[key], b[key]])
    return out
