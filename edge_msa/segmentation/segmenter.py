"""Cut a stream of audio chunks into utterances with the VAD.

Decisions are made per 512-sample VAD window (32 ms) with hysteresis, as in
Silero's own ``get_speech_timestamps``, but online:

- speech starts at the first window with ``prob >= threshold``;
- it ends where the probability first fell below ``threshold - 0.15`` and
  stayed there (or between the two thresholds) for ``hangover_ms``; windows
  between the thresholds count as speech, so breath pauses do not split;
  a window within ``LOUD_DB`` of the utterance's loudest speech counts as
  confident speech down to a probability of ``LOUD_FLOOR`` (shouts);
- stretches shorter than ``min_speech_ms`` are dropped;
- an utterance about to exceed ``max_utterance_s`` of speech is closed
  (``"max_length"``) at a window edge; if speech goes on, the next one starts
  at the cut. If the limit falls inside a pause still within the hangover,
  the utterance ends where the pause began (also ``"max_length"``, since the
  limit is why it closed now).

Sample positions are counted from the start of the stream; their stream times
come from each chunk's ``t``, so gaps and timestamps from the source are
respected. The audio handed out is padded by ``pad_ms`` on both sides where
those samples exist: a short pre-roll is kept while nobody speaks, and a
``"max_length"`` cut has no tail padding because the samples after the cut
have not arrived yet.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import replace

import numpy as np

from edge_msa.segmentation.vad import WINDOW, SpeechProbabilities
from edge_msa.types import SAMPLE_RATE, AudioChunk, Utterance

# A jump in chunk times longer than this is a break in the stream, not a pause.
MAX_GAP_S = 1.0
# How far the end-of-speech threshold sits below the start threshold.
_HYSTERESIS = 0.15
# Shouted speech: inside a shout Silero's probability often sags to 0.2-0.45
# although a confident window opened the utterance (RAVDESS, strong emotion: 7
# of 1,080 clips lost and 13 cut under 1 s; scripts/vad_coverage.py). A window
# at least LOUD_FLOOR probable and within LOUD_DB of the loudest speech so far
# keeps the utterance going.
LOUD_FLOOR = 0.15
LOUD_DB = 10.0


def _samples(ms: float) -> int:
    return int(round(ms * SAMPLE_RATE / 1000))


class _Timeline:
    """Maps absolute sample positions to stream times, one anchor per chunk."""

    def __init__(self) -> None:
        self._starts: list[int] = []
        self._times: list[float] = []

    def add(self, start: int, t: float) -> None:
        self._starts.append(start)
        self._times.append(t)

    def time_of(self, position: int) -> float:
        i = max(bisect.bisect_right(self._starts, position) - 1, 0)
        return self._times[i] + (position - self._starts[i]) / SAMPLE_RATE

    def end_time(self, end: int) -> float:
        """Time just after the sample before ``end`` (so a gap after it is not counted)."""
        return self.time_of(end - 1) + 1 / SAMPLE_RATE

    def forget_before(self, position: int) -> None:
        keep = max(bisect.bisect_right(self._starts, position) - 1, 0)
        del self._starts[:keep], self._times[:keep]


class _Samples:
    """The recent samples of the stream, addressed by absolute position."""

    def __init__(self) -> None:
        self._parts: list[np.ndarray] = []
        self.start = 0  # position of the first kept sample
        self.end = 0  # position after the last sample

    def append(self, samples: np.ndarray) -> None:
        self._parts.append(samples)
        self.end += len(samples)

    def _joined(self) -> np.ndarray:
        if len(self._parts) != 1:
            self._parts = [np.concatenate(self._parts) if self._parts else np.zeros(0, np.float32)]
        return self._parts[0]

    def slice(self, a: int, b: int) -> np.ndarray:
        """A copy of samples ``a`` to ``b``, from the parts that hold them only:
        the level of each new window must not join the whole utterance so far."""
        a, b = max(a, self.start), min(b, self.end)
        pieces, end = [], self.end
        for part in reversed(self._parts):
            begin = end - len(part)
            if begin < b and end > a:
                pieces.append(part[max(a - begin, 0) : min(b, end) - begin])
            if begin <= a:
                break
            end = begin
        return np.concatenate(pieces[::-1]) if pieces else np.zeros(0, np.float32)

    def forget_before(self, position: int) -> None:
        position = min(position, self.end)
        if position <= self.start:
            return  # nothing to drop; skip the copy while an utterance grows
        self._parts = [self._joined()[position - self.start :]]
        self.start = position


class Segmenter:
    """Turns ``AudioChunk``s into ``Utterance``s; one instance per stream.

    The VAD is stateful and owned by this instance (it is reset here and on
    ``flush``), so two live segmenters must not share one.
    """

    def __init__(
        self,
        vad: SpeechProbabilities,
        threshold: float = 0.5,
        min_speech_ms: float = 250,
        hangover_ms: float = 500,
        max_utterance_s: float = 15.0,
        pad_ms: float = 150,
    ) -> None:
        self.vad = vad
        self.threshold = threshold
        self.neg_threshold = max(threshold - _HYSTERESIS, 0.01)
        self.min_speech = _samples(min_speech_ms)
        self.hangover = _samples(hangover_ms)
        self.max_length = _samples(max_utterance_s * 1000)
        self.pad = _samples(pad_ms)
        self._reset_stream()

    def _reset_stream(self) -> None:
        self.vad.reset()
        self._timeline = _Timeline()
        self._buffer = _Samples()
        self._next_window = 0  # position of the next window the VAD will score
        self._start: int | None = None  # speech start of the utterance in flight
        self._quiet_from: int | None = None  # where the probability last dropped low
        self._loudest = -np.inf  # dB of the loudest speech window of the utterance in flight

    @property
    def in_speech(self) -> bool:
        return self._start is not None

    def push(self, chunk: AudioChunk) -> list[Utterance]:
        """Feed one chunk; returns the utterances it closed (usually none)."""
        samples = np.asarray(chunk.samples, np.float32).ravel()
        if len(samples) == 0:
            return []
        closed: list[Utterance] = []
        if self._buffer.end and chunk.t - self._timeline.end_time(self._buffer.end) > MAX_GAP_S:
            # The source was away (a reconnection): what was said before the gap
            # is one utterance, whatever is said after it another.
            closed += self.flush(closed_by="gap")
        self._timeline.add(self._buffer.end, chunk.t)
        self._buffer.append(samples)
        for prob in self.vad.probs(samples):
            closed += self._step(float(prob), self._next_window)
            self._next_window += WINDOW
        self._forget_old()
        return closed

    def flush(self, t: float | None = None, closed_by: str = "end_of_stream") -> list[Utterance]:
        """End of stream: close the utterance in flight, then forget the stream.

        ``t`` is the stream time at which the source ended; when given, it is
        the end of an utterance still speaking (instead of the last sample's time).
        """
        closed: list[Utterance] = []
        if self._start is not None:
            end = self._quiet_from if self._quiet_from is not None else self._buffer.end
            speaking = self._quiet_from is None
            utterance = self._close(end, closed_by)
            if utterance is not None:
                if speaking and t is not None:
                    utterance = replace(utterance, t1=max(t, utterance.t0))
                closed.append(utterance)
        self._reset_stream()
        return closed

    def _step(self, prob: float, window: int) -> list[Utterance]:
        """Advance the state machine by one VAD window starting at ``window``."""
        window_end = window + WINDOW
        if self._start is None:
            if prob >= self.threshold:
                self._start = window
                self._loudest = self._level(window)
            return []
        level = self._level(window) if prob >= LOUD_FLOOR else -np.inf
        if prob >= self.threshold or level >= self._loudest - LOUD_DB:
            self._quiet_from = None
            self._loudest = max(self._loudest, level)
        elif prob < self.neg_threshold and self._quiet_from is None:
            self._quiet_from = window
        if self._quiet_from is not None and window_end - self._quiet_from >= self.hangover:
            return self._emit(self._quiet_from, "silence")
        # Cut before the next window would push the speech past the limit.
        if window_end + WINDOW - self._start > self.max_length:
            return self._cut(window_end)
        return []

    def _level(self, window: int) -> float:
        """The window's power in dB (full scale 0)."""
        x = self._buffer.slice(window, window + WINDOW)
        return float(10 * np.log10(np.mean(x * x) + 1e-10))

    def _cut(self, window_end: int) -> list[Utterance]:
        """Close at the length limit; speech still going on continues as a new utterance."""
        if self._quiet_from is not None:
            return self._emit(self._quiet_from, "max_length")
        closed = self._emit(window_end, "max_length")
        self._start = window_end
        return closed

    def _emit(self, end: int, closed_by: str) -> list[Utterance]:
        utterance = self._close(end, closed_by)
        return [] if utterance is None else [utterance]

    @property
    def pause_ms(self) -> float:
        """How long the pause under way has lasted so far (0 while speech goes on)."""
        if self._start is None or self._quiet_from is None:
            return 0.0
        return (self._next_window - self._quiet_from) * 1000 / SAMPLE_RATE

    def draft(self, min_pause_ms: float = 0) -> Utterance | None:
        """The utterance the VAD will close if the pause under way lasts.

        Its times and length are that utterance's, ready once the VAD has
        heard ``min_pause_ms`` of the pause (at least one 32 ms window):
        recognition can start during the hangover instead of after it. A
        longer ``min_pause_ms`` is a surer prediction (a breath inside a
        sentence is short) and leaves less of the hangover to hide the work
        in. Tail padding not heard yet is silence (the VAD just judged that
        stretch not speech). None while speech goes on or the pause is shorter.
        """
        start, end = self._start, self._quiet_from
        if start is None or end is None or self.pause_ms < min_pause_ms:
            return None
        draft = self._utterance(start, end, "silence")
        if draft is None or self._buffer.end >= end + self.pad:
            return draft
        missing = np.zeros(end + self.pad - self._buffer.end, np.float32)
        return replace(draft, audio=np.concatenate([draft.audio, missing]))

    def _close(self, end: int, closed_by: str) -> Utterance | None:
        start = self._start
        self._start = self._quiet_from = None
        if start is None:
            return None
        return self._utterance(start, end, closed_by)

    def _utterance(self, start: int, end: int, closed_by: str) -> Utterance | None:
        if end - start < self.min_speech:
            return None
        return Utterance(
            audio=self._buffer.slice(start - self.pad, end + self.pad),
            t0=self._timeline.time_of(start),
            t1=self._timeline.end_time(end),
            closed_by=closed_by,
            closed_at=time.monotonic(),
        )

    def _forget_old(self) -> None:
        # Keep the pre-roll for the earliest start still possible, and no more.
        earliest = self._start if self._start is not None else self._next_window
        self._buffer.forget_before(earliest - self.pad)
        self._timeline.forget_before(earliest - self.pad)
