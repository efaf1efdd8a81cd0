"""The Whisper encoder's window: how long an utterance's is, and when a short
window's transcript is not to be trusted (issue 16, docs/asr.md).

Whisper was trained on 30 s inputs. Decoding from an encoder output cut at
the audio's end loops (word error rate 0.15 -> 1.25 on eight espeak-ng
sentences): the decoder says the sentence again, confidently, instead of
ending. Padding kept after the audio makes loops rarer the longer the window
is (on RAVDESS about 10% of 5 s windows, 3% of 7 s, 0.2% of 10 s); a loop
is recognised in the text and the utterance decoded again from a longer
window, an unsure transcript from the full one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from edge_msa.types import SAMPLE_RATE

MEL_PER_SECOND = 100  # Whisper's log-mel frames per second
MEL_PER_ENCODER_FRAME = 2  # the encoder halves the frame rate: 20 ms per output frame
WINDOW_MEL_FRAMES = 3000  # Whisper's fixed input: 30 s
FULL_WINDOW_S = WINDOW_MEL_FRAMES / MEL_PER_SECOND
LOG_PROB_THRESHOLD = -1.0  # faster-whisper's defaults, also the short window's checks
COMPRESSION_RATIO_THRESHOLD = 2.4
NO_SPEECH_THRESHOLD = 0.6


@dataclass(frozen=True)
class WindowPolicy:
    """Which encoder window an utterance gets and how its decoding is checked.

    ``sizes_s``: fixed windows in seconds; the smallest that holds the audio
    plus ``margin_s`` of padding is used, 30 s when none does. ``(30.0,)`` is
    Whisper's fixed window. ``fit_step_s``: instead, the audio plus the margin
    rounded up to this step (whisper.cpp's ``audio_ctx``). A window under 30 s
    decodes at temperature 0 without timestamps, at most ``max_tokens_per_s``
    tokens per second of audio (plus 16), with ``no_repeat_ngram_size``. Its
    transcript loops when the text compresses more than
    ``compression_ratio_threshold``, repeats a run of ``repeat_words`` words
    or uses up the token budget; it is unsure when its average
    log-probability is under ``log_prob_threshold`` and it is not silence.
    ``fallback``: a loop is decoded again from a window twice as long (see
    :meth:`retry_seconds`), an unsure transcript or a second loop from the full
    window.
    """

    sizes_s: tuple[float, ...] = (FULL_WINDOW_S,)
    fit_step_s: float | None = None
    margin_s: float = 1.0
    fallback: bool = True
    no_repeat_ngram_size: int = 0
    max_tokens_per_s: float = 8.0
    log_prob_threshold: float = LOG_PROB_THRESHOLD
    compression_ratio_threshold: float = COMPRESSION_RATIO_THRESHOLD
    # Three words repeat in ordinary sentences ("I don't know ... I don't know"):
    # on espeak-ng MOSI dev four cut the needless fallbacks by 7-37%, same WER.
    repeat_words: int = 4

    def seconds(self, n_samples: int) -> float:
        """The window for ``n_samples`` of audio, in seconds (at most 30)."""
        return self._snap(n_samples / SAMPLE_RATE + self.margin_s)

    def retry_seconds(self, window_s: float) -> float:
        """The window a loop at ``window_s`` is decoded again from: twice as
        long, snapped up to a listed size or the fit step (30 s at most)."""
        return self._snap(2.0 * window_s)

    def _snap(self, need: float) -> float:
        if self.fit_step_s:
            fit = math.ceil(need / self.fit_step_s - 1e-9) * self.fit_step_s
            return min(fit, FULL_WINDOW_S)
        return min([s for s in sorted(self.sizes_s) if s >= need - 1e-9] or [FULL_WINDOW_S])

    def mel_frames(self, n_samples: int) -> int:
        """The encoder's input length: even, so every output frame covers 20 ms."""
        return mel_frames(self.seconds(n_samples))


FULL_WINDOW = WindowPolicy()
# The window the shipped voice head and fusion model were trained on (docs/asr.md:
# WER at or below the full window's on real speech, the pass about a sixth of its
# cost). Training, corpora and evaluation hear through it, like the runtime.
SHIPPED_WINDOW = WindowPolicy(sizes_s=(5.0, 10.0, 15.0, FULL_WINDOW_S), margin_s=1.0)


def window_settings(policy: WindowPolicy) -> dict[str, object]:
    """What a model's manifest records of the window its inputs were heard through."""
    if policy.fit_step_s:
        return {"fit_step_s": policy.fit_step_s, "margin_s": policy.margin_s}
    return {"sizes_s": list(policy.sizes_s), "margin_s": policy.margin_s}


def mel_frames(seconds: float) -> int:
    mel = round(seconds * MEL_PER_SECOND / MEL_PER_ENCODER_FRAME)
    return min(max(mel, 1) * MEL_PER_ENCODER_FRAME, WINDOW_MEL_FRAMES)


def window_policy(
    window: str | list[float] | tuple[float, ...], margin_s: float = 1.0, fallback: bool = True
) -> WindowPolicy:
    """``"full"`` (Whisper's 30 s), ``"fit"`` (the audio plus the margin, in
    whole seconds) or window sizes in seconds (``[5, 10, 15, 30]`` or
    ``"5,10,15,30"``); the config's ``asr.window``."""
    if isinstance(window, str):
        if window == "full":
            return FULL_WINDOW
        if window == "fit":
            return WindowPolicy(fit_step_s=1.0, margin_s=margin_s, fallback=fallback)
        window = [float(x) for x in window.split(",") if x.strip()]
    sizes = tuple(sorted(float(x) for x in window))
    if not sizes or sizes[0] <= 0 or sizes[-1] > FULL_WINDOW_S:
        raise ValueError(f"window sizes must lie in (0, {FULL_WINDOW_S:g}] s, got {window}")
    return WindowPolicy(sizes_s=sizes, margin_s=margin_s, fallback=fallback)


def repeats(text: str, words: int) -> bool:
    """Whether some run of ``words`` words occurs twice in ``text`` (case and
    punctuation ignored); never for ``words`` < 1."""
    seq = "".join(ch if ch.isalnum() or ch == "'" else " " for ch in text.lower()).split()
    runs = [tuple(seq[i : i + words]) for i in range(len(seq) - words + 1)] if words > 0 else []
    return len(set(runs)) < len(runs)
