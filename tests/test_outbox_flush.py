"""`edge-msa outbox flush` beside a running service, and the outbox.lock behind it:
the real CLI and a real Mosquitto. A running service keeps its session and
stays `online`; a flush on its own uses its own client id and says nothing
about the device's availability."""

from __future__ import annotations

import json
import signal
import threading
import time

import paho.mqtt.client as mqtt
import pytest

from edge_msa.publishing.outbox import Outbox, OutboxBusy
from edge_msa.publishing.outbox_lock import FLUSH, RUN
from tests.conftest import cli, cli_popen

pytestmark = pytest.mark.timeout(240)


def test_a_second_service_is_refused_and_a_service_waits_for_a_flush(tmp_path):
    path = tmp_path / "outbox.sqlite"
    service = Outbox(path, lock=RUN)
    with pytest.raises(OutboxBusy, match="in use by a running edge-msa \\(pid \\d+\\); give each"):
        Outbox(path, lock=RUN)
    with pytest.raises(OutboxBusy) as busy:
        Outbox(path, lock=FLUSH, flush_wait_s=0)
    assert busy.value.holder.role == RUN
    service.close()
    flush = Outbox(path, lock=FLUSH)
    threading.Timer(0.5, flush.close).start()
    t = time.monotonic()
    Outbox(path, lock=RUN, flush_wait_s=10).close()  # waits for the flush, then has it
    assert 0.4 < time.monotonic() - t < 5
    flush = Outbox(path, lock=FLUSH)
    with pytest.raises(OutboxBusy, match="still busy after 0.3 s"):
        Outbox(path, lock=RUN, flush_wait_s=0.3)
    flush.close()


def test_run_on_an_outbox_another_run_holds_exits_2(tmp_path):
    held = Outbox(tmp_path / "outbox.sqlite", lock=RUN)
    try:
        res = cli("run", "--demo", "--state-dir", str(tmp_path), timeout=120)
    finally:
        held.close()
    assert res.returncode == 2, res.stderr
    (line,) = [x for x in res.stderr.splitlines() if " ERROR " in x]
    assert "is in use by a running edge-msa" in line and "--state-dir" in line


def test_flush_uses_its_own_client_id_and_no_availability(broker, subscribe, tmp_path):
    box = Outbox(tmp_path / "outbox.sqlite")
    for i in range(3):
        box.add(f"r{i}", json.dumps({"id": f"r{i}"}))
    box.close()
    # Whoever holds the service's client id (a service of this device elsewhere) keeps it.
    dropped = threading.Event()
    holder = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="edge-msa-dev")
    holder.on_disconnect = lambda *a: dropped.set()
    holder.connect("127.0.0.1", broker.port)
    holder.loop_start()
    sub = subscribe(broker.port, "edge-msa/dev/#")
    try:
        res = cli("outbox", "flush", "--state-dir", str(tmp_path), "--mqtt-port",
                  str(broker.port), "--device-id", "dev", timeout=120)
        assert res.returncode == 0, res.stderr
        assert json.loads(res.stdout) == {"delivered": 3, "pending": 0}
        assert sub.wait_for(lambda: len(sub.results()) == 3, 5)
        assert [r["id"] for r in sub.results()] == ["r0", "r1", "r2"]
        time.sleep(0.5)
        assert not dropped.is_set(), "the flush took the service's session"
    finally:
        holder.loop_stop()
        holder.disconnect()
    assert sub.on("/availability") == []
    assert [json.loads(p) for p, _ in sub.on("/status")] == [
        {"state": "stopped", "outbox_pending": 0}
    ]


@pytest.mark.slow
def test_flush_beside_a_running_service_leaves_it_connected_and_online(
    broker, subscribe, tmp_path
):
    state = str(tmp_path / "state")
    sub = subscribe(broker.port, "edge-msa/svc/#")
    proc = cli_popen("run", "--demo", "--realtime", "--no-transcribe", "--no-vision",
                     "--output", "mqtt", "--mqtt-port", str(broker.port), "--state-dir",
                     state, "--device-id", "svc")
    try:
        assert sub.wait_for(lambda: len(sub.results()) >= 1, 120), (
            proc.kill(), proc.communicate()[1][-3000:]
        )
        res = cli("outbox", "flush", "--state-dir", state, "--mqtt-port", str(broker.port),
                  "--device-id", "svc", timeout=60)
        after_flush = len(sub.results())
        # The service goes on delivering over the same session.
        assert sub.wait_for(lambda: len(sub.results()) > after_flush, 30), sub.messages
        assert sub.on("/availability") == [(b"online", False)]
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            _, stderr = proc.communicate(timeout=60)
        finally:
            proc.kill()
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"edge-msa: a running edge-msa (pid {proc.pid}) holds the outbox "
        f"{state}/outbox.sqlite and delivers its results itself; nothing to do"
    ]
    assert proc.returncode == 0, stderr[-3000:]
    assert "connection lost" not in stderr and "MQTT connected" in stderr
    assert stderr.count("MQTT connected") == 1, stderr[-3000:]
    assert sub.on("/availability") == [(b"online", False), (b"offline", False)]
