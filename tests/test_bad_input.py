"""Bad input gets one clear line, no traceback, and keeps what was computed."""

from __future__ import annotations

import json

from tests.conftest import cli
from tests.media_util import faststart_copy, video_only

FAST = ("--no-transcribe", "--output", "jsonl")


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if " ERROR " in line]


def test_corrupt_media_is_one_line(tmp_path):
    bad = tmp_path / "noise.mp4"
    bad.write_bytes(bytes(range(256)) * 40)
    res = cli("run", "--media", str(bad), *FAST, "--state-dir", str(tmp_path))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    (line,) = error_lines(res.stderr)
    assert "cannot read media" in line and str(bad) in line
    assert res.stdout == ""


def test_truncated_media_keeps_results_and_exits_nonzero(tmp_path):
    whole = faststart_copy(tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    res = cli("run", "--media", str(cut), *FAST, "--state-dir", str(tmp_path))
    assert res.returncode == 1
    assert "Traceback" not in res.stderr
    (line,) = error_lines(res.stderr)
    assert "truncated" in line
    results = [json.loads(x) for x in res.stdout.splitlines()]
    # The first two demo sentences lie wholly in the first half of the file.
    assert len(results) >= 2


def test_missing_camera_is_one_line(tmp_path):
    res = cli("run", "--camera", "57", "--state-dir", str(tmp_path), "--output", "jsonl")
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and "camera 57 could not be opened" in lines[0]


def test_missing_file_is_one_line(tmp_path):
    res = cli("run", "--media", str(tmp_path / "nope.mp4"), "--output", "jsonl")
    assert res.returncode == 2
    assert "not found" in res.stderr and len(res.stderr.strip().splitlines()) == 1


def test_video_without_audio_runs_with_audio_and_text_absent(tmp_path):
    clip = video_only(tmp_path / "silent.mp4")
    res = cli("run", "--media", str(clip), "--output", "jsonl", "--state-dir", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "text and audio are absent" in res.stderr
    assert res.stdout == ""
