"""The broker crashes (SIGKILL) and comes back, again and again: nothing is lost.

The consumer here is a durable subscriber (fixed client id, clean session
off) on a Mosquitto with persistence, as a production consumer would be: a
result the broker accepted while the subscriber was away is queued for it.
Every result must reach it, in the order it was computed; the only
duplicates allowed are redeliveries of the same ``id`` (the PUBACK was lost
in the crash), which consumers drop.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import threading
import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from edge_msa.config import MqttConfig
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from edge_msa.sources import DEMO_CLIP
from tests.conftest import Broker, cli_popen

DEMO = json.loads(DEMO_CLIP.with_suffix(".json").read_text())["sentences"]


def durable_broker(tmp_path: Path) -> Broker:
    """A broker that keeps sessions and queued messages on disk across a crash."""
    b = Broker(tmp_path)
    store = tmp_path / "mosquitto-store"
    store.mkdir()
    b.configure(
        "persistence true",
        f"persistence_location {store}/",
        # Save after every change (a subscription, a queued message), so a
        # SIGKILL loses at most what was in flight at that instant.
        "autosave_on_changes true",
        "autosave_interval 1",
        "max_queued_messages 0",
    )
    return b


class DurableSubscriber:
    """A paho client with a persistent session that reconnects by itself."""

    def __init__(self, port: int, topic: str) -> None:
        self.topic = topic
        self.ids: list[str] = []
        self.connects = 0
        self._lock = threading.Lock()
        self._up = threading.Event()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id="durable-consumer", clean_session=False
        )
        self.client.reconnect_delay_set(min_delay=1, max_delay=1)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = lambda *a: self._up.clear()
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *a: self._up.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self.wait_up(10), "subscriber could not subscribe"

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        self.connects += 1
        client.subscribe(self.topic, qos=1)

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.ids.append(json.loads(msg.payload)["id"])

    def wait_up(self, timeout: float = 20) -> bool:
        return self._up.wait(timeout)

    def received(self) -> list[str]:
        with self._lock:
            return list(self.ids)

    def wait_for(self, n_unique: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(set(self.received())) >= n_unique:
                return True
            time.sleep(0.05)
        return False

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def first_occurrences(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    return [i for i in ids if not (i in seen or seen.add(i))]


def assert_all_in_order(received: list[str], expected: list[str]) -> None:
    """Every expected id arrived, first arrivals in order, duplicates only of the same id."""
    assert set(received) == set(expected), (
        f"missing {sorted(set(expected) - set(received))}, "
        f"unexpected {sorted(set(received) - set(expected))}"
    )
    assert first_occurrences(received) == expected


@pytest.fixture
def flapping(tmp_path):
    b = durable_broker(tmp_path)
    b.start()
    sub = DurableSubscriber(b.port, "edge-msa/+/sentiment")
    yield b, sub
    sub.close()
    b.stop()


def restart(b: Broker, sub: DurableSubscriber, down_s: float) -> None:
    b.kill()
    time.sleep(down_s)
    b.start()
    # Crash again only once the consumer is back, as a broker crash a second
    # apart from the last is not what this test is about.
    assert sub.wait_up(20), "subscriber did not come back"


def test_results_survive_repeated_broker_crashes(flapping, tmp_path):
    """The real publisher and outbox, results arriving every 20 ms, four crashes."""
    b, sub = flapping
    box = Outbox(tmp_path / "outbox.sqlite")
    expected = [f"r{i:04d}" for i in range(300)]
    noticed: list[bool] = []

    async def scenario() -> int:
        pub = MqttPublisher(MqttConfig(port=b.port, backoff_max_s=1.0), "flap", box)
        pub.start()

        async def produce() -> None:
            for rid in expected:
                box.add(rid, json.dumps({"id": rid}))
                pub.notify()
                await asyncio.sleep(0.02)

        producer = asyncio.create_task(produce())
        for down_s in (0.3, 1.0, 0.1, 2.0):
            await asyncio.sleep(0.8)
            await asyncio.to_thread(b.kill)
            noticed.append(await _becomes(lambda: not pub.connected, 10))
            await asyncio.sleep(down_s)
            await asyncio.to_thread(b.start)
            assert await asyncio.to_thread(sub.wait_up, 20)
        await producer
        return await pub.stop(30)

    assert asyncio.run(scenario()) == 0
    assert noticed == [True] * 4
    assert box.count() == 0
    assert sub.wait_for(len(expected), 20)
    assert_all_in_order(sub.received(), expected)


def test_idle_publisher_notices_a_dead_broker_at_once(flapping, tmp_path, caplog):
    """Nothing to send: the link's end is still seen (not only at the next publish)."""
    b, sub = flapping
    box = Outbox(tmp_path / "outbox.sqlite")

    async def scenario() -> tuple[bool, bool]:
        pub = MqttPublisher(MqttConfig(port=b.port, backoff_max_s=1.0), "idle", box)
        pub.start()
        assert await _becomes(lambda: pub.connected, 10)
        await asyncio.to_thread(b.kill)
        down = await _becomes(lambda: not pub.connected, 10)
        await asyncio.to_thread(b.start)
        back = await _becomes(lambda: pub.connected, 10)
        box.add("after", json.dumps({"id": "after"}))
        pub.notify()
        assert await pub.stop(10) == 0
        return down, back

    with caplog.at_level("WARNING", logger="edge_msa.publishing.mqtt"):
        down, back = asyncio.run(scenario())
    assert down, "the publisher still thinks it is connected to a dead broker"
    assert back
    assert sub.wait_for(1, 10) and sub.received() == ["after"]
    lost = [r.getMessage() for r in caplog.records if "connection lost" in r.getMessage()]
    assert len(lost) == 1 and lost[0].startswith(f"MQTT broker 127.0.0.1:{b.port}: "), lost


