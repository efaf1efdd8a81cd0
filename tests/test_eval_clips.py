"""`edge-msa eval clips`, `eval voice --folder` and `eval text` on MELD's CSV.

Labelled folders made here (espeak-ng speech, a silent clip, the demo video's
head), real models, the real CLI; the RAVDESS tests use the shared data and
skip without it (EDGE_MSA_DATA)."""

from __future__ import annotations

import csv
import json
import shutil
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_msa.data.class_metrics import balanced_accuracy, three_class
from edge_msa.data.clip_labels import LabelledClip, folder_clips, read_clip_labels
from edge_msa.evaluation.clips_eval import ClipOutcome, clip_metrics, combine

from .conftest import cli, need_data
from .media_util import demo_head

POSITIVE = "I love this place, the people here are wonderful and I am so happy."
NEGATIVE = "This is terrible, I hate it and everything went wrong today."
NEUTRAL = "The meeting starts at ten and ends at noon."


def _payload(t0: float, t1: float, score: float, audio: str = "present",
             transcript: str = "") -> dict:
    return {
        "t_start": f"2026-01-01T00:00:{t0:06.3f}+00:00",
        "t_end": f"2026-01-01T00:00:{t1:06.3f}+00:00",
        "score": score,
        "polarity": "positive" if score >= 0.5 else "negative" if score <= -0.5 else "neutral",
        "modalities": {"text": "present" if audio == "present" else "absent", "audio": audio,
                       "vision": "present"},
        "transcript": transcript,
    }


# ------------------------------------------------------------------ pieces, no models


def test_results_of_a_clip_are_weighted_by_duration_and_face_only_ones_wait():
    out = combine("c", [
        _payload(4.0, 5.0, -1.0, transcript="then this"),
        _payload(0.0, 3.0, 2.0, transcript="first this"),
        _payload(6.0, 11.0, -3.0, audio="absent"),  # face-only: a clip with speech ignores it
    ])
    assert out.score == pytest.approx((3 * 2.0 + 1 * -1.0) / 4)
    assert out.polarity == "positive" and out.transcript == "first this then this"
    only_face = combine("c", [_payload(0.0, 5.0, -0.7, audio="absent")])
    assert only_face.score == pytest.approx(-0.7) and only_face.polarity == "negative"
    assert combine("c", []).score is None


