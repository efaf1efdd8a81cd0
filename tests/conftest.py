"""Shared fixtures: a real Mosquitto on a free loopback port, a real MQTT
subscriber, the data sets folder, and a helper that runs the real CLI."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    return Path(os.environ.get("EDGE_MSA_DATA", REPO.parent / "shared" / "datasets"))


def need_data(*parts: str) -> Path:
    path = data_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not found: set EDGE_MSA_DATA to the shared datasets folder")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Broker:
    """A Mosquitto process that can be stopped and started again on the same port."""

    def __init__(self, workdir: Path) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not os.path.exists(exe):
            pytest.skip("mosquitto is not installed (scripts/setup.sh installs it)")
        self.exe = exe
        self.port = free_port()
        self.conf = workdir / "mosquitto.conf"
        self.conf.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def configure(self, *lines: str) -> None:
        """The listener on the same port with these extra lines (TLS, auth, persistence)."""
        # As root, mosquitto drops to user mosquitto, which cannot read pytest's 0700 tmp dir.
        user = ["user root"] if os.geteuid() == 0 else []
        conf = [f"listener {self.port} 127.0.0.1", *lines, *user]
        if not any(x.startswith("allow_anonymous") for x in lines):
            conf.append("allow_anonymous true")
        self.conf.write_text("\n".join(conf) + "\n")

    def kill(self) -> None:
        """SIGKILL, like a crash or a power cut: no goodbye, no final save."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def broker(tmp_path: Path):
    b = Broker(tmp_path)
    b.start()
    yield b
    b.stop()


@pytest.fixture
def stopped_broker(tmp_path: Path):
    """A broker configured on a port where nothing listens yet."""
    b = Broker(tmp_path)
    yield b
    b.stop()


@dataclass
class Subscriber:
    """A paho-mqtt client that records every message it gets."""

    port: int
    topic: str
    messages: list[tuple[str, bytes, bool]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import paho.mqtt.client as mqtt

        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *a: c.subscribe(self.topic, qos=1)
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.connect("127.0.0.1", self.port)
        self.client.loop_start()
        assert self._subscribed.wait(5), "subscriber could not subscribe"

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            self.messages.append((msg.topic, msg.payload, bool(msg.retain)))

    def on(self, suffix: str) -> list[tuple[bytes, bool]]:
        with self._lock:
            return [(p, r) for t, p, r in self.messages if t.endswith(suffix)]

    def results(self) -> list[dict]:
        return [json.loads(p) for p, _ in self.on("/sentiment")]

    def wait_for(self, predicate, timeout: float = 30.0) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            time.sleep(0.05)
        return predicate()

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def subscribe():
    subs: list[Subscriber] = []

    def make(port: int, topic: str = "edge-msa/#") -> Subscriber:
        subs.append(Subscriber(port, topic))
        return subs[-1]

    yield make
    for s in subs:
        s.close()


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 300):
    """Run the real `edge-msa` command; returns the CompletedProcess."""
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "edge_msa", *args],
        capture_output=True,
        text=True,
        env=full_env,
        timeout=timeout,
        cwd=REPO,
    )


def cli_popen(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen:
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "edge_msa", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        cwd=REPO,
    )
