"""docs/: the topic schemas match the code and real messages, and each consumer
example parses (the Python subscriber also runs against a real Mosquitto)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import jsonschema
import pytest

from edge_msa.config import Config, MqttConfig
from edge_msa.evaluation.baselines import ModalityEstimate, fuse
from edge_msa.publishing.outbox import Outbox
from edge_msa.publishing.result import build_result
from edge_msa.publishing.schemas import SCHEMAS
from edge_msa.runtime.pipeline import Pipeline
from edge_msa.types import ModalityState
from tests.conftest import REPO, cli

DOCS = REPO / "docs"
P, A = ModalityState.PRESENT, ModalityState.ABSENT


def _result(device_id: str = "lobby", score: float = -1.8) -> dict:
    est = fuse({"text": ModalityEstimate(score, 0.7, P)}, {"text": P, "audio": P, "vision": A})
    return build_result(
        est, device_id, 1_764_000_000.0, 1_764_000_002.0, {"total": 500.0}, "edge-msa-test"
    ).to_payload()


@pytest.mark.parametrize("topic", ["sentiment", "availability", "status"])
def test_schema_files_are_the_cli_output(topic):
    path = DOCS / "schemas" / f"{topic}.schema.json"
    on_disk = json.loads(path.read_text())
    assert on_disk == SCHEMAS[topic], f"regenerate: edge-msa schema --topic {topic} > {path}"
    jsonschema.Draft202012Validator.check_schema(on_disk)
    assert json.loads(cli("schema", "--topic", topic, timeout=60).stdout) == on_disk
    if topic == "sentiment":  # the default topic
        assert json.loads(cli("schema", timeout=60).stdout) == on_disk


def test_real_status_and_availability_messages_validate(tmp_path, broker, subscribe):
    """The status a real Pipeline publishes through the real publisher."""
    import asyncio

    sub = subscribe(broker.port)
    cfg = Config(mqtt=MqttConfig(port=broker.port), device_id="lobby")
    box = Outbox(tmp_path / "o.sqlite")
    result = _result()
    box.add(result["id"], json.dumps(result))
    pipeline = Pipeline(cfg, [], None, None, box, [], "edge-msa-test")

    async def go() -> int:
        pipeline.publisher.start()
        return await pipeline.publisher.stop(10)

    assert asyncio.run(go()) == 0
    assert sub.wait_for(lambda: sub.on("/availability")[-1:] == [(b"offline", False)], 5)
    statuses = [json.loads(p) for p, _ in sub.on("/status")]
    assert {s["state"] for s in statuses} == {"running", "stopped"}
    for s in statuses:
        jsonschema.validate(s, SCHEMAS["status"])
        assert s["device_id"] == "lobby" and "frames_dropped" in s
    for payload, _ in sub.on("/availability"):
        jsonschema.validate(payload.decode(), SCHEMAS["availability"])
    for r in sub.results():
        jsonschema.validate(r, SCHEMAS["sentiment"])


def test_home_assistant_automation_yaml():
    yaml = pytest.importorskip("yaml")
    automations = yaml.safe_load((DOCS / "home-assistant-automation.yaml").read_text())
    assert isinstance(automations, list) and len(automations) >= 2
    for a in automations:
        assert a["id"] and a["alias"] and a["trigger"] and a["action"]
    mqtt = [t for a in automations for t in a["trigger"] if t["platform"] == "mqtt"]
    assert mqtt and all(t["topic"].startswith("edge-msa/") for t in mqtt)
    assert all(t["topic"].endswith("/sentiment") for t in mqtt)
    # The condition's template reads fields that a result really has.
    template = automations[0]["condition"][0]["value_template"]
    jinja2 = pytest.importorskip("jinja2")
    payload = _result(score=-1.8)
    rendered = jinja2.Template(template).render(trigger={"payload_json": payload})
    assert rendered.strip() == "True"


def test_node_red_flow_json():
    flow = json.loads((DOCS / "node-red-flow.json").read_text())
    ids = {n["id"] for n in flow}
    assert len(ids) == len(flow)
    for node in flow:
        assert node["type"]
        for port in node.get("wires", []):
            assert set(port) <= ids, node["id"]
        if node["type"] == "mqtt in":
            assert node["broker"] in ids
    topics = {n["topic"] for n in flow if n["type"] == "mqtt in"}
    assert "edge-msa/+/sentiment" in topics and "edge-msa/+/availability" in topics
    sentiment_in = next(n for n in flow if n.get("topic") == "edge-msa/+/sentiment")
    assert sentiment_in["datatype"] == "json"


def test_subscriber_prints_each_result_once(broker):
    script = DOCS / "subscriber.py"
    compile(script.read_text(), str(script), "exec")
    proc = subprocess.Popen(
        [sys.executable, str(script), "127.0.0.1", str(broker.port), "lobby"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    import paho.mqtt.publish as publish

    try:
        first, second = _result(), _result(score=2.1)
        topic = "edge-msa/lobby/sentiment"
        deadline = time.monotonic() + 20
        while not lines and time.monotonic() < deadline:  # until it has subscribed
            publish.single(topic, json.dumps(first), qos=1, port=broker.port)
            time.sleep(0.3)
        publish.single(topic, json.dumps(first), qos=1, port=broker.port)  # a redelivery
        publish.single(topic, json.dumps(second), qos=1, port=broker.port)
        publish.single(
            "edge-msa/other/sentiment", json.dumps(_result("other")), qos=1, port=broker.port
        )
        deadline = time.monotonic() + 10
        while len(lines) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(0.5)  # room for a wrong duplicate to show up
    finally:
        proc.terminate()
        proc.wait(10)
    assert len(lines) == 2, lines
    assert "lobby: -1.80 ±" in lines[0] and "negative" in lines[0]
    assert "text present, audio present, vision absent" in lines[0]
    assert "+2.10" in lines[1] and "positive" in lines[1]
