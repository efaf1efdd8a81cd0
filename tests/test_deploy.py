"""deploy/jetson: the engine builder's check path (the CPU standing in for TensorRT) on the
shipped models, its one-line exit 2 without TensorRT, and the service, container and config
files. Nothing here needs a GPU or a Jetson."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli

JETSON = REPO / "deploy" / "jetson"


def _load_builder():
    spec = importlib.util.spec_from_file_location("build_engines", JETSON / "build_engines.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


be = _load_builder()


def _run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*args],
        capture_output=True,
        text=True,
        cwd=REPO,
        timeout=300,
        env={**os.environ, **(env or {})},
    )


# ------------------------------------------------------------------ engine builder

# The fusion model's GPU graph (FP16 or static INT8: scripts/build_trt_graphs.py chooses).
FUSION_GPU = json.loads((REPO / "models" / "fusion" / "manifest.json").read_text())["tensorrt"][
    "file"
]


def test_every_manifest_model_is_found():
    models = be.all_models(REPO / "models")
    for key in (
        "text/text_sentiment.fp16.onnx",
        f"fusion/{FUSION_GPU}",
        "voice/voice_head.onnx",
        "face/expression.int8.onnx",
        "face/expression.fp32.onnx",
        "face/centerface.onnx",
        "faster_whisper/silero_vad_v6.onnx",
    ):
        assert key in models and models[key].is_file()
    # The CPU's dynamic INT8 graphs are replaced by the manifests' TensorRT graphs.
    assert "text/text_sentiment.int8.onnx" not in models
    assert "fusion/fusion.int8.onnx" not in models


def test_manifests_are_read_generically(tmp_path):
    (tmp_path / "fusion").mkdir()
    (tmp_path / "fusion" / "fusion.onnx").write_bytes(b"")
    (tmp_path / "fusion" / "manifest.json").write_text(
        json.dumps(
            {
                "files": ["fusion.onnx", "missing.onnx"],
                "note": "exported to fusion.onnx later",
                "sha256": {"fusion.onnx": "0"},
            }
        )
    )
    assert list(be.manifest_models(tmp_path)) == ["fusion/fusion.onnx"]


def test_cpu_stand_in_checks_every_shipped_model(tmp_path):
    proc = _run(
        sys.executable,
        str(JETSON / "build_engines.py"),
        "--providers",
        "cpu",
        "--json",
        "--cache",
        str(tmp_path / "trt"),
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    rows = {r["model"]: r for r in report["models"]}
    assert set(rows) == set(be.all_models(REPO / "models"))
    for row in rows.values():
        assert row["outputs"], row
        for name, out in row["outputs"].items():
            assert out["max_abs_diff"] == 0.0, (row["model"], name)
            assert out["max_abs_ref"] > 0, (row["model"], name)
        assert row["model"] in proc.stdout  # the table names every model
    assert rows["face/expression.int8.onnx"]["samples"].startswith("calibration/face_calibration")
    assert rows["text/text_sentiment.fp16.onnx"]["samples"].startswith("tokenizer.json")
    assert rows[f"fusion/{FUSION_GPU}"]["samples"].startswith("calibration/fusion/")
    assert rows["voice/voice_head.onnx"]["samples"] == "generated"
    assert not (tmp_path / "trt" / be.STAMP).exists()  # a dry run leaves the cache alone


def test_compare_reports_the_largest_difference():
    class Out:
        def __init__(self, name):
            self.name = name

    class Session:
        def __init__(self, scale):
            self.scale = scale

        def get_outputs(self):
            return [Out("y")]

        def run(self, names, feed):
            return [feed["x"] * self.scale]

    import numpy as np

    feeds = [{"x": np.array([1.0, -2.0])}, {"x": np.array([4.0])}]
    worst = be.compare(Session(1.0), Session(1.5), feeds)
    assert worst == {"y": {"max_abs_diff": 2.0, "max_abs_ref": 4.0}}


def test_generated_feeds_cover_smallest_and_largest_axes():
    import numpy as np

    class Inp:
        def __init__(self, name, type_, shape):
            self.name, self.type, self.shape = name, type_, shape

    inputs = [
        Inp("input_ids", "tensor(int64)", ["batch", "sequence"]),
        Inp("attention_mask", "tensor(int64)", ["batch", "sequence"]),
        Inp("h", "tensor(float)", [1, 1, 128]),
    ]
    feeds = be.generated_feeds(inputs, np.random.default_rng(0))
    shapes = [f["input_ids"].shape for f in feeds]
    assert shapes[0] == (1, 1) and shapes[-1] == (8, 64)
    assert all(f["attention_mask"].all() and f["h"].shape == (1, 1, 128) for f in feeds)


def test_tensorrt_missing_exits_2_with_one_line():
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    proc = _run("bash", str(JETSON / "build_engines.sh"), env={"PYTHON": sys.executable})
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "TensorrtExecutionProvider" in lines[0] and "onnxruntime-gpu" in lines[0]
    assert "--providers cpu" in lines[0]


def test_precision_table_matches_the_runtime_rule(tmp_path, monkeypatch):
    from edge_msa.backends import providers_for

    monkeypatch.setenv("EDGE_MSA_TRT_CACHE", str(tmp_path))
    available = {"TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"}
    models = be.all_models(REPO / "models")
    assert set(models) >= set(be.PRECISION)  # no stale table entries
    for key, path in models.items():  # a model missing from PRECISION gets the runtime's rule
        precision, reason = be.precision_of(key)
        (_, opts), *_ = providers_for("tensorrt", available, path)
        assert precision == ("int8" if opts["trt_int8_enable"] else "fp16"), key
        assert opts["trt_fp16_enable"] and reason


def test_stale_engines_are_purged_when_a_model_changes(tmp_path):
    engine = tmp_path / "TensorrtExecutionProvider_TRTKernel_graph_x_1_0_sm87.engine"
    engine.write_bytes(b"old")
    other = tmp_path / "keep.txt"
    other.write_text("x")
    stamp = {"onnxruntime": "1", "models": {"a.onnx": "1"}}
    (tmp_path / be.STAMP).write_text(json.dumps(stamp))
    assert be.purge_stale(tmp_path, stamp) == [] and engine.exists()
    assert be.purge_stale(tmp_path, {**stamp, "models": {"a.onnx": "2"}}) == [engine]
    assert not engine.exists() and other.exists()


def test_if_changed_rebuilds_only_after_an_upgrade(tmp_path, monkeypatch, capsys):
    """The TensorRT path's bookkeeping, with the provider and the build faked."""
    monkeypatch.setenv("EDGE_MSA_TRT_CACHE", str(tmp_path))  # main() sets it; restored after
    models = {"voice/voice_head.onnx": REPO / "models" / "voice" / "voice_head.onnx"}
    built = []

    def fake_check(key, path, provider):
        built.append(key)
        out = {"y": {"max_abs_diff": 0.001, "max_abs_ref": 1.0}}
        return {"model": key, "precision": "fp16", "outputs": out, "seconds": 0.1}

    monkeypatch.setattr(be, "require_provider", lambda provider: None)
    monkeypatch.setattr(be, "all_models", lambda root: dict(models))
    monkeypatch.setattr(be, "check_model", fake_check)
    assert be.main(["--cache", str(tmp_path)]) == 0 and built == ["voice/voice_head.onnx"]
    assert (tmp_path / be.STAMP).is_file()
    engine = tmp_path / "TensorrtExecutionProvider_TRTKernel_graph_x_1_0_sm87.engine"
    engine.write_bytes(b"engine")
    assert be.main(["--cache", str(tmp_path), "--if-changed"]) == 0
    assert built == ["voice/voice_head.onnx"] and engine.exists()  # nothing changed
    models["voice/voice_head.onnx"] = REPO / "models" / "face" / "expression.fp32.onnx"
    assert be.main(["--cache", str(tmp_path), "--if-changed"]) == 0  # "retrained" model
    assert len(built) == 2 and not engine.exists()
    assert be.main(["--cache", str(tmp_path), "--fail-above", "0.0001"]) == 1
    assert "voice/voice_head.onnx" in capsys.readouterr().out


