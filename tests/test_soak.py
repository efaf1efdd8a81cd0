"""scripts/soak.sh on a short run: the real CLI on the looped demo against a
real Mosquitto, sampled from /proc, summarised by scripts/soak.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

sys.path.insert(0, str(REPO / "scripts"))
import soak  # noqa: E402


def test_summary_uses_the_minutes_after_the_first_result():
    rows = [soak.Sample(t, rss, 10, 20, 0 if t < 10 else t) for t, rss in
            [(0, 1000), (5, 2000), (10, 100_000), (40, 102_000), (100, 103_000),
             (130, 104_000), (160, 105_000)]]
    report = soak.summarise(rows, results=7, exit_status=0)
    assert report.warmup_s == 10
    assert report.rss_first_minute_mb == pytest.approx(101_000 / 1024, abs=0.1)
    assert report.rss_last_minute_mb == pytest.approx(104_500 / 1024, abs=0.1)
    assert report.rss_growth_pct == pytest.approx(100 * 3.5 / 101, abs=0.01)
    assert report.passed  # under 5 %, fds flat, exit 0
    assert not soak.summarise(rows[:3] + [soak.Sample(200, 100_000, 11, 20, 9)], 9, 0).passed


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_soak_script_reports_growth(tmp_path):
    if shutil.which("mosquitto") is None and not os.path.exists("/usr/sbin/mosquitto"):
        pytest.skip("mosquitto is not installed (scripts/setup.sh installs it)")
    env = {**os.environ, "SOAK_INTERVAL": "1"}
    done = subprocess.run([str(REPO / "scripts" / "soak.sh"), "30s", str(tmp_path)], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=200)
    assert done.returncode in (0, 1), done.stderr  # 1: growth over target, not a crash
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["exit_status"] == 0, (tmp_path / "run.log").read_text()
    assert report["results_published"] >= 1
    assert report["samples"] >= 10 and report["rss_first_minute_mb"] > 50
    assert report["fds_start"] > 0 and report["fds_end"] > 0
    lines = (tmp_path / "samples.csv").read_text().splitlines()
    assert lines[0] == "elapsed_s,rss_kb,fds,threads,results"
