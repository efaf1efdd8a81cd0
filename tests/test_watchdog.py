"""A stage that stops making progress: /healthz answers 503 naming it, and
systemd's watchdog gets no more pings (a datagram socket of the test's stands
in for systemd's NOTIFY_SOCKET). The real runtime on the demo at wall-clock
pace, with the recogniser held up in-process; released, it recovers."""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from edge_msa.config import load_config
from edge_msa.runtime import app
from edge_msa.runtime.analyzer import Analyzer
from edge_msa.runtime.health import StageClock
from edge_msa.runtime.sdnotify import Notifier, watchdog_interval
from tests.conftest import free_port

LIMIT_S = 1.5


def _get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())
    except OSError:
        return 0, {}


async def _poll(url: str, predicate, timeout: float) -> tuple[int, dict]:
    deadline = time.monotonic() + timeout
    answer = (0, {})
    while time.monotonic() < deadline:
        answer = await asyncio.to_thread(_get, url)
        if predicate(*answer):
            break
        await asyncio.sleep(0.2)
    return answer


class FakeSystemd:
    """The notify socket: every datagram, with when it arrived."""

    def __init__(self, path: str) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(path)
        self.sock.settimeout(0.1)
        self.got: list[tuple[float, str]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                continue
            self.got.append((time.monotonic(), data.decode()))

    def pings(self, after: float = 0.0, before: float = float("inf")) -> int:
        return sum(1 for t, m in list(self.got) if m == "WATCHDOG=1" and after < t < before)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.sock.close()


def test_stage_clock_counts_only_waiting_work():
    clock = StageClock()
    assert clock.stalled_for(time.monotonic() + 100) == 0  # idle for ages: not stalled
    clock.arrived()
    t = time.monotonic()
    assert 9 < clock.stalled_for(t + 10) < 11
    clock.done()
    assert clock.stalled_for(t + 10) == 0
    clock.arrived(2)
    clock.done()  # progress, and one still waits: counted from this progress
    assert clock.pending == 1 and 4 < clock.stalled_for(time.monotonic() + 5) < 6
    clock.idle()
    assert clock.stalled_for(time.monotonic() + 5) == 0


def test_notify_socket_and_watchdog_interval(tmp_path):
    fake = FakeSystemd(str(tmp_path / "notify"))
    try:
        assert Notifier(str(tmp_path / "notify")).send("READY=1")
        assert not Notifier(None).send("READY=1")  # not under systemd: nothing sent
        assert Notifier(str(tmp_path / "nobody")).send("READY=1") is False  # one warning
        deadline = time.monotonic() + 5
        while not fake.got and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [m for _, m in fake.got] == ["READY=1"]
    finally:
        fake.close()
    assert watchdog_interval({"WATCHDOG_USEC": "60000000"}) == 30.0
    assert watchdog_interval({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({}) is None


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_stalled_recogniser_is_503_and_stops_the_watchdog(
    broker, tmp_path, monkeypatch, caplog
):
    fake = FakeSystemd(str(tmp_path / "notify"))
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "notify"))
    monkeypatch.setenv("WATCHDOG_USEC", "400000")  # a ping every 0.2 s
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    release = threading.Event()
    hear = Analyzer.hear

    def stuck(self, audio):  # a model call that hangs (a CUDA hang, a deadlock)
        release.wait(120)
        return hear(self, audio)

    monkeypatch.setattr(Analyzer, "hear", stuck)
    port = free_port()
    cfg = load_config(None, {
        "device_id": "stall",
        "source": {"demo": True, "realtime": True},
        "asr": {"enabled": False},
        "vision": {"enabled": False},
        "mqtt": {"port": broker.port},
        "runtime": {"state_dir": str(tmp_path / "state"), "metrics_port": port,
                    "stall_limit_s": LIMIT_S},
    }, environ={})
    url = f"http://127.0.0.1:{port}/healthz"

    async def scenario() -> dict:
        run = asyncio.create_task(app.run(cfg))
        healthy = await _poll(url, lambda s, b: s == 200, 120)
        stalled = await _poll(url, lambda s, b: s == 503 and b.get("stalled"), 60)
        seen = time.monotonic()
        await asyncio.sleep(2.5)
        quiet_until = time.monotonic()
        release.set()
        recovered = await _poll(url, lambda s, b: s == 200, 30)
        await asyncio.sleep(1.0)
        signal.raise_signal(signal.SIGINT)  # the runtime's own handler: stop and flush
        rc = await asyncio.wait_for(run, 60)
        return {"rc": rc, "healthy": healthy, "stalled": stalled, "seen": seen,
                "quiet_until": quiet_until, "recovered": recovered}

    try:
        with caplog.at_level(logging.INFO):
            out = asyncio.run(scenario())
    finally:
        release.set()
        fake.close()
    assert out["rc"] == 0
    assert out["healthy"][0] == 200, out
    code, body = out["stalled"]
    assert code == 503 and body["stalled"] == ["recogniser"], body
    assert any(r.startswith("recogniser has not progressed for") for r in body["reasons"])
    assert body["mqtt"] == "connected" and body["listen"] == "ON"
    messages = [m for _, m in fake.got]
    assert messages[0] == "READY=1", messages[:3]
    seen, quiet_until = out["seen"], out["quiet_until"]
    assert fake.pings(before=seen) >= 5  # pinged while healthy
    # Not one ping while stalled (0.3 s for a datagram sent just before /healthz said so).
    assert fake.pings(after=seen + 0.3, before=quiet_until) == 0, fake.got
    assert out["recovered"][0] == 200, out["recovered"]
    assert fake.pings(after=quiet_until) >= 3  # pings again once it moves
    lines = [r.getMessage() for r in caplog.records if r.name == "edge_msa.runtime.sdnotify"]
    assert any(x.startswith("stalled: recogniser for ") and "no more pings" in x for x in lines)
    assert "no stage is stalled any more" in lines
