"""The real CLI on real media against a real Mosquitto."""

from __future__ import annotations

import json
import re
import signal
import time

import jsonschema
import pytest

from edge_msa.publishing.result import RESULT_SCHEMA
from edge_msa.sources import DEMO_CLIP
from tests.conftest import cli, cli_popen, need_data
from tests.media_util import video_stream_only

DEMO = json.loads(DEMO_CLIP.with_suffix(".json").read_text())["sentences"]


def run_args(port: int, state, device: str, *extra: str) -> list[str]:
    return [
        "run", "--mqtt-port", str(port), "--state-dir", str(state), "--device-id", device, *extra
    ]


@pytest.mark.slow
def test_demo_to_mqtt(broker, subscribe, tmp_path):
    sub = subscribe(broker.port, "edge-msa/e2e/#")
    proc = cli_popen(*run_args(broker.port, tmp_path, "e2e", "--demo"))
    try:
        assert sub.wait_for(lambda: len(sub.results()) >= 1, 120), "no result arrived"
        # A subscriber arriving mid-run sees the retained availability.
        late = subscribe(broker.port, "edge-msa/e2e/availability")
        assert late.wait_for(lambda: late.on("availability") == [(b"online", True)], 5)
        _, stderr = proc.communicate(timeout=180)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert sub.wait_for(lambda: len(sub.results()) == len(DEMO), 10), [
        (r["t_start"], r["modalities"]) for r in sub.results()
    ]
    results = sub.results()
    for r in results:
        jsonschema.validate(r, RESULT_SCHEMA)
        assert r["device_id"] == "e2e" and "transcript" not in r
        assert r["modalities"] == {"text": "present", "audio": "present", "vision": "present"}
        assert set(r["outputs"]) == {"text", "audio", "vision"}
        assert r["outputs"]["vision"]["emotion"] == "happy"  # the astronaut smiles throughout
    assert len({r["id"] for r in results}) == len(results)
    assert [r["t_start"] for r in results] == sorted(r["t_start"] for r in results)
    by_polarity = {s["polarity"]: [] for s in DEMO}
    for sentence, r in zip(DEMO, results, strict=True):
        by_polarity[sentence["polarity"]].append(r["score"])
    assert min(by_polarity["positive"]) > 0.3, by_polarity
    assert max(by_polarity["negative"]) < -0.3, by_polarity
    # No transcript at INFO: the privacy promise covers the logs too.
    assert "worst service" not in stderr.lower()
    after = subscribe(broker.port, "edge-msa/e2e/#")
    assert after.wait_for(lambda: after.on("/availability") == [(b"offline", True)], 5)
    status = json.loads(after.on("/status")[0][0])
    assert status["state"] == "stopped" and status["results"] == len(DEMO)


@pytest.mark.slow
def test_outbox_holds_results_while_broker_is_down(stopped_broker, subscribe, tmp_path):
    args = run_args(stopped_broker.port, tmp_path, "ob", "--demo")
    res = cli(*args, env={"EDGE_MSA_RUNTIME__FLUSH_TIMEOUT_S": "0.5"})
    assert res.returncode == 0, res.stderr
    # One warning per backoff step, not per result: the delays grow.
    delays = [float(d) for d in re.findall(r"retrying in ([\d.]+) s", res.stderr)]
    assert delays and delays == sorted(delays) and len(set(delays)) == len(delays), delays
    assert "5 result(s) not yet delivered" in res.stderr

    state = ["--state-dir", str(tmp_path), "--mqtt-port", str(stopped_broker.port)]
    status = json.loads(cli("outbox", "status", *state).stdout)
    assert status["pending"] == len(DEMO)

    stopped_broker.start()
    sub = subscribe(stopped_broker.port, "edge-msa/ob/sentiment")
    flush = cli("outbox", "flush", *state, "--device-id", "ob")
    assert flush.returncode == 0, flush.stderr
    assert json.loads(flush.stdout) == {"delivered": len(DEMO), "pending": 0}
    assert sub.wait_for(lambda: len(sub.results()) == len(DEMO), 5)
    results = sub.results()
    assert len({r["id"] for r in results}) == len(DEMO)
    assert [r["t_start"] for r in results] == sorted(r["t_start"] for r in results)
    assert json.loads(cli("outbox", "status", *state).stdout)["pending"] == 0


