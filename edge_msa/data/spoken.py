"""Spoken corpus: labelled transcripts spoken by espeak-ng and heard by the project's own ears.

For each sentence of a MOSI/MOSEI-style label file: speak it with a voice,
rate and pitch drawn from the sentence id (so a rebuild is identical), run
:class:`SpeechRecognizer` (one Whisper encoder pass, greedy decoding as in
the runtime) and the voice stage, and cache one ``<id>.npz`` with the
fusion model's audio tokens, the voice-emotion probabilities, the ASR text,
its confidence and state, the real text and the label.

Resumable (a sentence whose file exists is skipped; files are written under
a temporary name and renamed) and parallel over processes, each with its
own single-threaded models. Each file records which voice head scored it;
after the head changes, a rebuild hears the stale sentences again (one
encoder pass through the window that head was trained on, no decoding) and
replaces their audio tokens and voice probabilities.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import tempfile
import time
import wave
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_msa.data.labels import LabelRow
from edge_msa.fusion.features import audio_tokens
from edge_msa.hashing import sha256_prefix
from edge_msa.types import SAMPLE_RATE

# Voices that come with espeak-ng itself (no mbrola), with variants for pitch/timbre.
VOICES = (
    "en-us",
    "en-us+f2",
    "en-us+m3",
    "en-gb",
    "en-gb+f4",
    "en-gb-x-rp",
    "en-gb-scotland",
    "en-029+m2",
)
RATES = (140, 190)  # words per minute
PITCHES = (30, 70)


@dataclass(frozen=True)
class Voice:
    name: str
    rate: int
    pitch: int


def voice_for(sentence_id: str) -> Voice:
    """A voice, rate and pitch fixed by the id, spread evenly over the ranges."""
    h = int.from_bytes(hashlib.sha256(sentence_id.encode()).digest()[:8], "big")
    return Voice(
        VOICES[h % len(VOICES)],
        RATES[0] + (h >> 8) % (RATES[1] - RATES[0] + 1),
        PITCHES[0] + (h >> 16) % (PITCHES[1] - PITCHES[0] + 1),
    )


def speak(text: str, voice: Voice) -> np.ndarray:
    """``text`` spoken by espeak-ng, as 16 kHz mono float32."""
    from edge_msa.sources.resample import ToMono16k

    with tempfile.TemporaryDirectory() as tmp:
        wav = Path(tmp) / "s.wav"
        cmd = ["espeak-ng", "-v", voice.name, "-s", str(voice.rate), "-p", str(voice.pitch)]
        subprocess.run([*cmd, "-w", str(wav), "--", text], check=True, capture_output=True)
        with wave.open(str(wav)) as w:
            rate = w.getframerate()
            pcm = np.frombuffer(w.readframes(w.getnframes()), np.int16)
    resampler = ToMono16k()
    samples = (pcm.astype(np.float32) / 32768.0)[:, None]
    return np.concatenate([resampler.array(samples, rate), resampler.flush()])


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edge-msa" / "spoken"


def sentence_file(folder: Path, sentence_id: str) -> Path:
    return folder / f"{sentence_id.replace('/', '_')}.npz"


def voice_head_id() -> str:
    """The shipped voice head's file, by sha256 prefix: what scored ``voice_probs``."""
    from edge_msa.data.voice_corpus import VOICE_RECIPE
    from edge_msa.encoders.voice import default_model_dir
    from edge_msa.models import load_manifest

    folder = default_model_dir()
    head = folder / load_manifest(folder, VOICE_RECIPE)["file"]
    return sha256_prefix(head)


def stored_voice_head(path: Path) -> str | None:
    with np.load(path) as z:
        return str(z["voice_head"]) if "voice_head" in z.files else None


class Listener:
    """The runtime's audio path for one sentence: ASR + voice stage + fusion tokens."""

    def __init__(self, threads: int = 1) -> None:
        from edge_msa.encoders.asr import SpeechRecognizer
        from edge_msa.encoders.voice import VoiceEncoder, default_model_dir

        self.asr = SpeechRecognizer(threads=threads)
        self.voice = VoiceEncoder(default_model_dir(), threads=1)
        self.voice_head = voice_head_id()

    def hear(self, audio: np.ndarray, transcribe: bool = True) -> dict[str, object]:
        from edge_msa.encoders.asr import duration_frames

        transcript, frames = self.asr.recognise(audio, transcribe=transcribe)
        features = self.voice.encode(frames, audio)
        out: dict[str, object] = {
            "audio_tokens": audio_tokens(frames, duration_frames(len(audio))).astype(np.float16),
            "voice_probs": features.probs,
            "voice_head": self.voice_head,
            "seconds": len(audio) / SAMPLE_RATE,
        }
        if transcript is not None:
            out.update(
                asr_text=transcript.text,
                asr_state=transcript.state.value,
                avg_logprob=transcript.avg_logprob,
                no_speech_prob=transcript.no_speech_prob,
            )
        return out

    def revoice(self, audio: np.ndarray) -> dict[str, object]:
        """What a new voice head changes: its probabilities and, for a head on
        the recogniser's frames (whose window may have changed too), the audio
        tokens; a head with its own trunk needs no recogniser pass."""
        if self.voice.trunk is None:
            heard = self.hear(audio, transcribe=False)
            return {k: heard[k] for k in ("audio_tokens", "voice_probs", "voice_head")}
        return {"voice_probs": self.voice.encode(None, audio).probs, "voice_head": self.voice_head}


