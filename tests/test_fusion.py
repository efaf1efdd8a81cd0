"""The fusion model: inputs, masks, imagination, training, export and evaluation."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edge_msa.config import ConfigError
from edge_msa.fusion.features import (
    AUDIO_STRIDE,
    AUDIO_TOKENS,
    TEXT_DIM,
    VISION_TOKENS,
    FusionInputs,
    audio_tokens,
    batch,
    text_feature,
    vision_tokens,
)
from edge_msa.fusion.model import FusionModel
from tests.conftest import REPO, cli, data_dir, need_data

RNG = np.random.default_rng(0)


def _item(**kw) -> FusionInputs:
    return FusionInputs(**kw)


def _text():
    return RNG.normal(size=TEXT_DIM).astype(np.float32)


def _audio(t=30):
    return RNG.normal(size=(t, 384)).astype(np.float32)


def _vision(f=8):
    return RNG.normal(size=(f, 135)).astype(np.float32)


# ---------------------------------------------------------------- inputs


def test_audio_tokens_average_groups_and_cap_length():
    frames = np.arange(1500 * 384, dtype=np.float32).reshape(1500, 384)
    short = audio_tokens(frames, 10)
    assert short.shape == (3, 384)  # ceil(10 / 4) near-equal groups: 3, 4, 3 frames
    assert np.allclose(short[0], frames[:3].mean(axis=0))
    assert np.allclose(short[1], frames[3:7].mean(axis=0))
    assert len(audio_tokens(frames, 8 * AUDIO_STRIDE)) == 8
    assert audio_tokens(frames, 1500).shape == (AUDIO_TOKENS, 384)
    assert audio_tokens(frames, 0).shape == (1, 384)


def test_vision_tokens_subsample_evenly_and_batch_masks():
    tokens = vision_tokens(np.ones((40, 128)), np.full((40, 7), 0.5))
    assert tokens.shape == (VISION_TOKENS, 135)
    feed = batch([_item(text=_text(), vision=_vision(3)), _item(audio=_audio(5), voice=np.ones(7))])
    assert feed["present"].tolist() == [[1, 0, 1], [0, 1, 0]]
    assert feed["vision_mask"][0].sum() == 3 and feed["audio_mask"][1].sum() == 5


# ---------------------------------------------------------------- shipped model


@pytest.fixture(scope="module")
def fusion() -> FusionModel:
    return FusionModel()


def test_absent_modality_contributes_nothing(fusion):
    """Whatever sits in a masked-out slot must not move the output."""
    text = _text()
    a = batch([_item(text=text)])
    b = {
        **a,
        "vision": RNG.normal(size=a["vision"].shape).astype(np.float32),
        "audio": RNG.normal(size=a["audio"].shape).astype(np.float32),
    }
    out_a = fusion._session.run(None, a)
    out_b = fusion._session.run(None, b)
    for x, y in zip(out_a, out_b, strict=True):
        assert np.allclose(x, y, atol=1e-5)
    # and a present modality does move it
    c = batch([_item(text=text, vision=_vision())])
    assert not np.allclose(fusion._session.run(None, c)[0], out_a[0])


def test_text_is_imagined_from_audio_only(fusion):
    with_audio = fusion.predict(_item(audio=_audio(), voice=np.full(7, 1 / 7, np.float32)))
    assert with_audio.text_imagined and "text" in with_audio.modality
    vision_only = fusion.predict(_item(vision=_vision()))
    assert not vision_only.text_imagined and set(vision_only.modality) == {"vision"}
    assert vision_only.weights["text"] == pytest.approx(0.0, abs=1e-6)


def test_nothing_usable_gives_the_prior(fusion):
    out = fusion.predict(FusionInputs())
    assert out.modality == {} and not out.text_imagined
    assert abs(out.score) < 1.0 and 0.5 < out.std < 3.0
    assert out.weights["fused"] == pytest.approx(1.0)


def test_text_sentiment_flows_through(fusion):
    from edge_msa.encoders.text import TextEncoder, default_model_dir

    enc = TextEncoder(default_model_dir())

    def score(sentence: str):
        return fusion.predict(_item(text=text_feature(enc.predict(sentence))))

    good, bad = score("i loved it, a wonderful film"), score("it was awful and boring, i hated it")
    assert good.score > 0.5 > -0.5 > bad.score
    assert good.std > 0 and bad.std > 0


def test_manifest_records_parity_and_sha(fusion):
    import hashlib

    from edge_msa.fusion.model import default_model_dir

    manifest = json.loads((default_model_dir() / "manifest.json").read_text())
    assert float(manifest["parity_max_abs_diff_torch_vs_onnx"]) < 1e-4
    for name, sha in manifest["sha256"].items():
        assert hashlib.sha256((default_model_dir() / name).read_bytes()).hexdigest() == sha


# ---------------------------------------------------------------- training


def test_rank_n_contrast_prefers_ordered_embeddings():
    torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.training.fusion.flows import rnc_loss

    y = torch.linspace(-3, 3, 32)
    ordered = torch.stack([y, torch.zeros_like(y)], dim=1)
    shuffled = ordered[torch.randperm(32, generator=torch.Generator().manual_seed(0))]
    assert rnc_loss(ordered, y, 0.5) < rnc_loss(shuffled, y, 0.5)


def test_train_config_names_the_bad_field(tmp_path):
    from edge_msa.training.fusion.config import load_train_config

    bad = tmp_path / "t.toml"
    bad.write_text("epochs = 2\n[model]\nwidht = 64\n")
    with pytest.raises(ConfigError, match=r"model\.widht"):
        load_train_config(bad)


def test_text_head_starts_from_the_text_models_score():
    torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.training.fusion.net import FusionNet

    items = [FusionInputs(text=np.append(_text()[:-1], s / 3)) for s in (-2.4, 0.0, 1.5)]
    feed = {k: torch.from_numpy(v) for k, v in batch(items).items()}
    for text_score, expected in ((True, [-2.4, 0.0, 1.5]), (False, [0.0, 0.0, 0.0])):
        net = FusionNet(text_score=text_score).eval()
        with torch.no_grad():
            net.head_w.zero_()  # no learned correction yet
            means = net(**feed)[2]
        assert means[:, 0].tolist() == pytest.approx(expected, abs=1e-5)


def test_text_alone_keeps_the_chosen_share_of_the_fusions_correction():
    """With the text alone the score is the text model's plus ``text_alone`` times
    the fusion's move from it; with audio or a face the fusion is untouched. The
    export picks the share with the lowest text-only validation error."""
    torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.fusion.features import VOICE_DIM
    from edge_msa.training.fusion.export import choose_text_alone, run_torch
    from edge_msa.training.fusion.net import FusionNet

    torch.manual_seed(0)
    net = FusionNet().eval()
    with torch.no_grad():
        net.head_w.normal_(0.0, 0.5)  # a correction to keep a share of
    voice = np.full(VOICE_DIM, 1 / VOICE_DIM, np.float32)
    scores = np.array([-2.4, -0.3, 0.6, 1.5])
    alone = batch([FusionInputs(text=np.append(_text()[:-1], s / 3)) for s in scores])
    heard = batch(
        [
            FusionInputs(text=np.append(_text()[:-1], s / 3), audio=_audio(), voice=voice)
            for s in scores
        ]
    )
    fused_alone, fused_heard = run_torch(net, alone)["mean"], run_torch(net, heard)["mean"]
    assert np.abs(fused_alone - scores).max() > 0.05
    net.text_alone = 0.3
    assert run_torch(net, alone)["mean"] == pytest.approx(
        scores + 0.3 * (fused_alone - scores), abs=1e-4
    )
    assert run_torch(net, heard)["mean"] == pytest.approx(fused_heard, abs=1e-6)
    # Labels at the text model's score: no share of the correction is best.
    share, tried = choose_text_alone(net, {"mosi_dev/text": (alone, scores)}, [])
    errors = [tried[s]["mosi_dev/text"] for s in (1.0, 0.5, 0.0)]
    assert share == 0.0 and errors[0] > errors[1] > errors[2] and net.text_alone == 1.0
    # At the fused score: all of it; a feed that is not text alone is not read.
    feeds = {"mosi_dev/text": (alone, fused_alone), "mosi_dev/present": (heard, scores)}
    assert choose_text_alone(net, feeds, [])[0] == 1.0
    # A class-label set that wants the fusion's correction does not buy a worse MAE
    # than the text model's on a score set: no share that costs more than 0.005 there.
    classes = {"meld_dev/text": (alone, fused_alone * 10), "mosi_dev/text": (alone, scores)}
    share, tried = choose_text_alone(net, classes, ["meld_dev"])
    assert tried[share]["mosi_dev/text"] <= tried[0.0]["mosi_dev/text"] + 0.005
    assert tried[1.0]["mosi_dev/text"] > tried[0.0]["mosi_dev/text"] + 0.005


def test_text_alone_has_its_own_std_temperature(tmp_path, fusion):
    """The std of a text-only result is scaled by temperature_text_alone (fitted on the
    text-only validation cases); with audio too, by the temperature of every case."""
    folder = tmp_path / "fusion"
    shutil.copytree(REPO / "models" / "fusion", folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    shipped_alone = manifest.get("temperature_text_alone", manifest["temperature"])
    manifest["temperature_text_alone"] = 2 * manifest["temperature"]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    items = [_item(text=_text()), _item(text=_text(), audio=_audio())]
    shipped, doubled = fusion.predict_batch(items), FusionModel(folder).predict_batch(items)
    ratio = 2 * manifest["temperature"] / shipped_alone
    assert doubled[0].std == pytest.approx(shipped[0].std * ratio, rel=1e-5)
    assert doubled[0].score == shipped[0].score
    assert doubled[1].std == pytest.approx(shipped[1].std, rel=1e-6)


def test_own_heads_see_only_their_own_modality():
    """outputs.<modality> are the own heads: each reads its modality before any
    cross-modal attention, so changing another modality leaves it as it was,
    while the fused mean (and the fused tokens' heads) follow every input."""
    torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.fusion.features import VOICE_DIM
    from edge_msa.training.fusion.net import OUTPUT_NAMES, FusionNet

    torch.manual_seed(0)
    net = FusionNet().eval()
    with torch.no_grad():  # trained-like heads: the zero start would hide any leak
        for head in net.own:
            head[1][-1].weight.normal_(0.0, 0.5)
        net.head_w.normal_(0.0, 0.5)

    def run(text, audio, vision) -> dict:
        voice = np.full(VOICE_DIM, 1 / VOICE_DIM, np.float32)
        item = FusionInputs(text=text, audio=audio, voice=voice, vision=vision)
        feed = {k: torch.from_numpy(v) for k, v in batch([item]).items()}
        with torch.no_grad():
            return {n: o.numpy()[0] for n, o in zip(OUTPUT_NAMES, net(**feed), strict=True)}

    text, audio, vision = _text(), _audio(), _vision()
    base = run(text, audio, vision)
    changed = {
        "text": run(_text(), audio, vision),
        "audio": run(text, _audio(), vision),
        "vision": run(text, audio, _vision()),
    }
    for k, name in enumerate(("text", "audio", "vision")):
        out = changed[name]
        assert abs(out["mean"] - base["mean"]) > 1e-4, name  # the fusion hears it
        assert abs(out["own_mean"][k] - base["own_mean"][k]) > 1e-4, name
        for j in range(3):
            if j != k:
                assert out["own_mean"][j] == pytest.approx(base["own_mean"][j], abs=1e-6)
                assert out["own_log_var"][j] == pytest.approx(base["own_log_var"][j], abs=1e-6)
                # the fused tokens (what outputs.* used to be) have attended to it
                assert abs(out["modality_mean"][j] - base["modality_mean"][j]) > 1e-5


def test_mmsa_pickle_trains_exports_and_matches_torch(tmp_path):
    pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.training.fusion.export import load_checkpoint, run_onnx, run_torch
    from edge_msa.training.fusion.mmsa import read_pickle, to_feed, write_example

    pkl = tmp_path / "unaligned_50.pkl"
    write_example(pkl, n=64, sizes=(32, 5, 20))
    config = tmp_path / "train.toml"
    config.write_text(
        f'epochs = 4\nbatch_size = 16\nout = "{tmp_path / "run"}"\nexport = "{tmp_path / "m"}"\n'
        f'[data]\nsource = "mmsa"\nmmsa_file = "{pkl}"\n[model]\nwidth = 32\nlayers = 1\n'
    )
    res = cli("train", "--config", str(config))
    assert res.returncode == 0, res.stderr
    summary = json.loads(res.stdout.splitlines()[-1])
    manifest = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert manifest["config"]["data"]["source"] == "mmsa" and summary["params"] > 0
    assert manifest["metrics_valid"]["fp32"]["unaligned_50/present"]["n"] == 32
    # The export really is the trained network, and the text carries the label.
    feed, y = to_feed(read_pickle(pkl)["valid"])
    model = load_checkpoint(tmp_path / "run" / "best.pt")
    ref = run_torch(model, feed)
    got = run_onnx(tmp_path / "run" / "fusion.fp32.onnx", feed)
    for name in ref:
        assert np.abs(ref[name] - got[name]).max() < 1e-4, name
    assert np.corrcoef(ref["mean"], y)[0, 1] > 0.5
    # --export-only exports the finished run again, without training.
    shutil.rmtree(tmp_path / "m")
    again = cli("train", "--config", str(config), "--export-only")
    assert again.returncode == 0, again.stderr
    redone = json.loads((tmp_path / "m" / "manifest.json").read_text())
    assert redone["history"] == manifest["history"] and redone["params"] == manifest["params"]
    assert redone["metrics_valid"] == manifest["metrics_valid"]
    shutil.rmtree(tmp_path / "run")
    missing = cli("train", "--config", str(config), "--export-only")
    assert missing.returncode == 2 and "holds no finished run" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_mmsa_pickle_with_missing_keys_is_a_clear_error(tmp_path):
    import pickle

    from edge_msa.training.fusion.mmsa import read_pickle

    pkl = tmp_path / "bad.pkl"
    pkl.write_bytes(pickle.dumps({"train": {"text": np.zeros((1, 2, 3))}, "valid": {}}))
    with pytest.raises(ValueError, match="lacks audio, vision, regression_labels"):
        read_pickle(pkl)


# ---------------------------------------------------------------- evaluation


def _labels(tmp_path: Path) -> Path:
    path = tmp_path / "label.csv"
    path.write_text(
        "id,text,label,mode\n"
        "a_1,this is the best movie i have seen in years,2.8,test\n"
        "a_2,i really hated the ending it was terrible,-2.6,test\n"
        "a_3,the plot was okay nothing special,0.0,test\n"
    )
    return path


def test_eval_text_reports_metrics_and_calibration(tmp_path):
    res = cli(
        "eval",
        "text",
        "--labels",
        str(_labels(tmp_path)),
        "--json",
        "--plot",
        str(tmp_path / "plots"),
    )
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert m["n"] == 3 and m["model"].startswith("edge-msa-fusion")
    for key in (
        "mae",
        "corr",
        "acc2",
        "acc2_has0",
        "f1",
        "acc5",
        "acc7",
        "coverage_1sigma",
        "coverage_2sigma",
    ):
        assert key in m
    assert m["acc2"] == 1.0  # the two clear sentences get the right sign
    assert (tmp_path / "plots" / "calibration.png").stat().st_size > 1000


@pytest.mark.slow
def test_eval_speech_runs_the_audio_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    labels = _labels(tmp_path)
    res = cli(
        "eval",
        "speech",
        "--labels",
        str(labels),
        "--text",
        "absent",
        "--jobs",
        "1",
        "--json",
        env={"XDG_CACHE_HOME": str(tmp_path / "cache")},
    )
    assert res.returncode == 0, res.stderr
    m = json.loads(res.stdout.splitlines()[-1])
    assert m["n"] == 3 and m["text"] == "absent"
    assert len(list((tmp_path / "cache").rglob("*.npz"))) == 3  # cached for the next mode


# ---------------------------------------------------------------- corpora


def _witnesses():
    from edge_msa.data.joint import Witnesses

    # faces: 3 images (happy, sad, neutral) x 2 variants; voices: 3 clips
    faces = {
        "tokens": RNG.normal(size=(3, 2, 135)).astype(np.float16),
        "labels": np.array([3, 4, 6]),
    }
    voices = {
        "probs": np.eye(7, dtype=np.float32)[[4, 5, 6]],
        "emotions": np.array(["happiness", "sadness", "neutral"]),
    }
    return Witnesses(faces, voices, disagree=0.0)


def test_witnesses_match_the_sentence_polarity():
    w = _witnesses()
    rng = np.random.default_rng(1)
    assert w.voice(2.5, rng).argmax() == 4 and w.voice(-2.0, rng).argmax() == 5
    assert w.voice(0.1, rng).argmax() == 6
    face = w.face(2.5, rng)
    assert 4 <= len(face) <= 16 and face.dtype == np.float32


def test_double_flow_gives_the_student_the_asr_text_or_none():
    from edge_msa.data.joint import Sentences
    from edge_msa.training.fusion.config import TrainConfig
    from edge_msa.training.fusion.flows import corpus_flows

    s = Sentences(
        ids=["a", "b"],
        labels=np.array([2.0, -2.0], np.float32),
        text=np.ones((2, TEXT_DIM), np.float32),
        text_dropped=np.ones((2, TEXT_DIM), np.float32),
        speech=np.array([0, -1]),
        asr_text=np.full((1, TEXT_DIM), 2.0, np.float32),
        asr_state=np.array(["simulated"]),
        audio=[np.ones((6, 384), np.float16)],
        voice_probs=np.ones((1, 7), np.float32),
    )
    cfg = TrainConfig(p_text_absent=0.0, p_drop_modality=0.0, max_frame_drop=0.0)
    teacher, student, y, speech = corpus_flows(
        s, _witnesses(), np.array([0, 1]), np.random.default_rng(0), cfg, train=True
    )
    assert speech.tolist() == [True, False] and y.tolist() == [2.0, -2.0]
    assert teacher["present"].tolist() == [[1, 1, 1], [1, 0, 1]]
    assert student["present"].tolist() == [[1, 1, 1], [0, 0, 1]]
    assert student["simulated"][:, 0].tolist() == [1.0, 0.0]
    assert np.all(student["text"][0] == 2.0) and np.all(teacher["text"][0] == 1.0)


def test_interval_targets_train_on_a_class_range_and_validate_on_its_score():
    """MELD rows with ``meld_target = "interval"``: training sees the class's
    range (a mean inside it costs no L1), validation the nominal score."""
    torch = pytest.importorskip("torch", reason="the loss needs the train extra")

    from edge_msa.data.joint import Sentences
    from edge_msa.data.labels import LabelRow
    from edge_msa.training.fusion.config import TrainConfig
    from edge_msa.training.fusion.flows import _gauss, corpus_flows

    meld = LabelRow("m", "Oh my God!", 1.5, "train", "positive")
    rows = [meld, LabelRow("s", "ok", 0.5, "train")]
    s = Sentences(
        ids=["m", "s"],
        labels=np.array([r.label for r in rows], np.float32),
        ranges=np.array([r.label_range() for r in rows], np.float32),
        text=np.ones((2, TEXT_DIM), np.float32),
        text_dropped=np.ones((2, TEXT_DIM), np.float32),
        speech=np.array([-1, -1]),
    )
    cfg = TrainConfig.model_validate({"data": {"meld_target": "interval"}})
    args = (s, _witnesses(), np.array([0, 1]), np.random.default_rng(0), cfg)
    y = corpus_flows(*args, train=True)[2]
    assert y.tolist() == [[1.0, 3.0], [0.5, 0.5]]
    assert meld.label_range(1.5) == (1.5, 3.0) and rows[1].label_range(1.5) == (0.5, 0.5)
    assert corpus_flows(*args, train=False)[2].tolist() == [1.5, 0.5]
    assert corpus_flows(*args[:-1], TrainConfig(), train=True)[2].tolist() == [1.5, 0.5]
    log_var, one = torch.zeros(1), torch.ones(1)
    inside, outside = torch.tensor([2.6]), torch.tensor([0.5])
    y_m = torch.tensor([[1.0, 3.0]])
    assert _gauss(inside, log_var, y_m, one).item() == pytest.approx(0.0)
    assert _gauss(outside, log_var, y_m, one).item() == pytest.approx(0.5 + 0.5 * 0.25)
    assert _gauss(inside, log_var, torch.tensor([1.5]), one).item() > 1.0


def test_validation_hears_speech_as_eval_speech_does():
    """The asr/absent validation feeds carry the rendering's own voice and no
    face (as ``eval speech``), not a witness voice that matches the label."""
    from edge_msa.data.joint import Sentences
    from edge_msa.training.fusion.config import TrainConfig
    from edge_msa.training.fusion.data import validation_feeds

    own = np.full((1, 7), 1 / 7, np.float32)
    s = Sentences(
        ids=["a", "b"],
        labels=np.array([-2.0, 2.5], np.float32),
        text=np.ones((2, TEXT_DIM), np.float32),
        text_dropped=np.ones((2, TEXT_DIM), np.float32),
        speech=np.array([-1, 0]),
        asr_text=np.full((1, TEXT_DIM), 2.0, np.float32),
        asr_state=np.array(["present"]),
        audio=[np.ones((6, 384), np.float16)],
        voice_probs=own,
    )
    feeds = validation_feeds(s, _witnesses(), TrainConfig(), seed=0)
    assert set(feeds) == {"present", "text", "asr", "absent"}
    joint, y = feeds["present"]
    assert y.tolist() == [2.5, -2.0] and joint["voice"][0].argmax() == 4  # witness: happy
    assert feeds["text"][0]["present"].tolist() == [[1, 0, 0], [1, 0, 0]]
    asr, y_asr = feeds["asr"]
    assert y_asr.tolist() == [2.5] and np.allclose(asr["voice"], own)
    assert asr["present"].tolist() == [[1, 1, 0]] and np.all(asr["text"] == 2.0)
    absent = feeds["absent"][0]
    assert absent["present"].tolist() == [[0, 1, 0]] and not absent["text"].any()


def test_spoken_corpus_is_deterministic_and_resumable(tmp_path):
    labels = _labels(tmp_path)
    cache = tmp_path / "cache"
    args = (
        "corpus",
        "spoken",
        "--labels",
        str(labels),
        "--split",
        "test",
        "--limit",
        "2",
        "--jobs",
        "1",
        "--cache",
        str(cache),
    )
    first = cli(*args)
    assert first.returncode == 0, first.stderr
    assert json.loads(first.stdout.splitlines()[-1])["rendered"] == 2
    again = json.loads(cli(*args).stdout.splitlines()[-1])
    assert again["rendered"] == 0 and again["cached_before"] == 2
    from edge_msa.data.spoken import load

    folder = cache / labels.parent.name / "test"
    rows = load(folder)
    assert len(rows) == 2
    for row in rows:
        assert row["audio_tokens"].shape[1] == 384 and row["voice_probs"].shape == (7,)
        assert row["asr_state"] in ("present", "simulated", "absent") and row["seconds"] > 1

    # A sentence scored by another voice head: training refuses it, a rebuild
    # hears it again (no decoding) and gets the same probabilities back.
    from edge_msa.data.joint import load_sentences
    from edge_msa.data.labels import read_labels

    victim = sorted(folder.glob("*.npz"))[0]
    with np.load(victim) as z:
        before = {k: z[k] for k in z.files}
    np.savez(victim, **{**before, "voice_head": "0ld0head", "voice_probs": np.zeros(7)})
    with pytest.raises(ConfigError, match="another voice head"):
        load_sentences(read_labels(labels, "test"), folder, texts=None)
    third = json.loads(cli(*args).stdout.splitlines()[-1])
    assert third["revoiced"] == 1 and third["rendered"] == 0
    with np.load(victim) as z:
        assert str(z["voice_head"]) == str(before["voice_head"])
        np.testing.assert_allclose(z["voice_probs"], before["voice_probs"], atol=1e-5)
        assert str(z["asr_text"]) == str(before["asr_text"])
        np.testing.assert_array_equal(z["audio_tokens"], before["audio_tokens"])


def test_std_temperature_weighs_each_validation_feed_the_same():
    pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.training.fusion.export import fit_temperature

    # 900 rows a feed whose errors are half a std, 100 rows of one whose errors are two.
    y = np.concatenate([np.full(900, 0.5), np.full(100, 2.0)])
    zeros = np.zeros_like(y)
    assert fit_temperature(zeros, zeros, y) == pytest.approx(0.5)
    weight = np.concatenate([np.full(900, 1 / 900), np.full(100, 1 / 100)])
    assert fit_temperature(zeros, zeros, y, weight) == pytest.approx(2.0)


def test_std_temperature_is_fitted_without_the_sets_whose_scores_stand_for_classes():
    pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.training.fusion.config import TrainConfig
    from edge_msa.training.fusion.loop import nominal_sets
    from edge_msa.training.settings import load

    need_data("meld")
    cfg = load(TrainConfig, REPO / "configs" / "fusion.toml", [f"data.root={data_dir()}"])
    assert sorted(nominal_sets(cfg)) == ["meld_dev", "ravdess_valid"]
    no_voices = REPO / "configs" / "ablation-no-real-voices.toml"
    assert nominal_sets(load(TrainConfig, no_voices, [f"data.root={data_dir()}"])) == ["meld_dev"]


def test_moving_average_of_the_weights_follows_the_model_at_its_rate():
    torch = pytest.importorskip("torch", reason="training needs the train extra (torch)")
    from edge_msa.training.fusion.loop import ema_update

    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    average = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.BatchNorm1d(2))
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(1.0)
        for p in average.parameters():
            p.fill_(0.0)
    model[1].num_batches_tracked.fill_(7)
    ema_update(average, model, 0.75)
    assert torch.allclose(average[0].weight, torch.full((2, 2), 0.25))
    assert int(average[1].num_batches_tracked) == 7  # counters are copied, not averaged
    ema_update(average, model, 0.0)
    assert torch.allclose(average[0].bias, torch.ones(2))