def test_trtexec_command_has_precision_and_shape_ranges():
    class Inp:
        def __init__(self, name, shape):
            self.name, self.shape = name, shape

    cmd = be.trtexec_command(
        "trtexec",
        Path("m.int8.onnx"),
        Path("m.engine"),
        "int8",
        [Inp("image", ["batch", 1, 48, 48]), Inp("h", [1, 128])],
    )
    assert cmd[:4] == ["trtexec", "--onnx=m.int8.onnx", "--saveEngine=m.engine", "--fp16"]
    assert "--int8" in cmd
    assert "--minShapes=image:1x1x48x48" in cmd and "--maxShapes=image:8x1x48x48" in cmd
    assert not any("h:" in c for c in cmd)


# ------------------------------------------------------------------ config, service, container


def test_example_config_validates():
    proc = cli("validate-config", str(JETSON / "edge-msa.toml"))
    assert proc.returncode == 0, proc.stderr
    from edge_msa.config import load_config

    cfg = load_config(JETSON / "edge-msa.toml", environ={})
    assert cfg.runtime.backend == "tensorrt"
    assert str(cfg.runtime.state_dir).startswith("/var/lib/edge-msa")


def _unit(text: str) -> dict[str, list[tuple[str, str]]]:
    sections: dict[str, list[tuple[str, str]]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
        else:
            key, _, value = line.partition("=")
            current.append((key.strip(), value.strip()))
    return sections


def test_systemd_unit_has_the_required_keys():
    unit = _unit((JETSON / "edge-msa.service").read_text())
    service = dict(unit["Service"])
    assert service["User"] == "edge-msa"
    assert {"video", "audio"} <= set(service["SupplementaryGroups"].split())
    assert "edge-msa" in service["StateDirectory"].split()
    assert service["Restart"] in ("always", "on-failure")
    assert "edge-msa run" in service["ExecStart"] and "--config" in service["ExecStart"]
    assert service["RestartPreventExitStatus"] == "2"
    # READY=1 after the models load, WATCHDOG=1 while no stage is stalled (runtime/sdnotify.py).
    assert service["Type"] == "notify" and service["NotifyAccess"] == "main"
    assert 0 < int(service["WatchdogSec"]) < 600
    # Camera, microphone and GPU device nodes must stay reachable.
    assert service.get("PrivateDevices", "no") == "no" and "DevicePolicy" not in service
    assert "ProtectClock" not in service
    assert {"StartLimitIntervalSec", "StartLimitBurst"} <= set(dict(unit["Unit"]))
    assert dict(unit["Install"])["WantedBy"] == "multi-user.target"


def test_systemd_unit_verifies(tmp_path):
    exe = shutil.which("systemd-analyze")
    if exe is None:
        pytest.skip("systemd-analyze is not installed")
    # verify also checks that the programs exist: point them at /bin/true here.
    text = re.sub(
        r"(Exec\w+=-?)/opt/edge-msa/\S+", r"\1/bin/true", (JETSON / "edge-msa.service").read_text()
    )
    (tmp_path / "edge-msa.service").write_text(text)
    proc = _run(exe, "verify", str(tmp_path / "edge-msa.service"))
    output = proc.stdout + proc.stderr
    if proc.returncode != 0 and "Failed to" in output and "bus" in output.lower():
        pytest.skip(f"systemd-analyze cannot run here: {output.strip()[:200]}")
    assert proc.returncode == 0, output
    assert "Unknown" not in output and "Invalid" not in output, output


def test_compose_runs_beside_mosquitto_with_devices_and_volumes():
    yaml = pytest.importorskip("yaml", reason="PyYAML is not installed")
    compose = yaml.safe_load((JETSON / "compose.yaml").read_text())
    services = compose["services"]
    assert services["mosquitto"]["image"] == "eclipse-mosquitto:2"
    conf = services["mosquitto"]["volumes"][0].split(":")[0]
    assert (JETSON / conf).is_file()
    app = services["edge-msa"]
    assert app["runtime"] == "nvidia"
    assert {"/dev/video0:/dev/video0", "/dev/snd:/dev/snd"} <= set(app["devices"])
    assert app["build"]["dockerfile"] == "deploy/jetson/Dockerfile"
    assert (JETSON / app["build"]["context"] / app["build"]["dockerfile"]).is_file()
    mounts = {v.split(":")[1]: v.split(":")[0] for v in app["volumes"]}
    assert mounts["/var/lib/edge-msa/state"] in compose["volumes"]
    assert mounts["/var/lib/edge-msa/.cache/edge-msa/trt"] in compose["volumes"]
    assert app["environment"]["EDGE_MSA_MQTT__HOST"] == "mosquitto"


def test_dockerfile_pins_its_base_image_and_installs_the_jetson_runtime():
    text = (JETSON / "Dockerfile").read_text()
    bases = re.findall(r"^FROM\s+(\S+)", text, re.MULTILINE)
    assert bases, "no FROM line"
    for base in bases:
        name, _, tag = base.rpartition(":")
        assert name and tag and tag != "latest" and "/" not in tag, base
    assert re.match(r"r36\.\d+\.\d+$", bases[0].rpartition(":")[2])
    assert "onnxruntime-gpu" in text and "pypi.jetson-ai-lab.io/jp6" in text
    install = re.search(r"apt-get install(?:[^\n]*\\\n)*[^\n]*", text).group(0)
    assert "libportaudio2" in install and "espeak" not in install


def test_readme_cites_a_source_for_every_latency_number():
    text = (JETSON / "README.md").read_text()
    table = text.split("## Expected latency", 1)[1].split("\n## ", 1)[0]
    rows = [r for r in table.splitlines() if r.startswith("|") and not r.startswith("|--")][1:]
    assert rows
    for row in rows:
        assert "https://" in row, row
    assert "not measured here" in " ".join(table.lower().split())
