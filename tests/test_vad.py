"""Streaming VAD and segmentation on real speech (espeak-ng) with the real Silero model."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_msa.segmentation.segmenter import Segmenter
from edge_msa.segmentation.vad import WINDOW, SileroVad
from edge_msa.types import SAMPLE_RATE, AudioChunk, Utterance
from tests.media_util import espeak

ASSETS = Path(__file__).resolve().parent.parent / "edge_msa" / "assets"
TOLERANCE_S = 0.15
SENTENCES = [
    "Hello there, how are you today?",
    "The weather is really nice.",
    "I would like a cup of coffee, please.",
]
LEAD_S, GAP_S, TAIL_S = 1.0, 1.5, 1.2
NOISE_DB = -50.0




def speech_span(samples: np.ndarray, threshold_db: float = -35.0) -> tuple[int, int]:
    """Speech start and end (samples) from 10 ms frames louder than ``threshold_db`` of the peak."""
    hop = SAMPLE_RATE // 100
    n = len(samples) // hop
    rms = np.sqrt(np.mean(samples[: n * hop].reshape(n, hop).astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    return int(loud[0]) * hop, (int(loud[-1]) + 1) * hop


def noise(count: int, seed: int = 0) -> np.ndarray:
    rms = 10 ** (NOISE_DB / 20)
    return (np.random.default_rng(seed).standard_normal(count) * rms).astype(np.float32)


def place(spoken: list[np.ndarray], gap_s: float) -> tuple[np.ndarray, list[tuple[float, float]]]:
    """Trimmed sentences in noise, ``gap_s`` apart; returns the audio and the true spans (s)."""
    parts: list[np.ndarray] = []
    truth: list[tuple[float, float]] = []
    position = 0
    for index, samples in enumerate(spoken):
        start, end = speech_span(samples)
        silence = int((LEAD_S if index == 0 else gap_s) * SAMPLE_RATE)
        parts += [np.zeros(silence, np.float32), samples[start:end]]
        truth.append(
            ((position + silence) / SAMPLE_RATE, (position + silence + end - start) / SAMPLE_RATE)
        )
        position += silence + end - start
    parts.append(np.zeros(int(TAIL_S * SAMPLE_RATE), np.float32))
    audio = np.concatenate(parts)
    return audio + noise(len(audio)), truth


@pytest.fixture(scope="module")
def spoken(tmp_path_factory: pytest.TempPathFactory) -> list[np.ndarray]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it synthesises the test speech")
    folder = tmp_path_factory.mktemp("espeak")
    return [espeak(text, folder) for text in SENTENCES]


@pytest.fixture(scope="module")
def vad() -> SileroVad:
    return SileroVad()


def push_all(
    segmenter: Segmenter, audio: np.ndarray, chunk: int, t0: float = 0.0
) -> list[Utterance]:
    closed: list[Utterance] = []
    for offset in range(0, len(audio), chunk):
        piece = AudioChunk(audio[offset : offset + chunk], t0 + offset / SAMPLE_RATE)
        closed += segmenter.push(piece)
    return closed


def segment(
    segmenter: Segmenter, audio: np.ndarray, chunk: int, t0: float = 0.0
) -> list[Utterance]:
    return push_all(segmenter, audio, chunk, t0) + segmenter.flush()


def assert_near(utterances: list[Utterance], truth: list[tuple[float, float]]) -> None:
    assert len(utterances) == len(truth), [(u.t0, u.t1) for u in utterances]
    for utterance, (start, end) in zip(utterances, truth, strict=True):
        assert abs(utterance.t0 - start) < TOLERANCE_S, (utterance.t0, start)
        assert abs(utterance.t1 - end) < TOLERANCE_S, (utterance.t1, end)


def test_probs_streaming_matches_one_call(vad: SileroVad, spoken: list[np.ndarray]) -> None:
    audio = spoken[0]
    vad.reset()
    whole = vad.probs(audio)
    vad.reset()
    pieces = np.concatenate([vad.probs(audio[i : i + 333]) for i in range(0, len(audio), 333)])
    assert len(whole) == len(audio) // WINDOW
    np.testing.assert_allclose(pieces, whole, atol=1e-5)
    assert vad.pending == len(audio) % WINDOW


def test_one_utterance_per_sentence(vad: SileroVad, spoken: list[np.ndarray]) -> None:
    audio, truth = place(spoken, GAP_S)
    segmenter = Segmenter(vad)
    utterances = segment(segmenter, audio, 1000, t0=100.0)
    assert_near(utterances, [(a + 100.0, b + 100.0) for a, b in truth])
    for utterance in utterances:
        assert utterance.closed_by == "silence"
        assert utterance.audio.dtype == np.float32
        speech = round((utterance.t1 - utterance.t0) * SAMPLE_RATE)
        assert len(utterance.audio) == speech + 2 * segmenter.pad
        assert utterance.closed_at > 0


def test_silence_gives_nothing(vad: SileroVad) -> None:
    audio = noise(5 * SAMPLE_RATE, seed=1)
    assert segment(Segmenter(vad), audio, 1000) == []


def test_speech_shorter_than_min_speech_is_dropped(
    vad: SileroVad, spoken: list[np.ndarray]
) -> None:
    audio, _ = place(spoken, GAP_S)
    assert segment(Segmenter(vad, min_speech_ms=5000), audio, 1000) == []


def test_max_length_cuts_long_speech(vad: SileroVad, spoken: list[np.ndarray]) -> None:
    # Pauses shorter than the hangover: one long stretch of speech.
    audio, truth = place(spoken, 0.2)
    utterances = segment(Segmenter(vad, max_utterance_s=2.0), audio, 1000)
    assert len(utterances) >= 3
    assert [u.closed_by for u in utterances[:-1]] == ["max_length"] * (len(utterances) - 1)
    assert all(u.t1 - u.t0 <= 2.0 + 1e-6 for u in utterances)
    # Speech that goes on past a cut continues as the next utterance, without a hole.
    assert any(b.t0 == a.t1 for a, b in itertools.pairwise(utterances))
    assert abs(utterances[0].t0 - truth[0][0]) < TOLERANCE_S
    assert abs(utterances[-1].t1 - truth[-1][1]) < TOLERANCE_S


def test_flush_closes_the_utterance_in_flight(vad: SileroVad, spoken: list[np.ndarray]) -> None:
    audio, truth = place(spoken, GAP_S)
    middle = int((truth[1][0] + truth[1][1]) / 2 * SAMPLE_RATE)
    segmenter = Segmenter(vad)
    closed = push_all(segmenter, audio[:middle], 1000)
    assert_near(closed, truth[:1])
    assert segmenter.in_speech
    (last,) = segmenter.flush()
    assert last.closed_by == "end_of_stream"
    assert abs(last.t0 - truth[1][0]) < TOLERANCE_S
    assert last.t1 == pytest.approx(middle / SAMPLE_RATE)
    assert not segmenter.in_speech and segmenter.flush() == []


def test_chunk_size_does_not_matter(vad: SileroVad, spoken: list[np.ndarray]) -> None:
    audio, _ = place(spoken, GAP_S)
    small = segment(Segmenter(vad), audio, 160)
    large = segment(Segmenter(vad), audio, 4000)
    assert [u.closed_by for u in small] == [u.closed_by for u in large]
    for a, b in zip(small, large, strict=True):
        # Times come from different chunk anchors, so only float rounding may differ.
        assert (a.t0, a.t1) == pytest.approx((b.t0, b.t1), abs=1e-9)
        np.testing.assert_array_equal(a.audio, b.audio)


def test_source_timestamps_are_respected(vad: SileroVad, spoken: list[np.ndarray]) -> None:
    # The source skips 2 s of stream time in the silence before the second sentence.
    audio, truth = place(spoken[:2], GAP_S)
    jump_at = int((truth[0][1] + 0.5) * SAMPLE_RATE)
    segmenter = Segmenter(vad)
    closed = segmenter.push(AudioChunk(audio[:jump_at], 0.0))
    closed += segmenter.push(AudioChunk(audio[jump_at:], jump_at / SAMPLE_RATE + 2.0))
    closed += segmenter.flush()
    assert_near(closed, [truth[0], (truth[1][0] + 2.0, truth[1][1] + 2.0)])


def decode_audio(path: Path) -> tuple[np.ndarray, dict[str, float]]:
    """16 kHz mono float32 samples of ``path`` and its streams' durations."""
    av = pytest.importorskip("av")
    chunks: list[np.ndarray] = []
    resampler = av.AudioResampler(format="fltp", layout="mono", rate=SAMPLE_RATE)
    with av.open(str(path)) as container:
        durations = {s.type: float(s.duration * s.time_base) for s in container.streams}
        for frame in container.decode(audio=0):
            chunks += [f.to_ndarray()[0] for f in resampler.resample(frame)]
        chunks += [f.to_ndarray()[0] for f in resampler.resample(None)]
    return np.concatenate(chunks).astype(np.float32), durations


