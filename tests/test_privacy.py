"""Nothing but a sentiment number leaves the box: payloads against the
published schemas, logs without the transcript, MQTT over TLS with a
password that is never logged, and wrong credentials as one clear line."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import subprocess
import threading
from pathlib import Path

import jsonschema
import paho.mqtt.client as mqtt
import pytest

from edge_msa.config import ConfigError, MqttConfig, load_config
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from tests.conftest import REPO, cli
from tests.media_util import demo_head

SCHEMAS = REPO / "docs" / "schemas"
PASSWORD = "pw-Zq8!never-in-logs"


def schema(topic: str) -> dict:
    return json.loads((SCHEMAS / f"{topic}.schema.json").read_text())


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    """The demo's first two sentences (one positive, one negative), about 10 s."""
    return demo_head(tmp_path_factory.mktemp("media") / "head.mp4", 9.6)


# -- payloads and logs ----------------------------------------------------------


def all_keys(value, prefix: str = "") -> set[str]:
    if isinstance(value, dict):
        out = set()
        for k, v in value.items():
            out |= {f"{prefix}{k}"} | all_keys(v, f"{prefix}{k}.")
        return out
    return set()


def schema_paths(node: dict, prefix: str = "") -> set[str]:
    """Every key path a JSON Schema names under ``properties``, however deep."""
    out = set()
    for name, sub in node.get("properties", {}).items():
        out |= {f"{prefix}{name}"} | schema_paths(sub, f"{prefix}{name}.")
    return out


def test_payloads_carry_only_the_schema_and_logs_no_transcript(broker, subscribe, clip, tmp_path):
    """Two real runs: transcript off (the default), then on. Off: no transcript in
    any payload; on: it appears only in the `transcript` field. At INFO the log
    never holds a recognised word, in either run."""
    runs = {}
    for device, extra in (("quiet", ()), ("talk", ("--transcript",))):
        sub = subscribe(broker.port, f"edge-msa/{device}/#")
        res = cli("run", "--media", str(clip), "--mqtt-port", str(broker.port), "--state-dir",
                  str(tmp_path / device), "--device-id", device, *extra)
        assert res.returncode == 0, res.stderr
        n = len(re.findall(r" result [\d.]+-[\d.]+ s", res.stderr))
        assert n == 2, res.stderr
        assert sub.wait_for(lambda s=sub, n=n: len(s.results()) == n, 10)
        assert sub.wait_for(lambda s=sub: s.on("/availability")[-1][0] == b"offline", 5)
        runs[device] = (sub, res.stderr)

    words = set()
    for r in runs["talk"][0].results():
        jsonschema.validate(r, schema("sentiment"))
        assert r["modalities"]["text"] == "present"
        words |= {w.lower() for w in re.findall(r"[A-Za-z]{5,}", r["transcript"])}
    assert len(words) >= 5, words  # "absolutely", "people", "wonderful", ...

    allowed = schema_paths(schema("sentiment"))
    for device, (sub, stderr) in runs.items():
        for r in sub.results():
            jsonschema.validate(r, schema("sentiment"))
            # Every key, however deep, is one the schema names; no arrays at all (no
            # audio, frames or embeddings), and small.
            keys = all_keys(r) - {k for k in all_keys(r) if k.startswith("latency_ms.")}
            assert keys <= allowed, keys - allowed
            assert not re.search(r"\[", json.dumps(r)), r
            assert len(json.dumps(r)) < 2000
            assert ("transcript" in r) == (device == "talk")
        for payload, _ in sub.on("/status"):
            jsonschema.validate(json.loads(payload), schema("status"))
        for payload, _ in sub.on("/availability"):
            jsonschema.validate(payload.decode(), schema("availability"))
        logged = {w.lower() for w in re.findall(r"[A-Za-z]{5,}", stderr)}
        assert not words & logged, (device, words & logged)


def test_config_errors_never_echo_the_password():
    with pytest.raises(ConfigError) as err:
        load_config(None, environ={"EDGE_MSA_MQTT__PASSWORD": PASSWORD,
                                   "EDGE_MSA_MQTT__PASSWORD_FILE": "/etc/hostname"})
    assert "not both" in str(err.value) and PASSWORD not in str(err.value)
    cfg = load_config(None, environ={"EDGE_MSA_MQTT__PASSWORD": PASSWORD})
    assert PASSWORD not in repr(cfg) and PASSWORD not in str(cfg.model_dump())
    assert cfg.mqtt.secret() == PASSWORD


@pytest.mark.parametrize("bad", ["lobby/1", "lobby+", "#", "a b", ""])
def test_device_id_is_one_clean_topic_level_from_every_layer(bad):
    for how in ({"env": {"EDGE_MSA_DEVICE_ID": bad}}, {"args": ("--device-id", bad)}):
        res = cli("run", "--demo", "--output", "jsonl", *how.get("args", ()),
                  env=how.get("env"), timeout=60)
        assert res.returncode == 2, res.stderr
        err = res.stderr.strip()
        assert err.count("\n") == 0 and "device_id" in err and not res.stdout, err


# -- TLS and credentials --------------------------------------------------------


def openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1/localhost signed by it, and a second,
    unrelated CA."""
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed")
    d = tmp_path_factory.mktemp("pki")
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", *ec, "-keyout", str(d / f"{ca}.key"), "-out",
                str(d / f"{ca}.crt"), "-days", "2", "-subj", f"/CN=edge-msa test {ca}")
    openssl("req", *ec, "-keyout", str(d / "server.key"), "-out", str(d / "server.csr"),
            "-subj", "/CN=localhost")
    (d / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    openssl("x509", "-req", "-in", str(d / "server.csr"), "-CA", str(d / "ca.crt"), "-CAkey",
            str(d / "ca.key"), "-CAcreateserial", "-out", str(d / "server.crt"), "-days", "2",
            "-extfile", str(d / "san.ext"))
    return {name: d / name for name in ("ca.crt", "other-ca.crt", "server.crt", "server.key")}


@pytest.fixture
def secure_broker(broker, pki, tmp_path):
    """The fixture's Mosquitto, now TLS only, no anonymous clients, one user."""
    if not shutil.which("mosquitto_passwd"):
        pytest.skip("mosquitto_passwd is not installed")
    passwd = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(passwd), "kiosk", PASSWORD], check=True)
    broker.stop()
    broker.configure(
        f"cafile {pki['ca.crt']}", f"certfile {pki['server.crt']}",
        f"keyfile {pki['server.key']}", "allow_anonymous false", f"password_file {passwd}",
    )
    broker.start()
    return broker


class TlsSubscriber:
    def __init__(self, port: int, ca: Path, topic: str) -> None:
        self.messages: list[tuple[str, bytes]] = []
        self._ready = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        self.client.tls_set(ca_certs=str(ca))
        self.client.username_pw_set("kiosk", PASSWORD)
        self.client.on_connect = lambda c, *a: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda *a: self._ready.set()
        self.client.on_message = lambda c, u, m: self.messages.append((m.topic, m.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._ready.wait(10), "TLS subscriber could not subscribe"

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def tls_env(port: int, ca: Path, password_file: Path) -> dict[str, str]:
    return {
        "EDGE_MSA_MQTT__PORT": str(port), "EDGE_MSA_MQTT__TLS": "true",
        "EDGE_MSA_MQTT__CA_FILE": str(ca), "EDGE_MSA_MQTT__USERNAME": "kiosk",
        "EDGE_MSA_MQTT__PASSWORD_FILE": str(password_file),
    }


def test_tls_with_a_password_file_delivers_and_never_logs_it(secure_broker, pki, clip, tmp_path):
    secret = tmp_path / "mqtt-password"
    secret.write_text(PASSWORD + "\n")
    secret.chmod(0o600)
    env = tls_env(secure_broker.port, pki["ca.crt"], secret)
    sub = TlsSubscriber(secure_broker.port, pki["ca.crt"], "edge-msa/tls/#")
    try:
        res = cli("run", "--media", str(clip), "--no-transcribe", "--state-dir",
                  str(tmp_path / "state"), "--device-id", "tls", "--log-level", "DEBUG", env=env)
        assert res.returncode == 0, res.stderr
        assert "MQTT connected" in res.stderr
        results = [json.loads(p) for t, p in sub.messages if t.endswith("/sentiment")]
        assert len(results) == len(re.findall(r" result [\d.]+-[\d.]+ s", res.stderr)) >= 1
        doctor = cli("doctor", "--json", "--state-dir", str(tmp_path / "state"), env=env)
        check = next(c for c in json.loads(doctor.stdout)["checks"] if c["name"] == "broker")
        assert check["level"] == "ok" and "TLS" in check["detail"], check
        status = cli("outbox", "status", "--state-dir", str(tmp_path / "state"), env=env)
        # At DEBUG too: neither our logs nor paho's carry the password.
        for text in (res.stdout, res.stderr, doctor.stdout, doctor.stderr, status.stdout,
                     status.stderr, *(p.decode() for _, p in sub.messages)):
            assert PASSWORD not in text
    finally:
        sub.close()


def refusal(cfg: MqttConfig, tmp_path: Path, caplog) -> list[str]:
    """The lines the real publisher logs when it cannot get a session."""
    box = Outbox(tmp_path / "outbox.sqlite")
    box.add("r1", "{}")

    async def go() -> int:
        pub = MqttPublisher(cfg, "dev", box)
        pub.start()
        await asyncio.sleep(1.5)
        return await pub.stop(0)

    with caplog.at_level(logging.DEBUG):
        assert asyncio.run(go()) == 1  # kept for later, not dropped
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_wrong_password_is_one_clear_line(secure_broker, pki, tmp_path, caplog):
    cfg = MqttConfig(port=secure_broker.port, tls=True, ca_file=pki["ca.crt"],
                     username="kiosk", password="not-the-password")
    lines = refusal(cfg, tmp_path, caplog)
    assert lines and all("refused the connection" in x for x in lines), lines
    assert "check mqtt.username and the password" in lines[0] and "\n" not in lines[0]
    assert all("not-the-password" not in r.getMessage() for r in caplog.records)


def test_untrusted_server_certificate_is_one_clear_line(secure_broker, pki, tmp_path, caplog):
    cfg = MqttConfig(port=secure_broker.port, tls=True, ca_file=pki["other-ca.crt"],
                     username="kiosk", password=PASSWORD)
    lines = refusal(cfg, tmp_path, caplog)
    assert lines and "TLS failed" in lines[0] and "certificate verify failed" in lines[0], lines
    assert "check mqtt.ca_file" in lines[0]
    assert all(PASSWORD not in r.getMessage() for r in caplog.records)

