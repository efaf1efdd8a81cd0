"""The Whisper encoder over a window sized to the utterance (issue 16, docs/asr.md):
the same words as the full 30 s window on a short real clip, the fallback to the
full window when the short one fails its checks, and an encoder input that
really follows the window. Real model, real espeak-ng speech; no timings."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace

import numpy as np
import pytest

from edge_msa.config import AsrConfig
from edge_msa.encoders.asr import WINDOW_ENCODER_FRAMES, SpeechRecognizer
from edge_msa.encoders.asr_window import (
    FULL_WINDOW,
    SHIPPED_WINDOW,
    WindowPolicy,
    repeats,
    window_policy,
    window_settings,
)
from edge_msa.encoders.voice import default_model_dir
from edge_msa.evaluation.asr_eval import normalise, parse_candidate
from edge_msa.types import SAMPLE_RATE

from .media_util import espeak

SENTENCE = "I am really happy with how this turned out."
BUCKETS = window_policy([5, 10, 15, 30], margin_s=1.0)
FIT = window_policy("fit", margin_s=1.0)


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it synthesises the test speech")
    return espeak(SENTENCE, tmp_path_factory.mktemp("asr_window"))


@pytest.fixture(scope="module")
def asr() -> SpeechRecognizer:
    return SpeechRecognizer(beam_size=1, threads=1)


@pytest.fixture(scope="module")
def full(asr, speech):
    return asr.recognition(speech, True, FULL_WINDOW)


def test_window_sizes_follow_the_utterance():
    second = SAMPLE_RATE
    assert BUCKETS.seconds(2 * second) == 5.0
    assert BUCKETS.seconds(4 * second) == 5.0
    assert BUCKETS.seconds(4 * second + 1) == 10.0  # 1 s of margin no longer fits in 5
    assert BUCKETS.seconds(14 * second) == 15.0
    assert BUCKETS.seconds(20 * second) == 30.0
    assert BUCKETS.seconds(60 * second) == 30.0
    assert FIT.seconds(int(2.3 * second)) == 4.0
    assert FIT.seconds(40 * second) == 30.0
    assert FULL_WINDOW.seconds(second // 10) == 30.0
    assert FIT.mel_frames(int(2.3 * second)) == 400
    assert window_policy("full") is FULL_WINDOW
    # A loop is decoded again from a window twice as long.
    assert BUCKETS.retry_seconds(5.0) == 10.0
    assert BUCKETS.retry_seconds(10.0) == 30.0
    assert FIT.retry_seconds(4.0) == 8.0
    assert FIT.retry_seconds(16.0) == 30.0


def test_encoder_input_follows_the_window(asr, speech, full):
    assert full.frames.shape == (WINDOW_ENCODER_FRAMES, asr.embedding_dim)
    seconds = len(speech) / SAMPLE_RATE
    assert seconds + 1.0 <= 5.0, "the test sentence should fit the 5 s window"
    for policy, window_s in ((BUCKETS, 5.0), (FIT, float(np.ceil(seconds + 1.0)))):
        out = asr.recognition(speech, False, policy)
        assert out.window_s == window_s
        assert out.frames.shape == (int(window_s * 50), asr.embedding_dim)
        assert np.all(np.isfinite(out.frames))
    # Longer audio takes the next size: 7 s of it fills a 10 s window.
    longer = np.concatenate([speech, np.zeros(7 * SAMPLE_RATE - len(speech), np.float32)])
    assert asr.recognition(longer, False, BUCKETS).frames.shape[0] == 500
    # The recogniser's own policy applies to ``recognise`` (the runtime's call).
    windowed = SpeechRecognizer(beam_size=1, threads=1, window=BUCKETS)
    transcript, frames = windowed.recognise(speech, transcribe=True)
    assert frames.shape[0] == 250 and transcript is not None


def test_short_window_gives_the_full_windows_words(asr, speech, full):
    assert "happy" in full.transcript.text.lower()
    for policy in (BUCKETS, FIT):
        out = asr.recognition(speech, True, policy)
        assert not out.fallback, out.short_text
        assert normalise(out.transcript.text) == normalise(full.transcript.text)
        assert out.transcript.state is full.transcript.state
        # The speech frames are close to the full window's, not equal: another
        # window is another input to the voice head and the fusion model.
        n = int(np.ceil(len(speech) / SAMPLE_RATE * 50))
        a, b = full.frames[:n].mean(axis=0), out.frames[:n].mean(axis=0)
        assert np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)) > 0.9


def test_failed_checks_fall_back_to_the_full_window(asr, speech, full):
    # No average log-probability reaches 0: the short window is always unsure,
    # and an unsure transcript goes straight to the full window.
    impossible = replace(BUCKETS, log_prob_threshold=0.0)
    out = asr.recognition(speech, True, impossible)
    assert out.fallback and out.passes == (5.0, 30.0)
    assert out.short_text  # what the short window said is kept for the evaluation
    assert out.transcript == full.transcript
    # The features stay the first window's: they depend on the audio alone.
    assert out.frames.shape[0] == 250
    np.testing.assert_allclose(out.frames, asr.recognition(speech, False, BUCKETS).frames,
                               atol=1e-5)
    # Without the fallback the short window's own transcript stands.
    alone = asr.recognition(speech, True, replace(impossible, fallback=False))
    assert not alone.fallback and alone.transcript.text == out.short_text


def test_a_loop_tries_a_longer_window_first(asr, speech, full):
    # Every text compresses "too well": each short window loops, so the
    # utterance goes 5 s -> 10 s -> the full window.
    looping = replace(BUCKETS, compression_ratio_threshold=0.0)
    out = asr.recognition(speech, True, looping)
    assert out.passes == (5.0, 10.0, 30.0)
    assert out.transcript == full.transcript
    assert out.frames.shape[0] == 250
    # A repeated run of words is a loop too; the real sentence repeats none.
    assert not repeats(full.transcript.text, 2)
    twice = np.concatenate([speech, np.zeros(SAMPLE_RATE // 2, np.float32), speech])
    said_twice = asr.recognition(twice, True, FIT)
    # ... so a sentence really said twice costs the longer passes, not its words.
    assert repeats(said_twice.short_text or "", 4), said_twice.short_text
    assert said_twice.passes[-1] == 30.0
    assert said_twice.transcript == asr.recognition(twice, True, FULL_WINDOW).transcript


def test_repeated_words_count_as_a_loop():
    assert repeats("Dogs are sitting by the door. Dogs are sitting", 3)
    assert not repeats("Dogs are sitting by the door.", 3)
    assert not repeats("I really, really like it", 3)
    assert not repeats("anything at all", 0)


def test_config_and_candidates_give_the_same_policies():
    # The default is the window the shipped voice head was trained on.
    default = AsrConfig()
    assert window_policy(default.window, default.window_margin_s) == SHIPPED_WINDOW
    voice = json.loads((default_model_dir() / "manifest.json").read_text())
    assert window_settings(SHIPPED_WINDOW) == voice["settings"]["asr_window"]
    cfg = AsrConfig(window=[10, 5, 30], window_margin_s=2.0, window_fallback=False)
    policy = window_policy(cfg.window, cfg.window_margin_s, cfg.window_fallback)
    assert policy == WindowPolicy(sizes_s=(5.0, 10.0, 30.0), margin_s=2.0, fallback=False)
    assert parse_candidate("5,10,30@2") == replace(policy, fallback=True)
    assert parse_candidate("fit@1.5:nr4") == WindowPolicy(
        fit_step_s=1.0, margin_s=1.5, no_repeat_ngram_size=4
    )
    assert parse_candidate("full") is FULL_WINDOW
    with pytest.raises(ValueError):
        parse_candidate("auto")
    with pytest.raises(ValueError):
        window_policy([0, 40])
    with pytest.raises(ValueError):
        AsrConfig(window=[5, 45])


def test_eval_asr_compares_windows_on_the_same_clips(speech, tmp_path):
    from edge_msa.evaluation.asr_eval import Clip, evaluate_asr, format_asr_table

    assert normalise("Don't -- re-run it!") == "dont re run it"
    clips = [Clip("happy", speech, SENTENCE.lower().rstrip("."), "happiness")]
    out = tmp_path / "clips.jsonl"
    metrics = evaluate_asr({"spoken": clips}, ["full", "5,10,15,30@1"], per_utterance=out,
                           progress=False)
    full, short = metrics["spoken"]["full"], metrics["spoken"]["5,10,15,30@1"]
    assert full["ratio_p50"] == 1.0 and full["window_s"] == 30.0 and short["window_s"] == 5.0
    assert short["wer"] == full["wer"] < 0.5
    assert 0.9 < short["frame_cos"] < 1.0 and "frame_cos" not in full
    assert "voice_uar" in short
    assert len(out.read_text().splitlines()) == 2
    assert "| spoken | 5,10,15,30@1 | 1 |" in format_asr_table(metrics)


def test_a_window_other_than_the_voice_heads_is_named(caplog):
    from edge_msa.encoders.voice import VoiceEncoder
    from edge_msa.runtime.app import warn_other_window

    voice = VoiceEncoder(default_model_dir(), threads=1)
    with caplog.at_level("WARNING", logger="edge_msa.runtime.app"):
        warn_other_window(SHIPPED_WINDOW, voice)
        assert not caplog.records
        warn_other_window(FULL_WINDOW, voice)
    assert len(caplog.records) == 1 and "asr.window" in caplog.records[0].getMessage()
