"""Outbox and MQTT publisher against a real Mosquitto."""

from __future__ import annotations

import asyncio
import json

import jsonschema

from edge_msa.config import MqttConfig
from edge_msa.evaluation.baselines import ModalityEstimate, fuse
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox
from edge_msa.publishing.result import RESULT_SCHEMA, build_result, polarity
from edge_msa.types import ModalityState

P, S, A = ModalityState.PRESENT, ModalityState.SIMULATED, ModalityState.ABSENT


def test_outbox_keeps_order_across_reopen(tmp_path):
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(5):
        box.add(f"id-{i}", json.dumps({"n": i}))
    box.remove(box.pending()[0].seq)
    box.close()
    box = Outbox(tmp_path / "o.sqlite")
    assert [p.id for p in box.pending()] == ["id-1", "id-2", "id-3", "id-4"]
    assert box.count() == 4


def test_result_matches_schema_and_polarity():
    est = fuse({"text": ModalityEstimate(1.4, 0.8, P)}, {"text": P, "audio": P, "vision": A})
    res = build_result(est, "dev", 0.0, 1.5, {"asr": 10.0, "total": 12.0}, "m")
    payload = res.to_payload()
    jsonschema.validate(payload, RESULT_SCHEMA)
    assert payload["polarity"] == "positive" and "transcript" not in payload
    assert payload["t_start"].endswith("+00:00")
    assert polarity(-0.6) == "negative" and polarity(0.2) == "neutral"


def test_v0_baseline_weights_by_precision_and_falls_back_to_prior():
    states = {"text": P, "audio": P, "vision": P}
    est = fuse(
        {"text": ModalityEstimate(2.0, 0.5, P), "audio": ModalityEstimate(-1.0, 1.0, P)}, states
    )
    # precisions 4 and 1: (8 - 1) / 5
    assert abs(est.score - 1.4) < 1e-9 and abs(est.std - 5 ** -0.5) < 1e-9
    simulated = fuse({"text": ModalityEstimate(2.0, 0.5, S)}, states)
    assert simulated.std > 0.5
    prior = fuse({}, {"text": A, "audio": A, "vision": A})
    assert prior.score == 0.0 and prior.std == 1.5


def test_publisher_delivers_pending_in_order_then_marks_offline(tmp_path, broker, subscribe):
    sub = subscribe(broker.port)
    box = Outbox(tmp_path / "o.sqlite")
    for i in range(20):
        box.add(f"r{i}", json.dumps({"id": f"r{i}"}))
    cfg = MqttConfig(port=broker.port)

    async def go() -> int:
        pub = MqttPublisher(cfg, "dev1", box)
        pub.start()
        return await pub.stop(10)

    assert asyncio.run(go()) == 0
    assert box.count() == 0
    assert sub.wait_for(lambda: len(sub.results()) == 20, 5)
    assert [r["id"] for r in sub.results()] == [f"r{i}" for i in range(20)]
    assert sub.wait_for(lambda: sub.on("/availability")[-1:] == [(b"offline", False)], 5)
    status = json.loads(sub.on("/status")[-1][0])
    assert status["state"] == "stopped" and status["outbox_pending"] == 0


def test_publisher_without_broker_keeps_everything(tmp_path, stopped_broker):
    box = Outbox(tmp_path / "o.sqlite")
    box.add("a", "{}")
    cfg = MqttConfig(port=stopped_broker.port)

    async def go() -> int:
        pub = MqttPublisher(cfg, "dev1", box)
        pub.start()
        await asyncio.sleep(0.3)
        return await pub.stop(0.5)

    assert asyncio.run(go()) == 1
    assert [p.id for p in box.pending()] == ["a"]
