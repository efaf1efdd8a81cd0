"""The control topic against a real Mosquitto and the real CLI: a retained OFF
on ``listen/set`` mutes a run from its start, ON mid-run (sent where the Home
Assistant switch sends it) resumes, and the state is retained on ``listen``."""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime

import paho.mqtt.publish as publish
import pytest

from edge_msa.runtime.listen import Listen, parse
from tests.conftest import cli, cli_popen

pytestmark = pytest.mark.timeout(240)


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def _args(port: int, tmp_path, device: str, *extra: str) -> list[str]:
    return ["run", "--demo", "--no-transcribe", "--mqtt-port", str(port), "--state-dir",
            str(tmp_path / "state"), "--device-id", device, "--output", "jsonl",
            "--output", "mqtt", *extra]


def test_parse_and_the_start_state():
    assert [parse(x) for x in (b"ON", b" off\n", "On", b"", b"1", b"OFFF")] == [
        True, False, True, None, None, None
    ]
    muted = Listen(on=False)
    assert muted.decided and not muted.admits() and muted.dropped == 1
    controlled = Listen(on=True, controlled=True)
    t = time.monotonic()
    # Nobody decides: the first chunk waits out the limit, then the start state holds.
    assert controlled.admits(wait_s=0.2) and time.monotonic() - t >= 0.2
    assert controlled.admits(wait_s=5)  # and no later one waits
    later = Listen(on=True, controlled=True)
    threading.Timer(0.1, later.set, (False, "test")).start()
    assert not later.admits(wait_s=5) and later.word == "OFF"


def test_retained_off_at_start_gives_no_results(broker, subscribe, tmp_path):
    # A robot muted the device and keeps it so across restarts: retained, on the set topic.
    publish.single("edge-msa/mute/listen/set", "OFF", qos=1, retain=True, port=broker.port)
    sub = subscribe(broker.port, "edge-msa/mute/#")
    res = cli(*_args(broker.port, tmp_path, "mute"), timeout=180)
    assert res.returncode == 0, res.stderr
    assert res.stdout == "" and sub.results() == [], res.stdout
    assert "listening OFF (retained OFF on edge-msa/mute/listen/set)" in res.stderr
    assert "Traceback" not in res.stderr
    assert sub.wait_for(lambda: sub.on("/listen") == [(b"OFF", False)], 5), sub.on("/listen")
    final = json.loads(sub.on("/status")[-1][0])
    assert final["state"] == "stopped" and final["listen"] == "OFF" and final["results"] == 0
    late = subscribe(broker.port, "edge-msa/mute/listen")
    assert late.wait_for(lambda: late.on("/listen") == [(b"OFF", True)], 5)


@pytest.mark.slow
def test_on_mid_run_from_the_home_assistant_switch_resumes(broker, subscribe, tmp_path):
    sub = subscribe(broker.port, "edge-msa/kiosk/#")
    ha = subscribe(broker.port, "homeassistant/#")
    proc = cli_popen(*_args(broker.port, tmp_path, "kiosk", "--realtime", "--no-vision",
                            "--listen", "off", "--ha-discovery"))
    try:
        assert sub.wait_for(lambda: sub.on("/listen") == [(b"OFF", False)], 120), (
            proc.kill(), proc.communicate()[1][-3000:]
        )
        def switch() -> list[dict]:
            return [json.loads(p) for t, p, _ in list(ha.messages) if t.split("/")[1] == "switch"]

        assert ha.wait_for(lambda: len(switch()) == 1, 10), ha.messages
        (config,) = switch()
        assert config["command_topic"] == "edge-msa/kiosk/listen/set"
        assert config["state_topic"] == "edge-msa/kiosk/listen"
        assert (config["payload_on"], config["payload_off"]) == ("ON", "OFF")
        assert config["availability_topic"] == "edge-msa/kiosk/availability"
        assert config["device"]["identifiers"] == ["edge_msa_kiosk"]
        # The first sentence (0.5-4.0 s of the clip) plays muted; then Home Assistant turns
        # the switch on (not retained, as it does), in the second sentence.
        time.sleep(6.0)
        assert sub.results() == []
        switched_on = time.time()
        publish.single(config["command_topic"], "ON", qos=1, port=broker.port)
        assert sub.wait_for(lambda: (b"ON", False) in sub.on("/listen"), 10), sub.on("/listen")
        assert sub.wait_for(lambda: len(sub.results()) >= 2, 60), sub.messages
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    starts = [_wall(r["t_start"]) for r in sub.results()]
    # Nothing heard while muted: each result's speech began after the switch.
    assert min(starts) >= switched_on - 0.2, (starts, switched_on)
    assert "listening again (ON on edge-msa/kiosk/listen/set)" in stderr
    statuses = [json.loads(p) for p, _ in sub.on("/status")]
    assert statuses[0]["listen"] == "OFF" and statuses[-1]["listen"] == "ON"
    late = subscribe(broker.port, "homeassistant/switch/#")  # retained, for a later HA
    assert late.wait_for(lambda: [r for *_, r in late.messages] == [True], 5)


@pytest.mark.slow
def test_off_mid_utterance_closes_it_and_delivers_it_at_once(broker, subscribe, tmp_path):
    """A robot mutes the device as it starts to speak, often before the VAD's
    hangover has closed what the person said: that utterance ends at the mute
    and its result comes now, not when listening resumes or the run ends."""
    sub = subscribe(broker.port, "edge-msa/robot/#")
    proc = cli_popen(*_args(broker.port, tmp_path, "robot", "--realtime", "--no-vision"))
    try:
        assert sub.wait_for(lambda: sub.on("/listen") == [(b"ON", False)], 120), (
            proc.kill(), proc.communicate()[1][-3000:]
        )
        time.sleep(2.0)  # into the first sentence (0.5-4.0 s of the clip)
        muted = time.time()
        publish.single("edge-msa/robot/listen/set", "OFF", qos=1, port=broker.port)
        # Now: analysing it takes about a second (without the mute it would wait for
        # the end of the clip, 20 s later).
        assert sub.wait_for(lambda: len(sub.results()) == 1, 6), sub.messages
        time.sleep(6.0)  # the second sentence (5.2-9.0 s) plays unheard
        results = sub.results()
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert proc.returncode == 0, stderr[-3000:]
    (first,) = results
    assert _wall(first["t_start"]) < muted < _wall(first["t_end"]) + 0.5, (first, muted)
    assert len(sub.results()) == 1, "something heard while muted was analysed"
