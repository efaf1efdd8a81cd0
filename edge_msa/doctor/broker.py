"""The broker: a TCP connection, then a real MQTT CONNECT with the config's TLS and auth."""

from __future__ import annotations

import asyncio
import os
import socket
import time

from edge_msa.config import Config
from edge_msa.doctor.report import Check

TIMEOUT_S = 5.0


def check_broker(cfg: Config) -> list[Check]:
    m = cfg.mqtt
    needed = "mqtt" in cfg.output.sinks
    fail = "FAIL" if needed else "warn"
    where = f"{m.host}:{m.port}"
    name = "broker"
    try:
        with socket.create_connection((m.host, m.port), timeout=TIMEOUT_S):
            pass
    except OSError as e:
        return [
            Check(
                fail,
                name,
                f"{where}: TCP connect failed ({e.strerror or e})",
                "start the broker (systemctl start mosquitto) or pass --mqtt-host/--mqtt-port",
            )
        ]
    t = time.monotonic()
    try:
        asyncio.run(asyncio.wait_for(_mqtt_connect(cfg), TIMEOUT_S * 2))
    except Exception as e:  # MqttError, ssl.SSLError, TimeoutError: all mean no session
        hint = (
            "check mqtt.username/password"
            if "authori" in str(e).lower() or "password" in str(e).lower()
            else "check mqtt.tls/ca_file and that the port speaks MQTT"
        )
        return [
            Check(
                fail,
                name,
                f"{where}: TCP ok but MQTT CONNECT failed ({type(e).__name__}: {e})",
                hint,
            )
        ]
    ms = (time.monotonic() - t) * 1000.0
    how = ", TLS" if m.tls else ""
    who = f", as {m.username}" if m.username else ""
    return [Check("ok", name, f"{where}: MQTT CONNECT accepted in {ms:.0f} ms{how}{who}")]


async def _mqtt_connect(cfg: Config) -> None:
    from edge_msa.publishing.mqtt import make_client

    # Its own identifier: reusing the running service's one would disconnect it.
    async with make_client(cfg.mqtt, f"edge-msa-doctor-{cfg.device_id}-{os.getpid()}"):
        pass
