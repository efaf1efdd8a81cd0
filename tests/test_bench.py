"""`edge-msa bench` runs the real pipeline and reports every key (no timing asserts)."""

import json
import math

import pytest

from tests.conftest import cli
from tests.media_util import demo_head

KEYS = ("eou_to_publish_ms_p50", "eou_to_publish_ms_p95", "face_fps", "rtf", "rss_mb")


@pytest.mark.slow
def test_bench_reports_every_key(tmp_path):
    clip = demo_head(tmp_path / "head.mp4", 5.0)  # the first demo sentence
    res = cli(
        "bench", "--media", str(clip), "--json", "--baseline", "--plot", str(tmp_path / "plots")
    )
    assert res.returncode == 0, res.stderr
    report = json.loads(res.stdout.strip().splitlines()[-1])
    for key in KEYS:
        assert isinstance(report[key], float) and math.isfinite(report[key]) and report[key] > 0
    assert report["results"] == 1
    # Through a real broker, to a subscriber (mosquitto is installed by setup).
    assert report["broker"] is True
    stages = ("vad", "asr", "voice", "text", "face", "face_detect", "face_expression", "fusion",
              "publish")
    for stage in stages:
        assert report[f"{stage}_ms_p50"] <= report[f"{stage}_ms_p95"]
    # The naive configuration ran in the same invocation, with its ratios.
    for key in KEYS[:-1]:
        assert report["baseline"][key] > 0
    for key in ("speedup_vs_baseline", "speedup_vs_baseline_p95", "rtf_ratio_vs_baseline"):
        assert isinstance(report[key], float) and report[key] > 0
    assert set(report["model_mb"]) >= {"face", "fusion", "text", "voice", "whisper"}
    # Drafts of the paced run: each one started was used by its utterance or outdated.
    assert report["drafts_started"] == report["drafts_used"] + report["drafts_outdated"]
    assert report["drafts_outdated_ran"] <= report["drafts_outdated"]
    assert (tmp_path / "plots" / "latency.png").stat().st_size > 1000
