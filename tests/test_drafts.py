"""Drafts: recognition started in a pause, before the utterance closes.

Real Silero VAD and segmenter on espeak-ng speech; the pipeline test runs the
real models on a clip of the demo's pictures with that speech as its sound,
at wall-clock pace, with the recogniser held up in-process for drafts only
(the real passes run untouched). No timing assertions: only what happened
before what.
"""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import av
import numpy as np
import pytest

from edge_msa.config import load_config
from edge_msa.runtime.analyzer import Analyzer, Heard
from edge_msa.runtime.app import load_models
from edge_msa.runtime.drafts import Hearing
from edge_msa.runtime.pipeline import Pipeline, PipelineListener
from edge_msa.segmentation.segmenter import Segmenter
from edge_msa.segmentation.vad import SileroVad
from edge_msa.sources import DEMO_CLIP, build_sources
from edge_msa.types import SAMPLE_RATE, AudioChunk, SentimentResult
from tests.media_util import espeak

FIRST = "The weather today is really nice."
SECOND = "I would like a cup of coffee, please."
LEAD_S, BREATH_S, TAIL_S = 0.8, 0.35, 2.0  # the breath: under the 500 ms hangover
CHUNK = SAMPLE_RATE // 10  # as the media source hands audio on


@pytest.fixture(scope="module")
def sentences(tmp_path_factory: pytest.TempPathFactory) -> tuple[np.ndarray, np.ndarray]:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it synthesises the test speech")
    folder = tmp_path_factory.mktemp("espeak")
    return _trim(espeak(FIRST, folder)), _trim(espeak(SECOND, folder))


def _trim(samples: np.ndarray) -> np.ndarray:
    loud = np.flatnonzero(np.abs(samples) > 0.02 * np.abs(samples).max())
    return samples[loud[0] : loud[-1] + 1]


def _silence(seconds: float, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(int(seconds * SAMPLE_RATE)) * 10 ** (-50 / 20)).astype(np.float32)


def two_sentences(sentences) -> tuple[np.ndarray, tuple[float, float]]:
    """One utterance with a breath inside it; returns the audio and the second
    sentence's span (s)."""
    first, second = sentences
    parts = [_silence(LEAD_S, 0), first, _silence(BREATH_S, 1), second, _silence(TAIL_S, 2)]
    start = (len(parts[0]) + len(first) + len(parts[2])) / SAMPLE_RATE
    return np.concatenate(parts), (start, start + len(second) / SAMPLE_RATE)


def test_no_draft_before_the_pause_length(sentences) -> None:
    """Fed through the real VAD chunk by chunk, as the pipeline does: a draft
    starts at the first chunk after which the pause has lasted draft_pause_ms,
    never before; the breath inside the utterance is long enough for a draft
    at 96 ms (which speech then outdates) but not at 320 ms."""
    audio, _ = two_sentences(sentences)
    for pause_ms in (96, 320):
        starts, counts = asyncio.run(_drafts_started(audio, pause_ms))
        assert starts, "no draft at all"
        for pause_then, pause_before in starts:
            assert pause_then >= pause_ms
            assert pause_before < pause_ms  # the chunk before: too short, and not started
        # The last draft is the utterance's; the others were outdated by speech going on.
        assert (counts.used, counts.outdated) == (1, len(starts) - 1)
        if pause_ms == 96:
            assert len(starts) >= 2  # the breath (and the comma) as well as the end
        else:
            assert len(starts) == 1  # only the real end


async def _drafts_started(audio: np.ndarray, pause_ms: float):
    """(pause when a draft started, pause after the chunk before) for each draft,
    and the counts."""
    segmenter = Segmenter(SileroVad(), hangover_ms=500)
    pool = _Inline()
    hearing = Hearing(lambda a: Heard.nothing(), pool, pool, pause_ms)
    starts: list[tuple[float, float]] = []
    before = 0.0
    for offset in range(0, len(audio), CHUNK):
        for utt in segmenter.push(AudioChunk(audio[offset : offset + CHUNK], offset / SAMPLE_RATE)):
            future = hearing.take(utt) or hearing.real(utt)
            await future
        started = hearing.counts.started
        hearing.after_audio(segmenter)
        if hearing.counts.started > started:
            starts.append((segmenter.pause_ms, before))
        await asyncio.sleep(0)  # the done callbacks: a finished draft is no longer in flight
        before = segmenter.pause_ms
    for utt in segmenter.flush():
        await (hearing.take(utt) or hearing.real(utt))
    return starts, hearing.counts


class _Inline:
    """An executor that runs the work in the caller's thread, at once."""

    def submit(self, fn, *args):
        from concurrent.futures import Future

        future: Future = Future()
        future.set_running_or_notify_cancel()
        try:
            future.set_result(fn(*args))
        except Exception as e:
            future.set_exception(e)
        return future