async def _becomes(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.02)
    return True


class Output:
    """Reads a process's stdout lines (the JSONL results, as computed) and its
    stderr in threads, so neither pipe fills up while the test waits."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._err: list[str] = []
        self._threads = [
            threading.Thread(target=self._read, args=(proc.stdout, self.lines), daemon=True),
            threading.Thread(target=self._read, args=(proc.stderr, self._err), daemon=True),
        ]
        for t in self._threads:
            t.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:
        for line in stream:
            into.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self._err)

    def ids(self) -> list[str]:
        return [json.loads(x)["id"] for x in list(self.lines)]

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.lines) >= n

    def finish(self, timeout: float) -> int:
        rc = self.proc.wait(timeout)
        for t in self._threads:
            t.join(10)
        return rc


def run_cli(port: int, tmp_path: Path, device: str, *extra: str, flush_s: str = "30"):
    args = ["run", "--demo", "--mqtt-port", str(port), "--state-dir", str(tmp_path / "state"),
            "--device-id", device, "--output", "jsonl", "--output", "mqtt", *extra]
    return cli_popen(*args, env={"EDGE_MSA_RUNTIME__FLUSH_TIMEOUT_S": flush_s})


@pytest.mark.slow
def test_realtime_run_with_broker_crashes(flapping, tmp_path):
    """The real CLI on the demo at wall-clock pace; the broker is killed four times."""
    b, sub = flapping
    proc = run_cli(b.port, tmp_path, "rt", "--realtime")
    try:
        computed = Output(proc)
        # A crash right as the first result goes out, then three more spread over the run.
        assert computed.wait_for(1, 120), computed.stderr
        restart(b, sub, 0.5)
        for down_s in (2.0, 0.2, 1.0):
            time.sleep(3.0)
            restart(b, sub, down_s)
        rc = computed.finish(120)
    finally:
        proc.kill()
    stderr = computed.stderr
    assert rc == 0, stderr
    expected = computed.ids()
    assert len(expected) == len(DEMO), stderr
    assert sub.wait_for(len(expected), 20), (sub.received(), stderr)
    assert_all_in_order(sub.received(), expected)
    assert "not yet delivered" not in stderr


def test_broker_down_at_start_and_up_only_at_the_end(tmp_path):
    """Every result waits in the outbox and goes out when the broker appears during the
    final flush, without waiting out the backoff."""
    b = durable_broker(tmp_path)
    # The consumer's session exists on the broker (saved at a clean stop), so
    # what arrives before the consumer reconnects is queued for it.
    b.start()
    sub = DurableSubscriber(b.port, "edge-msa/late/sentiment")
    b.stop()
    proc = run_cli(b.port, tmp_path, "late", "--no-transcribe", flush_s="10")
    try:
        computed = Output(proc)
        assert computed.wait_for(len(DEMO), 120), computed.stderr
        b.start()
        rc = computed.finish(60)
        stderr = computed.stderr
        assert rc == 0, stderr
        assert "unreachable" in stderr and "not yet delivered" not in stderr
        assert sub.wait_for(len(computed.ids()), 20), (sub.received(), stderr)
        assert_all_in_order(sub.received(), computed.ids())
    finally:
        proc.kill()
        sub.close()
        b.stop()
