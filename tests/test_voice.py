"""Voice stage on real audio with the real models: the shared Whisper encoder
pass, the shipped voice-emotion head, and bad input."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_msa.encoders.asr import WINDOW_ENCODER_FRAMES, SpeechRecognizer, duration_frames
from edge_msa.encoders.asr_window import FULL_WINDOW
from edge_msa.encoders.voice import VoiceEncoder, audio_state, default_model_dir, embed, pool
from edge_msa.types import SAMPLE_RATE, VOICE_EMOTIONS, ModalityState

from .conftest import need_data
from .media_util import espeak

SENTENCE = "I am really happy with how this turned out."




@pytest.fixture(scope="module")
def speech(tmp_path_factory) -> np.ndarray:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it synthesises the test speech")
    return espeak(SENTENCE, tmp_path_factory.mktemp("voice"))


@pytest.fixture(scope="module")
def asr() -> SpeechRecognizer:
    return SpeechRecognizer(beam_size=1, threads=1)


@pytest.fixture(scope="module")
def voice() -> VoiceEncoder:
    return VoiceEncoder(default_model_dir(), "cpu", 1)


@pytest.fixture(scope="module")
def recognised(asr, speech):
    return asr.recognise(speech, transcribe=True)


def check_features(feats, voice: VoiceEncoder) -> None:
    assert feats.embedding.shape == (voice.embedding_dim,)
    assert feats.embedding.dtype == np.float32
    assert np.all(np.isfinite(feats.embedding))
    assert feats.probs.shape == (len(VOICE_EMOTIONS),)
    assert feats.probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert np.all(feats.probs >= 0)


def test_speech_gives_a_documented_embedding(asr, recognised, speech, voice):
    _, frames = recognised
    # The whole padded window sized to the speech; the frames covering it come first,
    # and the margin's padding (50 frames, all a head may read) after them.
    window_frames = asr.window.mel_frames(len(speech)) // 2
    assert frames.shape == (window_frames, 384) and window_frames < WINDOW_ENCODER_FRAMES
    assert duration_frames(len(speech)) + 50 <= window_frames
    assert np.all(np.isfinite(frames))
    # 768 pooled values (mean and std of 384), plus prosody (9) and the context
    # mean (384) when the head uses them.
    expected = 768 + 9 * voice.use_prosody + 384 * (voice.context_frames > 0)
    assert voice.embedding_dim == expected
    check_features(voice.encode(frames, speech), voice)


def test_prosody_is_not_computed_when_the_head_does_not_use_it(recognised, speech, voice,
                                                               monkeypatch):
    from edge_msa.encoders import voice as voice_mod

    if voice.use_prosody:
        pytest.skip("the shipped head uses prosody")

    def no_prosody(audio):
        raise AssertionError("prosody computed for a head without it")

    monkeypatch.setattr(voice_mod, "prosody", no_prosody)
    _, frames = recognised
    check_features(voice.encode(frames, speech), voice)


def test_embedding_pools_the_speech_frames_and_the_context_after_them(recognised, speech):
    _, frames = recognised
    count = duration_frames(len(speech))
    out = embed(frames, speech, use_prosody=False, context_frames=50)
    np.testing.assert_allclose(out[:768], pool(frames[:count]), atol=1e-6)
    np.testing.assert_allclose(out[768:], frames[: count + 50].mean(axis=0), atol=1e-5)
    # Frames beyond the context window do not matter.
    changed = frames.copy()
    changed[count + 50 :] += 1.0
    np.testing.assert_allclose(embed(changed, speech, False, 50), out, atol=1e-6)


def test_shared_encoder_transcript_equals_plain_faster_whisper(asr, recognised, speech):
    # Through Whisper's own 30 s window the shared pass is faster-whisper's decoding;
    # the shipped shorter window hears the same words here.
    transcript = asr.recognition(speech, True, FULL_WINDOW).transcript
    assert recognised[0] is not None and recognised[0].text == transcript.text
    segments, _ = asr.model.transcribe(
        speech,
        language="en",
        beam_size=1,
        condition_on_previous_text=False,
        without_timestamps=True,
        vad_filter=False,
    )
    segments = list(segments)
    plain = " ".join(s.text.strip() for s in segments).strip()
    assert transcript is not None
    assert transcript.text == plain
    assert transcript.avg_logprob == pytest.approx(segments[0].avg_logprob, abs=1e-4)
    assert "happy" in transcript.text.lower()
    assert transcript.state is ModalityState.PRESENT


def test_transcription_off_gives_the_same_embedding_and_no_text(asr, recognised, speech, voice):
    transcript, frames = asr.recognise(speech, transcribe=False)
    assert transcript is None
    np.testing.assert_allclose(frames, recognised[1], atol=1e-5)
    a = voice.encode(frames, speech).embedding
    b = voice.encode(recognised[1], speech).embedding
    np.testing.assert_allclose(a, b, atol=1e-5)


def _bad_inputs(speech: np.ndarray) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "silence": np.zeros(SAMPLE_RATE, np.float32),
        "clipped": np.clip(speech * 30.0, -1.0, 1.0),
        "dc_offset": speech * 0.3 + 0.6,
        "tenth_of_a_second": speech[SAMPLE_RATE // 2 : SAMPLE_RATE // 2 + SAMPLE_RATE // 10],
        "empty": np.zeros(0, np.float32),
        "nan_and_inf": np.where(rng.random(len(speech)) < 0.01, np.nan, speech).astype(np.float32),
    }


@pytest.mark.parametrize(
    "name",
    ["silence", "clipped", "dc_offset", "tenth_of_a_second", "empty", "nan_and_inf"],
)
def test_bad_audio_gives_a_defined_result(name, asr, voice, speech):
    audio = _bad_inputs(speech)[name]
    transcript, frames = asr.recognise(audio, transcribe=name in ("silence", "clipped"))
    assert frames.ndim == 2 and frames.shape[0] >= 1 and np.all(np.isfinite(frames))
    check_features(voice.encode(frames, audio), voice)
    if name == "silence":
        assert transcript is not None and transcript.state is ModalityState.ABSENT
    if name in ("silence", "tenth_of_a_second", "empty"):
        assert audio_state(audio) is ModalityState.ABSENT
    if name in ("clipped", "dc_offset"):
        assert audio_state(audio) is ModalityState.PRESENT


def test_wrong_frame_shape_is_a_clear_error(speech):
    with pytest.raises(ValueError, match="encoder frames"):
        embed(np.zeros(384, np.float32), speech, use_prosody=False)


@pytest.mark.data
def test_emodb_speakers_are_recognised(asr, voice):
    """Sanity check, not a measurement: the shipped head was fitted on every
    EmoDB speaker, so this only shows the run-time path reproduces training
    (a broken resampler, pooling or class order would fall to chance, 0.14).
    The held-out numbers are in models/voice/manifest.json."""
    from edge_msa.data.voice_corpus import emodb_files, emodb_label, load_audio_16k

    folder = need_data("emodb")
    files = emodb_files(folder, speakers=("03", "08"))
    # One clip per emotion keeps the test short.
    picked: dict[str, Path] = {}
    for path in files:
        picked.setdefault(emodb_label(path)[1], path)
    hits = 0
    for emotion, path in sorted(picked.items()):
        audio = load_audio_16k(path)
        _, frames = asr.recognise(audio, transcribe=False)
        probs = voice.encode(frames, audio).probs
        hits += VOICE_EMOTIONS[int(np.argmax(probs))] == emotion
    assert len(picked) == len(VOICE_EMOTIONS)
    assert hits >= 5


@pytest.mark.data
def test_eval_voice_scores_only_the_chosen_speakers_with_the_chosen_head(tmp_path):
    """`eval voice --speakers --model`: the held-out measurement from outside
    (a head trained with --exclude-speakers, scored on those speakers)."""
    import json

    from edge_msa.data.voice_corpus import emodb_files

    from .conftest import cli

    folder = tmp_path / "emodb"
    folder.mkdir()
    for speaker in ("03", "08"):
        for path in emodb_files(need_data("emodb"), speakers=(speaker,))[:2]:
            (folder / path.name).symlink_to(path)
    res = cli("eval", "voice", "--emodb", str(folder), "--speakers", "08",
              "--model", str(default_model_dir()), "--json")
    assert res.returncode == 0, res.stderr
    metrics = json.loads(res.stdout.splitlines()[-1])
    assert metrics["n"] == 2 and list(metrics["per_speaker_uar"]) == ["08"]
    res = cli("eval", "voice", "--emodb", str(folder), "--speakers", "99")
    assert res.returncode == 2 and "speakers 99" in res.stderr


def test_ravdess_reader_walks_actor_folders_and_folds_keep_people_apart(tmp_path):
    """ravdess_speech's Actor_XX/*.flac and a flat ravdess/ folder (its clips
    not in ravdess_speech only); grouped folds never split a person."""
    from edge_msa.data.voice_corpus import group_folds, ravdess_clips, ravdess_training_clips

    for actor in ("01", "02", "03"):
        folder = tmp_path / "ravdess_speech" / f"Actor_{actor}"
        folder.mkdir(parents=True)
        for emotion in ("01", "05", "08"):  # neutral, angry, surprised (dropped)
            (folder / f"03-01-{emotion}-01-01-01-{actor}.flac").write_bytes(b"")
    (tmp_path / "ravdess").mkdir()
    (tmp_path / "ravdess" / "03-01-05-01-01-01-01.wav").write_bytes(b"")  # also in speech
    (tmp_path / "ravdess" / "03-01-04-01-01-01-01.wav").write_bytes(b"")  # not: kept
    clips = ravdess_clips(tmp_path / "ravdess_speech")
    assert len(clips) == 6 and {e for _, _, e in clips} == {"neutral", "anger"}
    assert {s for _, s, _ in clips} == {"ravdess01", "ravdess02", "ravdess03"}
    both = ravdess_training_clips(tmp_path)
    assert len(both) == 7 and sum(p.suffix == ".wav" for p, _, _ in both) == 1

    groups = np.array(["03", "08", "09", "ravdess01", "ravdess02", "ravdess03", "ravdess01"])
    corpus = np.array(["emodb"] * 3 + ["ravdess"] * 4)
    fold = group_folds(groups, corpus, 2)
    for g in set(groups):
        assert len(set(fold[groups == g])) == 1
    assert set(fold[corpus == "ravdess"]) == {0, 1} and set(fold[corpus == "emodb"]) == {0, 1}
