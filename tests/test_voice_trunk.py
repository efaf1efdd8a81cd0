"""The voice trunk: Whisper's first encoder blocks as an ONNX graph from the
recogniser's own weights, on the recogniser's own mel window."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from edge_msa.encoders.asr import SpeechRecognizer, encoder_window
from edge_msa.encoders.asr_window import SHIPPED_WINDOW
from edge_msa.encoders.voice import VoiceEncoder, default_model_dir
from edge_msa.encoders.voice_trunk import VoiceTrunk
from edge_msa.models import whisper_dir

from .media_util import espeak


@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it synthesises the test speech")
    return espeak("Kids are talking by the door.", tmp_path_factory.mktemp("trunk"))


@pytest.fixture(scope="module")
def asr() -> SpeechRecognizer:
    return SpeechRecognizer(beam_size=1, threads=1)


@pytest.fixture(scope="module")
def voice() -> VoiceEncoder:
    encoder = VoiceEncoder(default_model_dir(), "cpu", 1)
    if encoder.trunk is None:
        pytest.skip("the shipped voice head pools the recogniser's frames (no trunk)")
    return encoder


def test_trunk_reads_exactly_the_recognisers_mel_window(asr, voice, speech):
    size = asr.window.mel_frames(len(speech))
    expected = encoder_window(asr.model.feature_extractor(speech), size)
    mel = voice.trunk.mel(speech)
    assert mel.shape == (80, size)
    np.testing.assert_array_equal(mel, expected)


def test_shipped_trunk_frames_cover_the_window_and_feed_the_head(asr, voice, speech):
    frames = voice.trunk(speech)
    assert frames.shape == (asr.window.mel_frames(len(speech)) // 2, 384)
    assert np.all(np.isfinite(frames))
    # The head reads the trunk, not the recogniser's frames it is handed.
    _, last_layer = asr.recognise(speech, transcribe=False)
    a = voice.encode(last_layer, speech)
    b = voice.encode(None, speech)
    np.testing.assert_array_equal(a.embedding, b.embedding)
    assert voice.trunk.window == SHIPPED_WINDOW


def test_graph_with_every_block_reproduces_the_recognisers_encoder(asr, speech, tmp_path):
    """The graph builder checked against CTranslate2: all four blocks and the
    final norm give the frames the recogniser computes (its weights int8)."""
    onnx = pytest.importorskip("onnx", reason="building the trunk needs the train extra")
    from edge_msa.training.voice.trunk import build_trunk, read_ct2

    path = tmp_path / "encoder.onnx"
    onnx.save(build_trunk(read_ct2(whisper_dir() / "model.bin"), 4, final_norm=True), str(path))
    ours = VoiceTrunk(path, asr.window)(speech)
    _, theirs = asr.recognise(speech, transcribe=False)
    assert ours.shape == theirs.shape
    corr = np.corrcoef(ours.ravel(), theirs.ravel())[0, 1]
    assert corr > 0.99, corr
    # A block fewer is a different representation: the check can fail.
    onnx.save(build_trunk(read_ct2(whisper_dir() / "model.bin"), 3, final_norm=True), str(path))
    fewer = VoiceTrunk(path, asr.window)(speech)
    assert np.corrcoef(fewer.ravel(), theirs.ravel())[0, 1] < 0.9