def test_demo_clip_sentences(vad: SileroVad) -> None:
    manifest = json.loads((ASSETS / "demo.json").read_text())
    audio, durations = decode_audio(ASSETS / "demo.mp4")
    assert set(durations) == {"audio", "video"}
    for duration in durations.values():
        assert duration == pytest.approx(manifest["duration_s"], abs=0.1)
    truth = [(s["start"], s["end"]) for s in manifest["sentences"]]
    assert len(truth) == 5
    utterances = segment(Segmenter(vad), audio, 1000)
    assert_near(utterances, truth)
    assert all(u.closed_by == "silence" for u in utterances)


def test_draft_is_the_utterance_before_the_hangover_ends(
    vad: SileroVad, spoken: list[np.ndarray]
) -> None:
    """The draft (recognised early) has exactly the audio and times of the
    utterance closed later, and is ready well before the close."""
    audio, _ = place(spoken[:2], gap_s=1.5)
    segmenter = Segmenter(vad, hangover_ms=500, pad_ms=150)
    chunk = SAMPLE_RATE // 10
    drafts: dict[tuple[float, float], tuple[Utterance, int]] = {}
    closed: list[tuple[Utterance, int]] = []
    for offset in range(0, len(audio), chunk):
        for utt in segmenter.push(AudioChunk(audio[offset : offset + chunk], offset / SAMPLE_RATE)):
            closed.append((utt, offset))
        draft = segmenter.draft()
        if draft is not None:
            drafts.setdefault((draft.t0, draft.t1), (draft, offset))
    assert len(closed) == 2
    for utt, closed_offset in closed:
        draft, draft_offset = drafts[(utt.t0, utt.t1)]
        assert len(draft.audio) == len(utt.audio)
        # The same samples, but for tail padding not yet heard, which is silence.
        heard = len(utt.audio) - segmenter.pad
        np.testing.assert_array_equal(draft.audio[:heard], utt.audio[:heard])
        tail, real = draft.audio[heard:], utt.audio[heard:]
        assert np.all((tail == real) | (tail == 0))
        # Ready within a chunk of the pause starting: 400 ms of the 500 ms hangover early.
        assert (closed_offset - draft_offset) / SAMPLE_RATE >= 0.4
    # Pauses inside a sentence may give drafts that speech outdates; never one after the close.
    assert segmenter.draft() is None


