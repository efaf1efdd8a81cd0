"""Supervision on the real runtime: the demo clip, the real models, a real
Mosquitto. A stage made to raise (monkeypatched in this process, on the
real objects) costs one utterance's modality, or the utterance when fusion
fails; the same stage failing again and again ends the run with exit 1,
without hanging on the sources."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from pathlib import Path

import pytest

from edge_msa.config import Config
from edge_msa.encoders.voice import VoiceEncoder
from edge_msa.fusion.model import FusionModel
from edge_msa.runtime import app
from edge_msa.runtime.analyzer import Analyzer
from edge_msa.vision.expression import FaceStage

pytestmark = pytest.mark.timeout(300)

# The demo's five sentences, as the VAD cuts them (stream seconds).
SECOND = "5.15-9.02 s"


class Boom(RuntimeError):
    pass


def raising(method, calls: set[int] | None = None):
    """``method`` that raises on the given calls (1-based; None: every call)."""
    count = 0

    def wrapper(*args, **kwargs):
        nonlocal count
        count += 1
        if calls is None or count in calls:
            raise Boom(f"call {count}")
        return method(*args, **kwargs)

    return wrapper


def demo_config(
    tmp_path: Path, port: int | None = None, transcribe: bool = False, **runtime
) -> Config:
    sinks = ["jsonl", "mqtt"] if port else ["jsonl"]
    return Config.model_validate({
        "device_id": "sup",
        "source": {"demo": True},
        "asr": {"enabled": transcribe},  # mostly off: slow, and not what this is about
        "mqtt": {"port": port or 1883},
        "output": {"sinks": sinks},
        "runtime": {"state_dir": str(tmp_path), "flush_timeout_s": 5, **runtime},
    })


def run_app(cfg: Config) -> tuple[int, float]:
    t = time.monotonic()
    code = asyncio.run(app.run(cfg))
    return code, time.monotonic() - t


def complaints(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.levelno >= logging.WARNING and r.name.startswith("edge_msa")]


def stdout_results(capsys) -> list[dict]:
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.mark.parametrize(
    ("target", "stage", "transcribe", "absent"),
    [
        # The whole audio side at once: the hang the issue found (no result, no
        # line, run() never returned).
        ((Analyzer, "hear"), "hear", False, {"text", "audio"}),
        # The voice alone: the words still count.
        ((VoiceEncoder, "encode"), "voice", True, {"audio"}),
    ],
)
def test_a_stage_failing_once_costs_that_utterance_its_modality(
    target, stage, transcribe, absent, monkeypatch, capsys, caplog, broker, subscribe, tmp_path
):
    caplog.set_level(logging.INFO, "edge_msa")
    sub = subscribe(broker.port, "edge-msa/sup/sentiment")
    owner, name = target
    monkeypatch.setattr(owner, name, raising(getattr(owner, name), {2}))
    code, _ = run_app(demo_config(tmp_path, broker.port, transcribe))
    assert code == 0
    results = stdout_results(capsys)
    assert len(results) == 5
    assert sub.wait_for(lambda: len(sub.results()) == 5, 10)
    assert [r["id"] for r in sub.results()] == [r["id"] for r in results]
    for i, r in enumerate(results):
        gone = {m for m, state in r["modalities"].items() if state == "absent"}
        assert gone == (absent if i == 1 else set()), (i, r["modalities"])
    lines = complaints(caplog)
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"{stage} failed on the utterance at {SECOND} (Boom: call 2)")


def test_fusion_failing_once_drops_that_utterance(
    monkeypatch, capsys, caplog, broker, subscribe, tmp_path
):
    caplog.set_level(logging.INFO, "edge_msa")
    sub = subscribe(broker.port, "edge-msa/sup/sentiment")
    monkeypatch.setattr(FusionModel, "predict", raising(FusionModel.predict, {2}))
    code, _ = run_app(demo_config(tmp_path, broker.port))
    assert code == 0
    results = stdout_results(capsys)
    assert len(results) == 4
    assert sub.wait_for(lambda: len(sub.results()) == 4, 10)
    assert [r["id"] for r in sub.results()] == [r["id"] for r in results]
    lines = complaints(caplog)
    assert lines == [f"fusion failed on the utterance at {SECOND} (Boom: call 2); it is dropped"]


def test_a_stage_failing_on_every_utterance_ends_the_run(
    monkeypatch, capsys, caplog, broker, subscribe, tmp_path
):
    caplog.set_level(logging.INFO, "edge_msa")
    sub = subscribe(broker.port, "edge-msa/sup/#")
    monkeypatch.setattr(VoiceEncoder, "encode", raising(VoiceEncoder.encode))
    # At real-time pace the demo would take 24 s: the run must end well before.
    cfg = demo_config(tmp_path, broker.port, max_consecutive_failures=2)
    cfg.source.realtime = True
    code, took = run_app(cfg)
    assert code == 1
    assert took < 16, took  # the second sentence ends at 9 s
    lines = complaints(caplog)
    assert len(lines) == 3, lines  # one per failure, then why the run ends
    assert lines[-1].startswith("stopping: voice failed 2 times in a row (last: Boom")
    results = stdout_results(capsys)
    assert 1 <= len(results) <= 2
    assert all(r["modalities"]["audio"] == "absent" for r in results)
    # What was delivered got out before the end, and the device said goodbye.
    assert sub.wait_for(lambda: len(sub.results()) == len(results), 5)
    assert sub.on("/availability")[-1][0] == b"offline"


def test_a_face_stage_that_always_fails_says_so_once_then_ends_the_run(
    monkeypatch, capsys, caplog, tmp_path
):
    caplog.set_level(logging.INFO, "edge_msa")
    monkeypatch.setattr(FaceStage, "process", raising(FaceStage.process))
    code, _ = run_app(demo_config(tmp_path))
    assert code == 1
    lines = complaints(caplog)
    # Hundreds of frames failed: said when it started, and why the run ended.
    assert len(lines) == 2, lines
    assert lines[0].startswith("face stage failed on the frame at ")
    assert lines[1].startswith("stopping: face stage failed 3 times in a row (last: Boom")
    results = stdout_results(capsys)
    assert len(results) <= 3
    assert all(r["modalities"]["vision"] == "absent" for r in results)


def test_a_stage_that_crashes_ends_the_run_instead_of_hanging(monkeypatch, capsys, caplog,
                                                               tmp_path):
    """A bug outside the per-utterance guards kills the VAD's task: before,
    the source thread then waited forever for room in the audio queue."""
    from edge_msa.segmentation.segmenter import Segmenter

    caplog.set_level(logging.INFO, "edge_msa")
    monkeypatch.setattr(Segmenter, "push", lambda self, chunk: [None])  # not an Utterance
    cfg = demo_config(tmp_path)
    cfg.source.realtime = True
    code, took = run_app(cfg)
    assert code == 1 and took < 10, took
    lines = complaints(caplog)
    assert len(lines) == 1 and lines[0].startswith("stopping: the segment stage crashed"), lines
    assert stdout_results(capsys) == []