_listener: Listener | None = None


def _init_worker() -> None:
    global _listener
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _listener = Listener(threads=1)


def _render(row: LabelRow, folder: Path) -> float:
    """Speak, hear and cache one sentence; returns the seconds of speech."""
    assert _listener is not None
    voice = voice_for(row.id)
    audio = speak(row.text, voice)
    heard = _listener.hear(audio)
    target = sentence_file(folder, row.id)
    tmp = target.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        id=row.id,
        text=row.text,
        label=np.float32(row.label),
        voice=voice.name,
        rate=voice.rate,
        pitch=voice.pitch,
        **heard,
    )
    tmp.rename(target)
    return float(heard["seconds"])


def _revoice(row: LabelRow, folder: Path) -> float:
    """Hear a cached sentence again with the current voice head (and the encoder
    window it was trained on); keep the transcript."""
    assert _listener is not None
    target = sentence_file(folder, row.id)
    with np.load(target) as z:
        cached = {k: z[k] for k in z.files}
    voice = Voice(str(cached["voice"]), int(cached["rate"]), int(cached["pitch"]))
    heard = _listener.revoice(speak(str(cached["text"]), voice))
    cached.update(heard)
    tmp = target.with_suffix(".tmp.npz")
    np.savez(tmp, **cached)
    tmp.rename(target)
    return float(cached["seconds"])


def build(rows: list[LabelRow], folder: Path, jobs: int, progress: bool = True) -> dict:
    """Render every row not cached yet and re-hear those another voice head
    scored; returns counts and throughput."""
    from tqdm import tqdm

    folder.mkdir(parents=True, exist_ok=True)
    head = voice_head_id()
    todo, stale = [], []
    for r in rows:
        f = sentence_file(folder, r.id)
        if not f.exists():
            todo.append(r)
        elif stored_voice_head(f) != head:
            stale.append(r)
    start, seconds = time.perf_counter(), 0.0
    with ProcessPoolExecutor(max_workers=jobs, initializer=_init_worker) as pool:
        futures = [pool.submit(_render, r, folder) for r in todo]
        futures += [pool.submit(_revoice, r, folder) for r in stale]
        bar = tqdm(total=len(futures), unit="sent", disable=not progress, smoothing=0.05)
        for fut in as_completed(futures):
            seconds += fut.result()
            bar.update(1)
        bar.close()
    wall = time.perf_counter() - start
    done = len(futures)
    return {
        "cached_before": len(rows) - len(todo),
        "rendered": len(todo),
        "revoiced": len(stale),
        "wall_s": round(wall, 1),
        "sentences_per_s": round(done / wall, 3) if done else None,
        "speech_s_per_wall_s": round(seconds / wall, 2) if done else None,
    }


def load(folder: Path, ids: list[str] | None = None) -> list[dict[str, object]]:
    """Cached sentences (all, or those of ``ids`` that exist), as plain dicts."""
    files = sorted(folder.glob("*.npz")) if ids is None else [sentence_file(folder, i) for i in ids]
    out = []
    for f in files:
        if f.name.endswith(".tmp.npz") or not f.exists():
            continue
        with np.load(f) as z:
            out.append({k: (z[k].item() if z[k].ndim == 0 else z[k]) for k in z.files})
    return out


MAX_WORDS = 50  # about 20 s spoken; longer MOSEI sentences are left out of the corpus


def select(rows: list[LabelRow], limit: int | None, seed: int = 0) -> list[LabelRow]:
    """Sentences of at most ``MAX_WORDS`` words; a seeded random ``limit`` of them."""
    rows = [r for r in rows if 0 < len(r.text.split()) <= MAX_WORDS]
    if limit is not None and limit < len(rows):
        pick = np.random.default_rng(seed).choice(len(rows), size=limit, replace=False)
        rows = [rows[i] for i in sorted(pick)]
    return rows


def corpus_folder(cache: Path, labels: Path, split: str) -> Path:
    """``<cache>/<data set folder name>/<split>``, e.g. ``.../spoken/mosi/train``."""
    return cache / labels.resolve().parent.name / split