def test_a_break_in_the_stream_closes_the_utterance(
    vad: SileroVad, spoken: list[np.ndarray]
) -> None:
    """A source that reconnects mid-sentence: the speech before the break is one
    utterance and the speech after it another, not one joined across the gap."""
    audio, (truth,) = place(spoken[:1], gap_s=0.0)
    cut = int((truth[0] + truth[1]) / 2 * SAMPLE_RATE)
    segmenter = Segmenter(vad)
    before = push_all(segmenter, audio[:cut], 1600)
    after = segment(segmenter, audio[cut:], 1600, t0=cut / SAMPLE_RATE + 5.0)
    assert before == []
    first, *rest = after
    assert first.closed_by == "gap"
    assert abs(first.t0 - truth[0]) < TOLERANCE_S and first.t1 <= cut / SAMPLE_RATE + 0.01
    assert rest and all(u.t0 >= cut / SAMPLE_RATE + 5.0 for u in rest)


class _Scripted:
    """A VAD that says what the test wants: one probability per window, in order."""

    def __init__(self, probs: list[float]) -> None:
        self._probs = list(probs)

    def probs(self, samples: np.ndarray) -> np.ndarray:
        count = len(samples) // WINDOW
        out, self._probs = self._probs[:count], self._probs[count:]
        return np.array(out, np.float32)

    def reset(self) -> None:
        pass


def test_a_loud_window_keeps_a_shout_going_but_a_quiet_one_does_not() -> None:
    """After a confident start, windows Silero scores 0.3 stay speech while they are
    as loud as the start (a shout), and end it when they are 20 dB quieter."""
    probs = [0.0] * 10 + [0.9] * 3 + [0.3] * 30 + [0.0] * 30
    loud = np.full(WINDOW, 0.3, np.float32)
    for later_db, kept_s in ((0.0, 33 * WINDOW / SAMPLE_RATE), (-20.0, 3 * WINDOW / SAMPLE_RATE)):
        windows = [loud * 0] * 10 + [loud] * 3 + [loud * 10 ** (later_db / 20)] * 30
        audio = np.concatenate(windows + [loud * 0] * 30)
        (utterance,) = segment(Segmenter(_Scripted(probs), min_speech_ms=50), audio, WINDOW)
        assert utterance.t1 - utterance.t0 == pytest.approx(kept_s, abs=1e-3)


@pytest.mark.parametrize("clip", ["03-01-05-02-01-01-06", "03-01-05-02-02-01-06",
                                  "03-01-05-02-01-02-06"])
def test_shouted_anger_is_one_utterance(vad: SileroVad, clip: str) -> None:
    """Strong anger of RAVDESS actor 06: Silero's probability sags inside the shout;
    the utterance still covers most of the loud span (before: none, or under 0.3 s)."""
    from edge_msa.data.voice_corpus import load_audio_16k
    from tests.conftest import need_data

    path = need_data("ravdess_speech", "Actor_06", f"{clip}.flac")
    audio = np.concatenate([np.zeros(SAMPLE_RATE // 2, np.float32), load_audio_16k(path),
                            np.zeros(SAMPLE_RATE, np.float32)])
    start, end = speech_span(audio)
    (utterance,) = segment(Segmenter(vad), audio, 1600)
    covered = min(utterance.t1, end / SAMPLE_RATE) - max(utterance.t0, start / SAMPLE_RATE)
    assert covered >= 0.6 * (end - start) / SAMPLE_RATE, (utterance.t0, utterance.t1)
