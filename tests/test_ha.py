"""Home Assistant MQTT discovery against a real Mosquitto: the retained configs, that
their templates render from a real result, the republish on Home Assistant's birth
message, and `--ha-discovery-remove`."""

from __future__ import annotations

import asyncio
import json
import re
from datetime import datetime

import jsonschema
import pytest

from edge_msa.config import ConfigError, MqttConfig, load_config
from edge_msa.evaluation.baselines import ModalityEstimate, fuse
from edge_msa.publishing import ha
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from edge_msa.publishing.result import RESULT_SCHEMA, build_result
from edge_msa.runtime.listen import Listen
from edge_msa.types import ModalityState
from tests.conftest import cli

P, S, A = ModalityState.PRESENT, ModalityState.SIMULATED, ModalityState.ABSENT
OBJECTS = {
    "score",
    "polarity",
    "uncertainty",
    "text_state",
    "audio_state",
    "vision_state",
    "last_utterance",
}


def render(template: str, value_json: dict) -> str:
    """What Home Assistant does with a value_template (jinja2 when installed)."""
    try:
        import jinja2
    except ImportError:  # the templates are plain attribute paths: a tiny parser is exact
        m = re.fullmatch(r"\{\{\s*value_json((?:\.\w+)+)\s*\}\}", template)
        assert m, f"not a simple template: {template}"
        value: object = value_json
        for key in m.group(1).strip(".").split("."):
            value = value[key]  # type: ignore[index]
        return str(value)
    return (
        jinja2.Environment(undefined=jinja2.StrictUndefined)
        .from_string(template)
        .render(value_json=value_json)
    )


def _real_result(device_id: str) -> dict:
    est = fuse(
        {"text": ModalityEstimate(1.4, 0.8, S), "audio": ModalityEstimate(0.5, 1.5, P)},
        {"text": S, "audio": P, "vision": A},
    )
    payload = build_result(
        est,
        device_id,
        1_764_000_000.0,
        1_764_000_003.5,
        {"asr": 600.0, "total": 650.0},
        "edge-msa-test",
    ).to_payload()
    jsonschema.validate(payload, RESULT_SCHEMA)
    return payload


def _configs(sub, kind: str = "sensor") -> dict[str, dict]:
    out = {}
    for topic, payload, _ in list(sub.messages):
        if topic.endswith("/config") and payload and topic.split("/")[1] == kind:
            out[topic.split("/")[-2]] = json.loads(payload)
    return out


def test_discovery_configs_render_and_republish_on_ha_birth(tmp_path, broker, subscribe):
    device_id = "lobby.1"  # '.' is fine in our topics, not in a discovery node id
    sub = subscribe(broker.port, "homeassistant/#")
    results = subscribe(broker.port, "edge-msa/#")
    box = Outbox(tmp_path / "o.sqlite")
    cfg = MqttConfig(port=broker.port, ha_discovery=True)
    result = _real_result(device_id)
    box.add(result["id"], json.dumps(result))

    async def go() -> int:
        pub = MqttPublisher(cfg, device_id, box)
        pub.start()
        n = len(ha.SENSORS)  # no control topic here (no Listen): sensors only
        assert await asyncio.to_thread(sub.wait_for, lambda: len(sub.messages) >= n, 10)
        # Home Assistant restarts and announces itself: every config comes again.
        import paho.mqtt.publish as publish

        await asyncio.to_thread(
            publish.single, "homeassistant/status", "online", qos=1, port=broker.port
        )
        assert await asyncio.to_thread(
            sub.wait_for,
            lambda: len([m for m in sub.messages if m[0].endswith("/config")]) >= 2 * n,
            10,
        ), [m[0] for m in sub.messages]
        return await pub.stop(10)

    assert asyncio.run(go()) == 0
    configs = _configs(sub)
    assert set(configs) == OBJECTS
    topics = {t for t, p, _ in sub.messages if t.endswith("/config")}
    assert topics == {f"homeassistant/sensor/lobby_1/{o}/config" for o in OBJECTS}
    late = subscribe(broker.port, "homeassistant/#")  # a Home Assistant that starts later
    assert late.wait_for(lambda: len(late.messages) == len(OBJECTS), 5)
    assert all(retain for _, _, retain in late.messages) and _configs(late) == configs
    assert results.wait_for(lambda: len(results.results()) == 1, 5)
    delivered = results.results()[0]
    unique = set()
    for obj, c in configs.items():
        assert c["state_topic"] == "edge-msa/lobby.1/sentiment"
        assert c["availability_topic"] == "edge-msa/lobby.1/availability"
        assert c["payload_available"] == "online" and c["payload_not_available"] == "offline"
        assert c["name"] and c["unique_id"].startswith("edge_msa_lobby_1_")
        unique.add(c["unique_id"])
        dev = c["device"]
        assert dev["identifiers"] == ["edge_msa_lobby_1"] and dev["sw_version"]
        assert dev["name"] and dev["model"]
        value = render(c["value_template"], delivered)
        if c.get("device_class") == "enum":
            assert value in c["options"], (obj, value)
        if obj == "score":
            assert -3 <= float(value) <= 3 and float(value) == pytest.approx(delivered["score"])
        if obj == "uncertainty":
            assert float(value) > 0
        if obj == "polarity":
            assert value == delivered["polarity"]
        if obj.endswith("_state"):
            assert value == delivered["modalities"][obj.removesuffix("_state")]
        if obj == "last_utterance":
            assert c["device_class"] == "timestamp"
            assert datetime.fromisoformat(value).tzinfo is not None
    assert len(unique) == len(OBJECTS)
    assert render(configs["text_state"]["value_template"], delivered) == "simulated"
    assert render(configs["vision_state"]["value_template"], delivered) == "absent"


def test_remove_publishes_empty_retained_configs(tmp_path, broker, subscribe):
    cfg = MqttConfig(port=broker.port, ha_discovery=True)
    box = Outbox(tmp_path / "o.sqlite")

    async def publish_configs() -> None:
        pub = MqttPublisher(cfg, "kiosk", box, listen=Listen(controlled=True))
        pub.start()
        await pub.stop(10)

    asyncio.run(publish_configs())
    entities = len(OBJECTS) + 1  # the sensors and the listen switch
    before = subscribe(broker.port, "homeassistant/#")  # gets the retained configs
    assert before.wait_for(lambda: len(before.messages) == entities, 5)
    assert len(_configs(before, "switch")) == 1
    proc = cli(
        "run",
        "--ha-discovery-remove",
        "--mqtt-port",
        str(broker.port),
        "--device-id",
        "kiosk",
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert f"removed {entities}" in proc.stdout
    assert before.wait_for(lambda: sum(1 for m in before.messages if m[1] == b"") == entities, 5)
    after = subscribe(broker.port, "homeassistant/#")
    after.client.loop_stop()  # nothing retained is left to arrive
    assert after.messages == []


def test_remove_with_closed_port_is_one_line_and_exit_1(stopped_broker):
    proc = cli("run", "--ha-discovery-remove", "--mqtt-port", str(stopped_broker.port), timeout=60)
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1 and "unreachable" in proc.stderr


def test_config_field_env_and_bad_prefix():
    cfg = load_config(environ={"EDGE_MSA_MQTT__HA_DISCOVERY": "true"})
    assert cfg.mqtt.ha_discovery is True and cfg.mqtt.ha_prefix == "homeassistant"
    with pytest.raises(ConfigError, match="mqtt.ha_prefix"):
        load_config(environ={"EDGE_MSA_MQTT__HA_PREFIX": "home assistant"})
