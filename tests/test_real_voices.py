"""Real voices in the fusion training (issue 17 item 4): RAVDESS-named clips heard
through the runtime's audio path, valence targets, text mixing, actor split."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from edge_msa.fusion.features import TEXT_DIM

# (emotion code, actor): two validation actors, surprise (08) to be dropped.
CLIPS = [
    ("03", "01"),
    ("04", "01"),
    ("05", "02"),
    ("01", "02"),
    ("02", "03"),
    ("08", "03"),
    ("03", "17"),
    ("06", "18"),
]


@pytest.fixture(scope="module")
def ravdess(tmp_path_factory):
    """A few espeak-ng clips named and filed as RAVDESS speech, heard and cached."""
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is needed to make the clips")
    from edge_msa.data import voices

    root = tmp_path_factory.mktemp("ravdess")
    for i, (emo, actor) in enumerate(CLIPS):
        folder = root / "ravdess_speech" / f"Actor_{actor}"
        folder.mkdir(parents=True, exist_ok=True)
        statement = "01" if i % 2 == 0 else "02"
        name = f"03-01-{emo}-01-{statement}-01-{actor}.wav"
        text = voices.RAVDESS_STATEMENTS[statement]
        cmd = ["espeak-ng", "-v", "en-us", "-w", str(folder / name), "--", text]
        subprocess.run(cmd, check=True, capture_output=True)
    clips = voices.ravdess_speech_clips(root / "ravdess_speech")
    cache = root / "cache"
    first = voices.build(clips, cache, progress=False)
    again = voices.build(clips, cache, progress=False)
    return root, clips, cache, first, again


def test_clips_are_heard_once_and_cached(ravdess):
    from edge_msa.data import voices

    _, clips, cache, first, again = ravdess
    assert len(clips) == len(CLIPS) and first["heard"] == len(CLIPS)
    assert again["heard"] == 0 and again["reheard"] == 0
    rows = voices.load(cache, clips)
    for clip, row in zip(clips, rows, strict=True):
        assert row["audio_tokens"].shape[1] == 384 and row["voice_probs"].shape == (7,)
        assert row["emotion"] == clip.emotion and row["actor"] == clip.actor
        assert "door" in str(row["asr_text"]).lower()


def _rows(ravdess, tmp_path):
    """RealVoices from the cached clips, with a made-up out-of-fold bank."""
    from edge_msa.data import voices
    from edge_msa.data.joint import TextBank
    from edge_msa.training.fusion.config import RealVoicesConfig
    from edge_msa.training.fusion.voices import make_rows

    _, clips, cache, _, _ = ravdess
    names = [c.path.name for c in clips]
    bank = {"probs": np.eye(7, dtype=np.float32)[np.arange(len(names)) % 7]}
    probs = voices.out_of_fold_probs(bank, names)
    rv = RealVoicesConfig(valid_actors=["17", "18"])
    texts = TextBank(cache=tmp_path, threads=1)
    return make_rows(voices.load(cache, clips), probs, rv, texts), rv, bank


def _sentences(n=40):
    from edge_msa.data.joint import Sentences

    labels = np.linspace(-2.5, 2.5, n).astype(np.float32)
    spoken = np.arange(n) % 2 == 0
    k = int(spoken.sum())
    speech = np.full(n, -1)
    speech[spoken] = np.arange(k)
    return Sentences(
        ids=[f"s{i}" for i in range(n)],
        labels=labels,
        text=np.full((n, TEXT_DIM), 3.0, np.float32),
        text_dropped=np.full((n, TEXT_DIM), 3.0, np.float32),
        speech=speech,
        asr_text=np.full((k, TEXT_DIM), 4.0, np.float32),
        asr_state=np.array(["simulated"] * k),
        audio=[np.ones((5, 384), np.float16)] * k,
        voice_probs=np.full((k, 7), 1 / 7, np.float32),
    )


def test_rows_targets_split_and_out_of_fold_probs(ravdess, tmp_path):
    from edge_msa.training.fusion.voices import balanced_repeats, split_actors

    rows, rv, bank = _rows(ravdess, tmp_path)
    assert len(rows) == len(CLIPS) - 1 and "surprised" not in rows.emotions  # surprise dropped
    want = {"happy": 1.5, "sad": -1.5, "angry": -1.5, "neutral": 0.0, "calm": 0.0, "fearful": -1.5}
    assert rows.labels.tolist() == [want[e] for e in rows.emotions]
    # probabilities come from the bank (by file name), not from the shipped head
    first = rows.stems.index(ravdess[1][0].stem)
    np.testing.assert_array_equal(rows.voice_probs[first], bank["probs"][0])
    train, valid = split_actors(rows, rv.valid_actors)
    assert set(train.actors) == {"01", "02", "03"} and set(valid.actors) == {"17", "18"}
    assert not set(train.stems) & set(valid.stems)
    reps = balanced_repeats(train, rv)  # 1 positive, 2 neutral, 2 negative clips
    counts = {s: int((np.sign(train.labels[reps]) == s).sum()) for s in (-1, 0, 1)}
    assert counts == {-1: 2, 0: 2, 1: 2}


def test_clip_rows_mix_three_texts_keep_the_voice_target_and_no_face(ravdess, tmp_path):
    from edge_msa.data.joint import Witnesses
    from edge_msa.training.fusion.config import TrainConfig
    from edge_msa.training.fusion.data import mixed_batcher
    from edge_msa.training.fusion.voices import clip_inputs, neutral_pool, split_actors

    rows, rv, _ = _rows(ravdess, tmp_path)
    train, _ = split_actors(rows, rv.valid_actors)
    s = _sentences()
    pool = neutral_pool(s, rv.neutral_below)
    assert len(pool) and np.all(np.abs(s.labels[pool]) < 0.5) and np.all(s.speech[pool] >= 0)
    cfg = TrainConfig(p_text_absent=0.0, data={"real_voices": rv.model_dump()})
    rng = np.random.default_rng(0)
    kinds = []
    for _ in range(200):
        teacher, student, kind = clip_inputs(train, 0, s, pool, rng, cfg, rv)
        kinds.append(kind)
        assert teacher.audio is not None and student.audio is not None  # never text-only
        assert teacher.vision is None and student.vision is None
        assert np.array_equal(student.voice, train.voice_probs[0])
        if kind == "own":
            assert np.array_equal(student.text, train.asr_text[0]) and student.simulated
            assert np.array_equal(teacher.text, train.text[0])
        elif kind == "neutral":
            assert np.all(teacher.text == 3.0) and np.all(student.text == 4.0)
        else:
            assert student.text is None and np.array_equal(teacher.text, train.text[0])
    share = {k: kinds.count(k) / len(kinds) for k in ("own", "neutral", "none")}
    assert 0.3 < share["own"] < 0.5 and 0.3 < share["neutral"] < 0.5 and 0.1 < share["none"] < 0.3

    faces = {"tokens": np.zeros((3, 2, 135), np.float16), "labels": np.array([3, 4, 6])}
    bank = {"probs": np.eye(7, dtype=np.float32)[[4, 5, 6]]}
    voices = {**bank, "emotions": np.array(["happiness", "sadness", "neutral"])}
    batcher = mixed_batcher(s, Witnesses(faces, voices, 0.0), train, cfg)
    n_clip_rows = int(batcher.speech[len(s) :].sum())
    assert len(batcher.speech) == len(s) + n_clip_rows and n_clip_rows == 6
    rows_ = np.array([0, 2, len(s), len(s) + 5])
    t1, t2, y, speech = batcher(rows_, rng)
    assert speech.tolist() == [True, True, True, True]
    assert y[2] in (1.5, 0.0, -1.5) and y[3] in (1.5, 0.0, -1.5)
    assert t1["present"][2:, 2].tolist() == [0, 0] and t1["present"][2:, 1].tolist() == [1, 1]


def test_real_voice_validation_and_selection_score():
    from edge_msa.training.fusion.config import RealVoicesConfig, TrainConfig
    from edge_msa.training.fusion.loop import combined_score
    from edge_msa.training.fusion.voices import RAVDESS_FEED, valence_metrics

    y = np.array([1.5, 0.0, -1.5, -1.5])
    m = valence_metrics(np.array([1.0, 0.2, -1.0, 0.3]), y)
    assert m["bacc_3class"] == pytest.approx((1 + 1 + 0.5) / 3)
    assert m["bacc_pos_neg"] == pytest.approx((1 + 0.5) / 2)
    metrics = {"mosi_dev": {"text": {"mae": 1.0}}, RAVDESS_FEED: {"asr": {"mae": 2.0}}}
    cfg = TrainConfig(data={"real_voices": {"valid_weight": 3.0}})
    assert combined_score(metrics, cfg) == pytest.approx((1 + 3 * 2) / 4)
    assert combined_score(metrics, TrainConfig()) == pytest.approx(1.5)
    # A set with class labels (MELD) counts 1 - weighted F1, not its MAE.
    metrics["meld_dev"] = {"text": {"mae": 9.0, "f1_3class": 0.6}}
    assert combined_score(metrics, TrainConfig(), ["meld_dev"]) == pytest.approx(3.4 / 3)
    with pytest.raises(ValueError, match="must be 1"):
        RealVoicesConfig(p_own_text=0.5, p_neutral_text=0.5, p_no_text=0.5)
    assert TrainConfig().data.real_voices is None  # off unless a config turns it on


def test_ravdess_speech_names_parse_on_the_real_data():
    from pathlib import Path

    from edge_msa.data.voices import ravdess_speech_clips
    from edge_msa.training.settings import default_data

    folder = Path(default_data()) / "ravdess_speech"
    if not folder.is_dir():
        pytest.skip(f"{folder} not found (set EDGE_MSA_DATA to the data sets folder)")
    clips = ravdess_speech_clips(folder)
    assert len(clips) == 1080 and len({c.actor for c in clips}) == 18
    assert sum(c.emotion == "surprised" for c in clips) == 18 * 8
    assert {c.statement for c in clips} == {
        "Kids are talking by the door",
        "Dogs are sitting by the door",
    }
