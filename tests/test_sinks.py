"""Local sinks that fail for real: a full file system (a real tmpfs, mounted
here) under ``--output-file``, and a stdout whose reader went away
(``| head -c 100``). Neither costs the other outputs a result, neither
prints a traceback."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from edge_msa.publishing.sinks import JsonlFileSink, SinkWriter
from tests.conftest import REPO, cli

pytestmark = pytest.mark.timeout(240)

OLD_LINES = 5  # results of an earlier run already in the file


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 64 KiB tmpfs; unmounted afterwards."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN): "
                    f"{res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def fill(disk: Path) -> Path:
    """Take every free block of ``disk``; returns the filler file."""
    filler = disk / "filler"
    with open(filler, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError:
            pass
        try:
            while True:
                f.write(b"\0")
        except OSError:
            pass
    return filler


def earlier_results(path: Path) -> bytes:
    """A file that already holds results, ending part-way into its last block,
    so that the next result crosses into a block the disk does not have: the
    write is cut short, then fails."""
    line = json.dumps({"id": "old", "pad": "x" * 600}) + "\n"
    data = (line * OLD_LINES).encode()
    assert 3000 < len(data) < 4096
    path.write_bytes(data)
    return data


def test_full_disk_under_output_file(small_disk, broker, subscribe, tmp_path):
    sub = subscribe(broker.port, "edge-msa/full/sentiment")
    out = small_disk / "results.jsonl"
    before = earlier_results(out)
    fill(small_disk)
    res = cli("run", "--demo", "--no-transcribe", "--output", "jsonl", "--output", "mqtt",
              "--output-file", str(out), "--mqtt-port", str(broker.port),
              "--state-dir", str(tmp_path), "--device-id", "full")
    assert "Traceback" not in res.stderr, res.stderr
    results = [json.loads(line) for line in res.stdout.splitlines()]
    assert len(results) == 5, res.stderr
    assert sub.wait_for(lambda: len(sub.results()) == 5, 10)
    assert [r["id"] for r in sub.results()] == [r["id"] for r in results]
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1, res.stderr
    assert f"cannot write to {out} (No space left on device)" in errors[0]
    # What fitted into the file's last block went in, whole lines only: the
    # write cut short at the block's end was cut off the file again.
    data = out.read_bytes()
    assert data.startswith(before) and data.endswith(b"\n")
    written = [json.loads(line)["id"] for line in data[len(before):].splitlines()]
    assert len(written) < 5 and written == [r["id"] for r in results[: len(written)]]
    assert f"{5 - len(written)} result(s) were not written to {out}" in res.stderr
    assert res.returncode == 1  # an output asked for lost results


def test_a_file_sink_catches_up_once_the_disk_has_room(small_disk, caplog):
    caplog.set_level(logging.INFO, "edge_msa")
    out = small_disk / "results.jsonl"
    before = earlier_results(out)
    filler = fill(small_disk)
    writer = SinkWriter(JsonlFileSink(out))
    payloads = [{"id": f"new-{i}", "pad": "y" * 600} for i in range(8)]
    for p in payloads[:4]:
        writer.write(p)
    deadline = time.monotonic() + 10
    while "cannot write" not in caplog.text and time.monotonic() < deadline:
        time.sleep(0.05)
    for p in payloads[4:]:  # more results while it fails: held, in order
        writer.write(p)
    time.sleep(0.3)
    assert out.read_bytes() == before
    filler.unlink()
    deadline = time.monotonic() + 10  # the retries: 0.5 s, then 1 s, 2 s, ...
    while out.stat().st_size == len(before) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert writer.close(5) == 0
    lines = out.read_text().splitlines()
    assert [json.loads(x)["id"] for x in lines[OLD_LINES:]] == [p["id"] for p in payloads]
    errors = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(errors) == 1 and "No space left on device" in errors[0].getMessage()
    assert f"{out} takes results again (8 written)" in caplog.text


def test_closed_stdout_ends_the_run_with_exit_1(tmp_path):
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "edge_msa", "run", "--demo", "--no-transcribe",
         "--output", "jsonl", "--state-dir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO, env=env,
    )
    head = subprocess.Popen(["head", "-c", "100"], stdin=run.stdout, stdout=subprocess.PIPE)
    assert run.stdout is not None
    run.stdout.close()  # head alone reads it: when head ends, the pipe is closed
    try:
        got, _ = head.communicate(timeout=120)
        _, stderr_b = run.communicate(timeout=120)
    finally:
        run.kill()
        head.kill()
    stderr = stderr_b.decode()
    assert len(got) == 100 and got.startswith(b'{"id": ')
    assert run.returncode == 1, stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "stdout was closed" in errors[0], stderr


def test_an_output_file_that_cannot_be_opened_is_one_line(tmp_path):
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("")
    res = cli("run", "--demo", "--no-transcribe", "--output", "jsonl",
              "--output-file", str(blocked / "results.jsonl"), "--state-dir", str(tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and "--output-file" in errors[0], res.stderr