def test_pending_results_go_out_first_at_next_start(stopped_broker, subscribe, tmp_path):
    fast = ("--demo", "--no-transcribe")
    env = {"EDGE_MSA_RUNTIME__FLUSH_TIMEOUT_S": "0"}
    first = cli(*run_args(stopped_broker.port, tmp_path, "nx", *fast), env=env)
    assert first.returncode == 0, first.stderr
    stopped_broker.start()
    sub = subscribe(stopped_broker.port, "edge-msa/nx/sentiment")
    second = cli(*run_args(stopped_broker.port, tmp_path, "nx", *fast, "--output", "jsonl",
                           "--output", "mqtt"))
    assert second.returncode == 0, second.stderr
    new = [json.loads(line) for line in second.stdout.splitlines()]
    new_ids = [r["id"] for r in new]
    # No transcription: the fusion model imagines the text from the voice.
    assert {r["modalities"]["text"] for r in new} == {"imagined"}
    assert all("text" in r["outputs"] and "audio" in r["outputs"] for r in new)
    assert sub.wait_for(lambda: len(sub.results()) == 2 * len(DEMO), 10)
    got = [r["id"] for r in sub.results()]
    assert got[len(DEMO):] == new_ids and not set(got[: len(DEMO)]) & set(new_ids)


@pytest.mark.slow
@pytest.mark.data
def test_real_mosi_clip_transcript(tmp_path):
    import jiwer

    clip = need_data("media", "mosi_Oz06ZWiO20M_6.mp4")
    reference = (
        "and sucker punch is a failer but like a really ambitious weird the interesting "
        "idiosyncratic failure"
    )
    res = cli("run", "--media", str(clip), "--output", "jsonl", "--transcript",
              "--state-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    results = [json.loads(x) for x in res.stdout.splitlines()]
    utterances = re.findall(r"result [\d.]+-[\d.]+ s", res.stderr)
    assert len(results) == len(utterances) >= 1
    hypothesis = " ".join(r["transcript"] for r in results)
    norm = re.sub(r"[^a-z' ]", " ", hypothesis.lower())
    wer = jiwer.wer(reference, " ".join(norm.split()))
    assert wer <= 0.35, (wer, hypothesis)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_finishes_utterance_in_flight_and_exits_zero(sig, broker, subscribe, tmp_path):
    sub = subscribe(broker.port, "edge-msa/sig/#")
    args = run_args(broker.port, tmp_path, "sig", "--demo", "--realtime", "--no-transcribe")
    proc = cli_popen(*args)
    try:
        assert sub.wait_for(lambda: len(sub.results()) == 1, 60)
        time.sleep(1.0)  # the second sentence (from 5.15 s) is being spoken now
        proc.send_signal(sig)
        t = time.monotonic()
        _, stderr = proc.communicate(timeout=10)
        took = time.monotonic() - t
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    assert took < 5, took
    # The utterance cut short by the signal is still analysed and delivered.
    assert sub.wait_for(lambda: len(sub.results()) == 2, 5), stderr
    assert sub.on("/availability")[-1][0] == b"offline"


def test_face_only_results_when_nobody_speaks(tmp_path):
    clip = video_stream_only(tmp_path / "faces.mp4")
    res = cli("run", "--media", str(clip), "--output", "jsonl", "--visual-interval", "5",
              "--state-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    results = [json.loads(x) for x in res.stdout.splitlines()]
    # 24 s of a face with no sound: one result per 5 s of video.
    assert len(results) == 4, res.stderr
    for r in results:
        jsonschema.validate(r, RESULT_SCHEMA)
        assert r["modalities"] == {"text": "absent", "audio": "absent", "vision": "present"}
        assert set(r["outputs"]) == {"vision"}
        # The astronaut smiles: the face alone says positive.
        assert r["outputs"]["vision"]["emotion"] == "happy"
        assert r["score"] > 0.3 and r["outputs"]["vision"]["score"] > 0.3