def test_metrics_balanced_surprise_left_out_and_no_result_counted():
    clips = [
        LabelledClip(Path("a"), "happiness"), LabelledClip(Path("b"), "anger"),
        LabelledClip(Path("c"), "sadness"), LabelledClip(Path("d"), "neutral"),
        LabelledClip(Path("e"), "surprise"), LabelledClip(Path("f"), None, -2.0, "no way"),
        LabelledClip(Path("g"), "fear"),
    ]
    outcomes = [
        ClipOutcome("a", score=1.0, polarity="positive"),
        ClipOutcome("b", score=0.8, polarity="positive"),
        ClipOutcome("c", score=-0.2, polarity="neutral"),
        ClipOutcome("d", score=0.1, polarity="neutral"),
        ClipOutcome("e", score=2.0, polarity="positive"),
        ClipOutcome("f", score=-1.0, polarity="negative", transcript="no"),
        ClipOutcome("g"),  # no result
    ]
    m = clip_metrics(clips, outcomes)
    assert m["n"] == 7 and m["no_result"] == 1
    # valence: positive 1/1, neutral 1/1, negative (b, c, f) 1/3; surprise out
    assert m["valence_n"] == 5 and m["valence_balanced_acc"] == pytest.approx((1 + 1 + 1 / 3) / 3)
    # positive vs negative: a right; b, c, f: c and f right
    assert m["posneg_n"] == 4 and m["posneg_balanced_acc"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["mae"] == pytest.approx(1.0) and m["wer"] == pytest.approx(0.5)
    assert m["per_emotion"]["fear"] == {"n": 1, "no_result": 1, "mean_score": pytest.approx(
        float("nan"), nan_ok=True), "valence": "negative"}
    assert m["per_emotion"]["surprise"]["valence"] is None


def test_three_class_metrics():
    truth = ["positive", "negative", "neutral", "neutral"]
    pred = ["positive", "neutral", "neutral", "positive"]
    m = three_class(truth, pred)
    assert m["acc_3class"] == 0.5
    # F1 (support): positive 2/3 (1), negative 0 (1), neutral 1/2 (2)
    assert m["f1_3class"] == pytest.approx((2 / 3 + 0 + 2 * 0.5) / 4)
    assert m["confusion_3class"] == [[0, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert balanced_accuracy(truth, pred) == pytest.approx((1 + 0 + 0.5) / 3)


def test_label_file_errors_are_one_line(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"")
    bad = tmp_path / "labels.csv"
    bad.write_text("file,emotion\na.wav,happy\n")
    with pytest.raises(ValueError, match="no column path"):
        read_clip_labels(bad)
    bad.write_text("path,transcript\na.wav,hi\n")
    with pytest.raises(ValueError, match="no column emotion or label"):
        read_clip_labels(bad)
    bad.write_text("path,emotion\na.wav,happy\nb.wav,sad\n")
    with pytest.raises(FileNotFoundError, match="line 3: clip .*b.wav not found"):
        read_clip_labels(bad)
    bad.write_text("path,emotion\na.wav,jolly\n")
    with pytest.raises(ValueError, match="line 2: unknown emotion 'jolly'"):
        read_clip_labels(bad)
    bad.write_text("path,label\na.wav,4\n")
    with pytest.raises(ValueError, match=r"outside \[-3, 3\]"):
        read_clip_labels(bad)
    res = cli("eval", "clips", "--labels", str(tmp_path / "none.csv"))
    assert res.returncode == 2 and res.stderr.strip().count("\n") == 0
    assert "none.csv: no such file or folder" in res.stderr


def test_ravdess_names_actors_and_labels_csv(tmp_path):
    for actor in ("15", "16"):
        (tmp_path / f"Actor_{actor}").mkdir()
        for code in ("01", "02", "05", "08"):
            (tmp_path / f"Actor_{actor}" / f"03-01-{code}-01-02-01-{actor}.flac").write_bytes(b"")
    (tmp_path / "Actor_15" / "notes.flac").write_bytes(b"")
    clips = folder_clips(tmp_path, speakers=["15"])
    assert [(c.emotion, c.speaker) for c in clips] == [
        ("neutral", "15"), ("neutral", "15"), ("anger", "15"), ("surprise", "15")
    ]
    assert clips[0].transcript == "Dogs are sitting by the door"
    assert len(folder_clips(tmp_path, limit=3)) == 3
    with pytest.raises(ValueError, match="no clips of speakers 7"):
        folder_clips(tmp_path, speakers=["07"])
    # A labels.csv beside the clips wins over the names.
    (tmp_path / "labels.csv").write_text("path,emotion,speaker\nActor_16/notes.flac,sad,x\n")
    (tmp_path / "Actor_16" / "notes.flac").write_bytes(b"")
    assert [c.emotion for c in folder_clips(tmp_path)] == ["sadness"]


# ------------------------------------------------------------------ through the runtime


def _espeak_wav(text: str, path: Path) -> Path:
    import subprocess

    cmd = ["espeak-ng", "-v", "en-us", "-s", "160", "-w", str(path), text]
    subprocess.run(cmd, check=True, capture_output=True)
    return path


def _silence(path: Path, seconds: float = 1.5) -> Path:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(np.zeros(int(16000 * seconds), np.int16).tobytes())
    return path


@pytest.fixture(scope="module")
def clip_folder(tmp_path_factory) -> Path:
    if shutil.which("espeak-ng") is None:
        pytest.skip("espeak-ng is not installed; it synthesises the test speech")
    folder = tmp_path_factory.mktemp("clips")
    (folder / "audio").mkdir()
    _espeak_wav(POSITIVE, folder / "audio" / "pos.wav")
    _espeak_wav(NEGATIVE, folder / "audio" / "neg.wav")
    _silence(folder / "audio" / "quiet.wav")
    demo_head(folder / "demo.mp4", 4.5)  # the demo's first, positive sentence, with a face
    rows = [
        ("audio/pos.wav", "happy", "", POSITIVE),
        ("audio/neg.wav", "angry", "", NEGATIVE),
        ("audio/quiet.wav", "neutral", "", ""),
        ("demo.mp4", "", "2.0", "I absolutely love this place, the people here are wonderful."),
    ]
    with (folder / "labels.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "emotion", "label", "transcript"])
        writer.writerows(rows)
    return folder


def test_eval_clips_through_the_runtime(clip_folder, tmp_path):
    out = tmp_path / "clips.jsonl"
    res = cli("eval", "clips", "--labels", str(clip_folder / "labels.csv"), "--threads", "1",
              "--json", "--out", str(out))
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert m["n"] == 4 and m["no_result"] == 1 and m["errors"] == 0
    assert "valence 3-class balanced acc" in res.stdout
    rows = {Path(r["path"]).name: r for r in map(json.loads, out.read_text().splitlines())}
    assert rows["quiet.wav"]["score"] is None and rows["quiet.wav"]["results"] == []
    # Clear sentences: the words decide (text present), the sign follows them.
    assert rows["pos.wav"]["score"] > 0.5 > -0.5 > rows["neg.wav"]["score"]
    assert m["posneg_n"] == 3 and m["posneg_balanced_acc"] == 1.0
    assert m["valence_n"] == 3 and m["valence_balanced_acc"] == 1.0
    assert m["mae_n"] == 1 and m["mae"] == pytest.approx(abs(2.0 - rows["demo.mp4"]["score"]))
    # The words come back: espeak-ng is the harsh case, yet far from all wrong.
    assert m["wer_n"] == 3 and m["wer"] < 0.4
    assert rows["pos.wav"]["heard"] and "love" in rows["pos.wav"]["heard"].lower()
    video = rows["demo.mp4"]["results"]
    assert video and any(r["modalities"]["vision"] == "present" for r in video)
    assert set(m["per_emotion"]) == {"happiness", "anger", "neutral"}
    assert m["per_emotion"]["neutral"]["no_result"] == 1


def test_eval_clips_gives_what_run_media_publishes(clip_folder):
    """The same clip through `run --media --output jsonl`: the same score."""
    wav = clip_folder / "audio" / "neg.wav"
    run = cli("run", "--media", str(wav), "--output", "jsonl", "--transcript")
    assert run.returncode == 0, run.stderr
    published = [json.loads(line) for line in run.stdout.splitlines() if line.startswith("{")]
    labels = clip_folder / "one.csv"
    labels.write_text("path,emotion\naudio/neg.wav,angry\n")
    res = cli("eval", "clips", "--labels", str(labels), "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert len(published) == 1
    assert m["per_emotion"]["anger"]["mean_score"] == pytest.approx(published[0]["score"],
                                                                    abs=1e-3)


def test_eval_voice_reads_a_labelled_folder_and_ravdess_names(clip_folder, tmp_path):
    actor = tmp_path / "Actor_17"
    actor.mkdir()
    shutil.copy(clip_folder / "audio" / "pos.wav", actor / "03-01-03-01-01-01-17.wav")
    shutil.copy(clip_folder / "audio" / "neg.wav", actor / "03-01-05-02-01-01-17.wav")
    shutil.copy(clip_folder / "audio" / "neg.wav", actor / "03-01-08-02-01-01-17.wav")
    res = cli("eval", "voice", "--folder", str(tmp_path), "--actors", "17", "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert m["n"] == 2 and m["skipped"] == 1 and list(m["per_speaker_uar"]) == ["17"]
    assert sum(map(sum, m["confusion"])) == 2
    res = cli("eval", "voice", "--folder", str(clip_folder), "--json")  # its labels.csv
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert m["n"] == 3 and m["skipped"] == 1  # demo.mp4 has a score, no emotion


def test_eval_text_reads_meld(tmp_path):
    from edge_msa.evaluation.fusion_eval import evaluate_text
    from edge_msa.publishing.result import polarity

    rows = [
        ("What a wonderful day, I love you all so much!", "joy", "positive"),
        ("This is fantastic news, I am thrilled.", "joy", "positive"),
        ("I hate this, it is awful and disgusting.", "disgust", "negative"),
        ("You ruined everything, I am furious with you.", "anger", "negative"),
        ("The keys are on the table.", "neutral", "neutral"),
        ("He said he would call at six.", "neutral", "neutral"),
    ]
    path = tmp_path / "dev_sent_emo.csv"
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["Sr No.", "Utterance", "Speaker", "Emotion", "Sentiment",
                         "Dialogue_ID", "Utterance_ID"])
        for i, (text, emotion, sentiment) in enumerate(rows):
            writer.writerow([i + 1, text, "Joey", emotion, sentiment, i // 2, i % 2])
    m = evaluate_text(path, "dev")
    mean = m.pop("_arrays")[0]
    pred = [polarity(x) for x in mean]
    truth = [r[2] for r in rows]
    assert m["n"] == 6 and "mae" not in m
    assert m["acc_3class"] == pytest.approx(np.mean(np.array(pred) == np.array(truth)))
    assert m["f1_3class"] == three_class(truth, pred)["f1_3class"]
    assert m["acc2"] == 1.0  # the clear positives above zero, the negatives below
    res = cli("eval", "text", "--labels", str(path), "--split", "train")
    assert res.returncode == 2 and "splits present: dev" in res.stderr


# ------------------------------------------------------------------ shared data


@pytest.mark.data
def test_eval_clips_and_voice_on_held_out_ravdess_actors():
    folder = need_data("ravdess_speech")
    res = cli("eval", "clips", "--labels", str(folder), "--actors", "18", "--limit", "3",
              "--threads", "1", "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert m["n"] == 3 and m["no_result"] == 0 and m["wer_n"] == 3
    assert m["wer"] < 0.5  # real voices, known sentences
    res = cli("eval", "voice", "--folder", str(folder), "--actors", "18", "--limit", "4",
              "--json")
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert m["n"] + m["skipped"] == 4 and list(m["per_speaker_uar"]) == ["18"]