def _clip(audio: np.ndarray, path: Path) -> Path:
    """The demo's pictures with ``audio`` as their sound (Matroska, PCM)."""
    seconds = len(audio) / SAMPLE_RATE
    with av.open(str(DEMO_CLIP)) as inp, av.open(str(path), "w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        sound = out.add_stream("pcm_s16le", rate=SAMPLE_RATE, layout="mono")
        for packet in inp.demux(inp.streams.video[0]):
            if packet.dts is None or packet.pts * packet.time_base > seconds:
                continue
            packet.stream = video
            out.mux(packet)
        pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2")
        for i in range(0, len(pcm), CHUNK):
            frame = av.AudioFrame.from_ndarray(pcm[None, i : i + CHUNK], format="s16",
                                               layout="mono")
            frame.sample_rate, frame.pts = SAMPLE_RATE, i
            for packet in sound.encode(frame):
                out.mux(packet)
        for packet in sound.encode(None):
            out.mux(packet)
    return path


class _Watch(PipelineListener):
    """Frames analysed and results delivered while the outdated draft is held up."""

    def __init__(self, release: threading.Event) -> None:
        self.release = release
        self.frames_while_held: list[float] = []
        self.first_frame = float("inf")  # the run-clock time of the clip's start
        self.results: list[SentimentResult] = []
        self.held_at_result: list[bool] = []

    def frame(self, frame, face) -> None:
        self.first_frame = min(self.first_frame, frame.t)
        if not self.release.is_set():
            self.frames_while_held.append(frame.t)

    def result(self, result: SentimentResult) -> None:
        self.results.append(result)
        self.held_at_result.append(not self.release.is_set())
        self.release.set()  # the utterance is out: let the outdated draft end


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_outdated_draft_delays_neither_the_real_pass_nor_the_faces(
    sentences, tmp_path, monkeypatch
) -> None:
    """A breath inside an utterance starts a draft that the second sentence
    outdates; that draft is held up (a pass that cannot be cancelled). The
    utterance's real pass runs and its result is delivered while the draft is
    still held, and the face stage analyses the frames of the second sentence
    meanwhile (they belong to speech still going on)."""
    audio, (second_t0, second_t1) = two_sentences(sentences)
    media = _clip(audio, tmp_path / "breath.mkv")
    release = threading.Event()
    drafts_held: list[bool] = []
    hear = Analyzer.hear

    def held_draft(self, samples):
        if threading.current_thread().name.startswith("drafts"):
            drafts_held.append(True)
            release.wait(120)  # bounded: a pipeline that waits for it fails, not hangs
        return hear(self, samples)

    monkeypatch.setattr(Analyzer, "hear", held_draft)
    cfg = load_config(None, {
        "source": {"media": str(media), "realtime": True},
        "output": {"sinks": [], "include_transcript": True},
        "runtime": {"log_level": "WARNING"},
        "asr": {"early_start": True, "draft_pause_ms": 96},
    }, environ={})
    sources = build_sources(cfg.source)
    for source in sources:
        source.open()
    segmenter, analyzer, face, name = load_models(cfg, True)
    pipeline = Pipeline(cfg, sources, segmenter, analyzer, None, [], name, face)
    watch = _Watch(release)
    pipeline.listeners.append(watch)
    try:
        asyncio.run(pipeline.run())
    finally:
        release.set()
    drafts = pipeline.drafts
    assert drafts_held == [True]  # one draft began; none after it while it was held
    assert (drafts.started, drafts.used, drafts.outdated, drafts.outdated_ran) == (1, 0, 1, 1)
    # One utterance (the breath is inside it), from the real pass, out while the draft was held.
    assert len(watch.results) == 1 and watch.held_at_result == [True]
    words = (watch.results[0].transcript or "").lower()
    assert "nice" in words and "coffee" in words, words  # both sentences: one utterance
    events = [e for e, _ in drafts.log]
    assert events[:3] == ["draft", "outdated", "real"]
    # The real pass ended first (the draft was held until its result was out);
    # the draft ends after it, during the run or after it.
    assert "done real" in events
    assert "done draft" not in events or events.index("done real") < events.index("done draft")
    # The second sentence's frames (10 a second are sampled) were analysed, not
    # skipped (frame times are on the run's clock: the clip starts at the first).
    t0, t1 = watch.first_frame + second_t0 + 0.2, watch.first_frame + second_t1 - 0.2
    during = [t for t in watch.frames_while_held if t0 <= t <= t1]
    assert len(during) >= 0.5 * 10 * (t1 - t0), (t0, t1, watch.frames_while_held)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_recogniser_runs_a_real_pass_beside_a_running_draft(sentences) -> None:
    """The Whisper model has a worker for each pass: a second pass begins while
    the first is still in CTranslate2 (with one worker it would sit in its queue)."""
    cfg = load_config(None, {"vision": {"enabled": False}}, environ={})
    _, analyzer, _, _ = load_models(cfg, False)
    whisper = analyzer.asr.model.model  # CTranslate2's Whisper
    audio = np.concatenate([sentences[0], _silence(0.3, 3), sentences[1]])
    seen: set[tuple[int, int]] = set()
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(analyzer.hear, audio)
        while whisper.num_active_batches == 0 and not first.done():
            time.sleep(0.002)
        second = pool.submit(analyzer.hear, audio)
        while not (first.done() and second.done()):
            seen.add((whisper.num_active_batches, whisper.num_queued_batches))
            time.sleep(0.002)
    assert (2, 0) in seen, seen
    assert first.result().transcript.text == second.result().transcript.text
