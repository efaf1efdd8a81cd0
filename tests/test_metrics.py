"""`--metrics-port`: a real demo run scraped over HTTP while it runs, /healthz for a
healthy and an unhealthy run, and the Grafana dashboard's metric names."""

from __future__ import annotations

import json
import re
import signal
import time
import urllib.error
import urllib.request

import pytest

from tests.conftest import REPO, cli, cli_popen, free_port

pytestmark = pytest.mark.timeout(180)
DASHBOARD = REPO / "deploy" / "grafana" / "edge-msa.json"


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def _poll(url: str, predicate, timeout: float = 90.0) -> tuple[int, str]:
    """GET ``url`` until ``predicate(status, body)``; the last answer either way."""
    deadline = time.monotonic() + timeout
    answer: tuple[int, str] = (0, "")
    while time.monotonic() < deadline:
        try:
            answer = _get(url)
        except OSError:  # not listening yet
            time.sleep(0.3)
            continue
        if predicate(*answer):
            return answer
        time.sleep(0.3)
    return answer


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    from prometheus_client.parser import text_string_to_metric_families

    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(text)
        for s in fam.samples
    }


def _value(samples, name: str, **labels) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _stop(proc) -> int:
    proc.send_signal(signal.SIGINT)
    try:
        return proc.wait(60)
    finally:
        if proc.poll() is None:
            proc.kill()


@pytest.mark.slow
def test_metrics_and_health_while_the_demo_runs(broker, tmp_path):
    port = free_port()
    proc = cli_popen(
        "run",
        "--demo",
        "--realtime",
        "--no-transcribe",
        "--metrics-port",
        str(port),
        "--mqtt-port",
        str(broker.port),
        "--state-dir",
        str(tmp_path),
        "--device-id",
        "m1",
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Answers while the models load (503), then 200 once the source is up and connected.
        status, body = _poll(f"{base}/healthz", lambda s, b: s == 200)
        assert status == 200, body
        health = json.loads(body)
        assert health["healthy"] is True and health["mqtt"] == "connected"
        assert list(health["sources"].values()) == ["up"]
        # Wait for the first result to be acknowledged by the broker.
        status, text = _poll(
            f"{base}/metrics",
            lambda s, b: (
                s == 200 and re.search(r"^edge_msa_results_published_total [1-9]", b, re.M)
            ),
        )
        assert status == 200, text
        samples = _samples(text)
    finally:
        rc = _stop(proc)
    assert rc == 0, proc.stderr.read()[-2000:]
    source = "media " + str(REPO / "edge_msa" / "assets" / "demo.mp4")
    assert _value(samples, "edge_msa_source_up", source=source) == 1
    assert _value(samples, "edge_msa_mqtt_connected") == 1
    assert _value(samples, "edge_msa_healthy") == 1
    assert _value(samples, "edge_msa_model_load_seconds") > 0
    assert _value(samples, "edge_msa_results_published_total") >= 1
    assert sum(v for (n, _), v in samples.items() if n == "edge_msa_results_total") >= 1
    assert _value(samples, "edge_msa_frames_analysed_total") > 0
    assert _value(samples, "edge_msa_frames_total") >= _value(
        samples, "edge_msa_frames_analysed_total"
    )
    assert ("edge_msa_frames_dropped_total", ()) in samples
    assert ("edge_msa_outbox_depth", ()) in samples
    for stage in ("vad", "face", "voice", "fusion", "total"):
        count = _value(samples, "edge_msa_stage_latency_seconds_count", stage=stage)
        assert count >= 1, stage
        inf = _value(samples, "edge_msa_stage_latency_seconds_bucket", stage=stage, le="+Inf")
        assert inf == count
    info = [k for k in samples if k[0] == "edge_msa_build_info"]
    assert info and ("device_id", "m1") in info[0][1]
    # Every metric the Grafana dashboard queries is one this process exports.
    used = set(re.findall(r"edge_msa_[a-z_]+", DASHBOARD.read_text()))
    exported = {n for n, _ in samples}
    assert used and used <= exported, used - exported


@pytest.mark.slow
def test_health_is_503_while_the_broker_is_down(stopped_broker, tmp_path):
    port = free_port()
    proc = cli_popen(
        "run",
        "--demo",
        "--realtime",
        "--no-transcribe",
        "--no-vision",
        "--metrics-port",
        str(port),
        "--mqtt-port",
        str(stopped_broker.port),
        "--state-dir",
        str(tmp_path),
    )
    try:
        status, body = _poll(
            f"http://127.0.0.1:{port}/healthz",
            lambda s, b: list(json.loads(b).get("sources", {"x": "?"}).values()) == ["up"],
        )
        missing = _get(f"http://127.0.0.1:{port}/nothing")[0]
    finally:
        _stop(proc)
    assert status == 503, body
    health = json.loads(body)
    assert health["healthy"] is False and health["mqtt"] == "down"
    assert any("not connected" in r for r in health["reasons"])
    assert missing == 404


def test_port_in_use_is_one_line_and_exit_2(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        proc = cli("run", "--demo", "--output", "jsonl", "--metrics-port", str(port), timeout=60)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if "ERROR" in line]
    assert len(errors) == 1 and "--metrics-port" in errors[0]


def test_dashboard_is_grafana_json():
    dash = json.loads(DASHBOARD.read_text())
    assert dash["title"] == "edge-msa" and dash["panels"]
    for panel in dash["panels"]:
        assert panel["targets"] and all(t["expr"] for t in panel["targets"])
