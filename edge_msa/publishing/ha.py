"""Home Assistant MQTT discovery: one retained sensor config per published field,
and a switch for the control topic.

Each sensor reads the device's ``sentiment`` topic with a ``value_template``,
so Home Assistant needs nothing but the broker. The ``Listening`` switch
sends ``ON``/``OFF`` to ``<prefix>/<device_id>/listen/set`` and shows the
retained state of ``<prefix>/<device_id>/listen``. The configs are retained and
sent again whenever Home Assistant announces ``online`` on
``<ha_prefix>/status`` (it forgets non-retained state when it restarts, and a
user may have cleared the retained ones). Removing the device publishes an
empty retained payload to each config topic, which is Home Assistant's way of
deleting an entity.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from edge_msa import __version__
from edge_msa.config import MqttConfig

MODALITY_STATES = ["present", "simulated", "imagined", "absent"]


@dataclass(frozen=True)
class Sensor:
    object_id: str
    name: str
    template: str
    extra: tuple[tuple[str, object], ...] = ()


SENSORS: tuple[Sensor, ...] = (
    Sensor(
        "score",
        "Sentiment score",
        "{{ value_json.score }}",
        (
            ("state_class", "measurement"),
            ("suggested_display_precision", 2),
            ("icon", "mdi:emoticon-outline"),
        ),
    ),
    Sensor(
        "polarity",
        "Sentiment polarity",
        "{{ value_json.polarity }}",
        (("device_class", "enum"), ("options", ["negative", "neutral", "positive"])),
    ),
    Sensor(
        "uncertainty",
        "Sentiment uncertainty",
        "{{ value_json.uncertainty }}",
        (
            ("state_class", "measurement"),
            ("suggested_display_precision", 2),
            ("icon", "mdi:plus-minus-variant"),
        ),
    ),
    *(
        Sensor(
            f"{m}_state",
            f"{m.capitalize()} modality",
            f"{{{{ value_json.modalities.{m} }}}}",
            (
                ("device_class", "enum"),
                ("options", MODALITY_STATES),
                ("entity_category", "diagnostic"),
            ),
        )
        for m in ("text", "audio", "vision")
    ),
    Sensor(
        "last_utterance",
        "Last utterance",
        "{{ value_json.t_end }}",
        (("device_class", "timestamp"),),
    ),
)

_NODE_ID = re.compile(r"[^A-Za-z0-9_-]")


def node_id(device_id: str) -> str:
    """Home Assistant allows only [A-Za-z0-9_-] in a discovery topic's node id."""
    return _NODE_ID.sub("_", device_id)


def status_topic(cfg: MqttConfig) -> str:
    return f"{cfg.ha_prefix}/status"


SWITCH_ID = "listen"


def config_topic(cfg: MqttConfig, device_id: str, sensor: Sensor) -> str:
    return f"{cfg.ha_prefix}/sensor/{node_id(device_id)}/{sensor.object_id}/config"


def switch_topic(cfg: MqttConfig, device_id: str) -> str:
    return f"{cfg.ha_prefix}/switch/{node_id(device_id)}/{SWITCH_ID}/config"


def discovery_messages(
    cfg: MqttConfig, device_id: str, switch: bool = True
) -> list[tuple[str, str]]:
    """(topic, JSON payload) for every sensor of this device, and its switch."""
    base = f"{cfg.prefix}/{device_id}"
    node = node_id(device_id)
    common = {
        "availability_topic": f"{base}/availability",
        "payload_available": "online",
        "payload_not_available": "offline",
        "device": {
            "identifiers": [f"edge_msa_{node}"],
            "name": f"edge-msa {device_id}",
            "model": "edge-msa multimodal sentiment analyser",
            "manufacturer": "edge-msa",
            "sw_version": __version__,
        },
        "origin": {"name": "edge-msa", "sw_version": __version__},
    }
    out = []
    for sensor in SENSORS:
        payload = {
            "unique_id": f"edge_msa_{node}_{sensor.object_id}",
            "name": sensor.name,
            "state_topic": f"{base}/sentiment",
            "value_template": sensor.template,
            **common,
            **dict(sensor.extra),
        }
        out.append((config_topic(cfg, device_id, sensor), json.dumps(payload)))
    if switch:
        payload = {
            "unique_id": f"edge_msa_{node}_{SWITCH_ID}",
            "name": "Listening",
            "command_topic": f"{base}/listen/set",
            "state_topic": f"{base}/listen",
            "payload_on": "ON",
            "payload_off": "OFF",
            "state_on": "ON",
            "state_off": "OFF",
            "qos": 1,
            "icon": "mdi:microphone",
            **common,
        }
        out.append((switch_topic(cfg, device_id), json.dumps(payload)))
    return out


def removal_messages(cfg: MqttConfig, device_id: str) -> list[tuple[str, str]]:
    """Empty retained payloads: Home Assistant deletes the entities."""
    return [(t, "") for t, _ in discovery_messages(cfg, device_id, switch=True)]


async def publish(client, messages: list[tuple[str, str]], timeout: float) -> None:
    for topic, payload in messages:
        await client.publish(topic, payload, qos=1, retain=True, timeout=timeout)


async def remove_discovery(cfg: MqttConfig, device_id: str) -> int:
    """`--ha-discovery-remove`: clear this device's configs and return how many."""
    from edge_msa.publishing.mqtt import PUBLISH_TIMEOUT_S, make_client

    messages = removal_messages(cfg, device_id)
    async with make_client(cfg, f"edge-msa-{device_id}-ha-remove") as client:
        await publish(client, messages, PUBLISH_TIMEOUT_S)
    return len(messages)
