"""docs/fleet.md: two devices, one broker, two consumers in one MQTT 5 shared
subscription group. Every result is handled exactly once across the group, both
members do some of the work, and both see every device's availability; and a
site broker bridged to the central one with the doc's own bridge settings."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from collections import Counter

from edge_msa.config import MqttConfig
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from edge_msa.publishing.result import build_result
from edge_msa.types import Estimate, ModalityState
from tests.conftest import REPO, Broker

CONSUMER = REPO / "examples" / "fleet_consumer.py"
GROUP = "$share/workers/edge-msa/+/sentiment"
DEVICES = ("lobby", "entrance")
PER_DEVICE = 30


class ConsumerProc:
    """The example consumer as a real process; its JSON lines, parsed."""

    def __init__(self, port: int, name: str) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, str(CONSUMER), "--host", "127.0.0.1", "--port", str(port),
             "--topic", GROUP, "--name", name],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.events: list[dict] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self._lock:
                self.events.append(json.loads(line))

    def of(self, kind: str) -> list[dict]:
        with self._lock:
            return [e for e in self.events if e["event"] == kind]

    def stop(self) -> str:
        self.proc.terminate()
        _, err = self.proc.communicate(timeout=10)
        return err


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


def fill_outbox(path, device: str) -> list[str]:
    """PER_DEVICE results as the device would publish them."""
    box = Outbox(path)
    P = ModalityState.PRESENT
    ids = []
    for i in range(PER_DEVICE):
        est = Estimate(score=(i % 7) - 3.0, std=0.8, modalities={"text": P, "audio": P,
                                                                 "vision": P})
        t0 = 1_764_000_000.0 + 5 * i
        r = build_result(est, device, t0, t0 + 3, {"total": 600.0}, "edge-msa-test")
        box.add(r.id, json.dumps(r.to_payload()))
        ids.append(r.id)
    return ids


def test_two_consumers_share_the_fleets_results_each_handled_once(tmp_path, broker):
    consumers = [ConsumerProc(broker.port, f"worker-{i}") for i in (1, 2)]
    try:
        assert wait_for(lambda: all(c.of("ready") for c in consumers), 15), [
            c.stop() for c in consumers
        ]
        sent = {d: fill_outbox(tmp_path / f"{d}.sqlite", d) for d in DEVICES}

        async def devices() -> list[int]:
            # The project's own publisher, one per device, with its default config
            # but the port: the fleet needs no change on the device.
            pubs = [
                MqttPublisher(MqttConfig(port=broker.port), d, Outbox(tmp_path / f"{d}.sqlite"))
                for d in DEVICES
            ]
            for p in pubs:
                p.start()
            return list(await asyncio.gather(*(p.stop(20) for p in pubs)))

        assert asyncio.run(devices()) == [0, 0]  # every result acknowledged by the broker
        total = PER_DEVICE * len(DEVICES)
        handled = lambda: [e for c in consumers for e in c.of("result")]  # noqa: E731
        assert wait_for(lambda: len(handled()) >= total, 20), len(handled())
        time.sleep(0.5)  # room for a wrong second delivery to show up
    finally:
        errors = [c.stop() for c in consumers]

    counts = Counter(e["id"] for e in handled())
    expected = {i for ids in sent.values() for i in ids}
    assert set(counts) == expected
    assert all(n == 1 for n in counts.values()), [i for i, n in counts.items() if n > 1]
    for c in consumers:
        got = c.of("result")
        assert got, f"{c.name} handled nothing: {errors}"
        for e in got:
            assert e["id"] in sent[e["device_id"]]
    # Availability is a plain subscription: every member sees every device come and go.
    for c in consumers:
        states = {(e["device_id"], e["state"]) for e in c.of("availability")}
        assert states >= {(d, s) for d in DEVICES for s in ("online", "offline")}, states


def bridge_conf(central_port: int) -> list[str]:
    """docs/fleet.md's bridge block, pointed at the test's central broker (no TLS or
    credentials here: those lines are dropped)."""
    text = (REPO / "docs" / "fleet.md").read_text()
    block = text.split("# /etc/mosquitto/conf.d/bridge.conf")[1].split("\n\n")[0]
    lines = []
    for raw in block.splitlines()[1:]:
        line = re.sub(r"(^|\s+)#\s.*$", "", raw).strip()  # comments; keeps edge-msa/#
        if not line or line.startswith(("bridge_cafile", "remote_")):
            continue
        if line.startswith("address"):
            line = f"address 127.0.0.1:{central_port}"
        lines.append(line)
    return lines


def test_a_site_bridged_to_the_central_broker_as_docs_fleet_md_says(tmp_path, broker, subscribe):
    """A device talks to its site's Mosquitto, bridged to the central one with the
    doc's settings: results, retained availability and the bridge's own state
    reach the central broker; when the bridge drops, its state says so."""
    site_dir = tmp_path / "site"
    site_dir.mkdir()
    site = Broker(site_dir)
    conf = bridge_conf(broker.port)
    assert any(x.startswith("connection ") for x in conf) and "topic edge-msa/# out 1" in conf
    site.configure(*conf)
    central = subscribe(broker.port, "edge-msa/#")
    bridge = subscribe(broker.port, "$SYS/broker/connection/+/state")  # '#' skips $SYS
    site.start()
    try:
        ids = fill_outbox(tmp_path / "d.sqlite", "lobby")

        async def device() -> int:
            pub = MqttPublisher(MqttConfig(port=site.port), "lobby", Outbox(tmp_path / "d.sqlite"))
            pub.start()
            await asyncio.sleep(0.5)
            return await pub.stop(20)

        assert asyncio.run(device()) == 0
        assert central.wait_for(lambda: len(central.results()) >= len(ids), 20)
        assert [r["id"] for r in central.results()] == ids
        # A late subscriber on the central broker gets the device's state, retained.
        late = subscribe(broker.port, "edge-msa/+/availability")
        assert late.wait_for(lambda: late.on("/availability") == [(b"offline", True)], 5)
        assert bridge.wait_for(lambda: [p for p, _ in bridge.on("/state")][-1:] == [b"1"], 5)
    finally:
        site.kill()
    # The site is gone: the will of its bridge tells the central broker.
    assert bridge.wait_for(lambda: bridge.on("/state")[-1][0] == b"0", 10), bridge.on("/state")
