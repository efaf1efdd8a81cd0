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
    # The paced run's utterances recognised again through the full 30 s window:
    # the same ones the run's own recognition time covers.
    assert report["asr_window_utterances"] == report["asr_utterances"] == report["results"]
    for key in ("asr_ms_p50", "asr_window_ms_p50", "asr_rerun_ms_p50", "asr_window_ratio"):
        assert isinstance(report[key], float) and math.isfinite(report[key]) and report[key] > 0
    assert report["asr_window_ms_p50"] <= report["asr_window_ms_p95"]
    assert report["asr_window_ratio"] == pytest.approx(
        report["asr_ms_p50"] / report["asr_window_ms_p50"], abs=1e-3
    )
    # The baseline is Whisper's full window itself: nothing to compare it with.
    assert report["baseline"]["asr_ms_p50"] > 0 and "asr_window_ms_p50" not in report["baseline"]
