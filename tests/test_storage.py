"""The outbox file unwritable, full or corrupt: one clear line, the run goes
on, and every result is delivered or named in the log."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import subprocess
from pathlib import Path

import pytest

from edge_msa.publishing.outbox import Outbox
from edge_msa.sources import DEMO_CLIP
from tests.conftest import cli
from tests.test_broker_faults import DurableSubscriber, Output, assert_all_in_order, run_cli

DEMO = json.loads(DEMO_CLIP.with_suffix(".json").read_text())["sentences"]
ROOT = os.geteuid() == 0


@contextlib.contextmanager
def small_disk(path: Path, size: str):
    """A tmpfs of ``size`` on ``path`` (needs root)."""
    if not ROOT:
        pytest.skip("mounting a small tmpfs needs root")
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


@contextlib.contextmanager
def read_only(path: Path):
    """``path`` made read-only: a read-only bind mount as root (root ignores modes)."""
    path.mkdir(parents=True, exist_ok=True)
    if ROOT:
        subprocess.run(["mount", "--bind", str(path), str(path)], check=True)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(path)], check=True)
    else:
        path.chmod(0o500)
    try:
        yield path
    finally:
        if ROOT:
            subprocess.run(["umount", "-l", str(path)], check=True)
        else:
            path.chmod(0o700)


def fill(path: Path) -> Path:
    """Write a file until the disk is full."""
    filler = path / "filler"
    with contextlib.suppress(OSError), open(filler, "wb", buffering=0) as f:
        while True:
            f.write(b"\0" * 4096)
    return filler


def errors(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


# -- the outbox itself ----------------------------------------------------------


def test_corrupt_file_is_moved_aside_and_a_fresh_one_started(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    box.add("a", "{}")
    box.close()
    garbage = b"this is not sqlite" * 64
    path.write_bytes(garbage)
    for extra in ("-wal", "-shm"):
        Path(f"{path}{extra}").unlink(missing_ok=True)
    with caplog.at_level(logging.INFO):
        box = Outbox(path)
    (msg,) = errors(caplog)
    assert "was corrupt (file is not a database)" in msg and "\n" not in msg
    (aside,) = tmp_path.glob("outbox.sqlite.corrupt-*")
    assert aside.read_bytes() == garbage and aside.name in msg
    assert box.problem is None
    box.add("b", "{}")
    assert [p.id for p in box.pending()] == ["b"] and box.in_memory == 0


def test_corrupt_page_keeps_the_rows_it_can_read(tmp_path, caplog):
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path)
    ids = [f"r{i:03d}" for i in range(200)]
    for rid in ids:
        box.add(rid, json.dumps({"pad": "x" * 500}))
    box.close()
    data = bytearray(path.read_bytes())
    middle = len(data) // 2 // 4096 * 4096
    data[middle : middle + 4096] = os.urandom(4096)
    path.write_bytes(bytes(data))
    with caplog.at_level(logging.INFO):
        box = Outbox(path)
    (msg,) = errors(caplog)
    assert "was corrupt (database disk image is malformed" in msg
    got = [p.id for p in box.pending(1000)]
    # What could be read back, in order, and now in the fresh file.
    assert 0 < len(got) < len(ids) and got == ids[: len(got)], got
    assert f"with the {len(got)} pending result(s)" in msg
    box.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA quick_check").fetchone()[0] == "ok"
    assert db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0] == len(got)


def test_full_disk_keeps_results_in_memory_in_order_until_space_returns(tmp_path, caplog):
    with small_disk(tmp_path / "disk", "256k") as disk:
        box = Outbox(disk / "outbox.sqlite")
        box.add("r00", "{}")
        filler = fill(disk)
        with caplog.at_level(logging.INFO):
            for i in range(1, 40):
                box.add(f"r{i:02d}", json.dumps({"pad": "x" * 800}))
        expected = [f"r{i:02d}" for i in range(40)]
        (msg,) = errors(caplog)  # one line when it starts, not one per result
        assert "cannot be written (database or disk is full)" in msg and "wait in memory" in msg
        assert box.count() == 40 and box.in_memory == 39
        assert [p.id for p in box.pending(1000)] == expected
        # The broker takes two; r00's row cannot be deleted on a full disk, yet it
        # is not offered again.
        for p in box.pending(2):
            box.remove(p.seq)
        assert [p.id for p in box.pending(1000)] == expected[2:] and box.count() == 38
        filler.unlink()
        with caplog.at_level(logging.INFO):
            box.add("r40", "{}")
        assert "can be written again: 39 result(s) moved into it" in caplog.records[-1].getMessage()
        assert box.in_memory == 0 and box.problem is None
        box.close()
        assert [p.id for p in Outbox(disk / "outbox.sqlite").pending(1000)] == [
            *expected[2:], "r40"
        ]


def test_memory_is_bounded_and_each_dropped_result_is_named(tmp_path, caplog):
    with read_only(tmp_path / "state") as state, caplog.at_level(logging.INFO):
        box = Outbox(state / "outbox.sqlite", memory_max=3)
        for i in range(5):
            box.add(f"r{i}", "{}")
    first, *dropped = errors(caplog)
    assert "cannot be opened" in first
    assert [m.rsplit("result ", 1)[1] for m in dropped] == ["r0 dropped", "r1 dropped"]
    assert box.dropped == 2 and [p.id for p in box.pending()] == ["r2", "r3", "r4"]


# -- the real CLI ---------------------------------------------------------------


def demo_run(port: int, state: Path, device: str, *extra: str, flush: str = "10"):
    args = ["run", "--demo", "--no-transcribe", "--mqtt-port", str(port), "--state-dir",
            str(state), "--device-id", device, "--output", "jsonl", "--output", "mqtt", *extra]
    return cli(*args, env={"EDGE_MSA_RUNTIME__FLUSH_TIMEOUT_S": flush})


def test_run_with_a_corrupt_outbox_delivers_everything(broker, subscribe, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite").write_bytes(os.urandom(8192))
    sub = subscribe(broker.port, "edge-msa/corrupt/sentiment")
    res = demo_run(broker.port, state, "corrupt")
    assert res.returncode == 0, res.stderr
    computed = [json.loads(x)["id"] for x in res.stdout.splitlines()]
    assert len(computed) >= len(DEMO)
    assert sub.wait_for(lambda: len(sub.results()) == len(computed), 10)
    assert [r["id"] for r in sub.results()] == computed
    lines = [x for x in res.stderr.splitlines() if " ERROR " in x]
    assert len(lines) == 1 and "was corrupt" in lines[0], res.stderr
    assert "Traceback" not in res.stderr
    assert len(list(state.glob("outbox.sqlite.corrupt-*"))) == 1


def test_run_with_a_read_only_state_dir_delivers_from_memory(broker, subscribe, tmp_path):
    sub = subscribe(broker.port, "edge-msa/ro/#")
    with read_only(tmp_path / "state") as state:
        res = demo_run(broker.port, state, "ro")
    # Not exit 2: a service restarting on it would loop; the run goes on instead.
    assert res.returncode == 0, res.stderr
    computed = [json.loads(x)["id"] for x in res.stdout.splitlines()]
    assert len(computed) >= len(DEMO)
    assert sub.wait_for(lambda: len(sub.results()) == len(computed), 10)
    assert [r["id"] for r in sub.results()] == computed
    lines = [x for x in res.stderr.splitlines() if " ERROR " in x]
    assert len(lines) == 1 and "results wait in memory" in lines[0], res.stderr
    # The retained status says why.
    status = [json.loads(p) for p, _ in sub.on("/status")]
    assert any("outbox_problem" in s for s in status)


def test_results_neither_delivered_nor_stored_are_named(stopped_broker, tmp_path):
    with read_only(tmp_path / "state") as state:
        res = demo_run(stopped_broker.port, state, "lost", flush="0")
    assert res.returncode == 0, res.stderr
    computed = [json.loads(x)["id"] for x in res.stdout.splitlines()]
    (last,) = [x for x in res.stderr.splitlines() if "neither delivered nor stored" in x]
    assert f"{len(computed)} result(s)" in last and "(the local sinks have them)" in last
    assert last.split(": ")[-1].split() == computed


def test_disk_fills_up_mid_run_while_the_broker_is_down(tmp_path):
    """Result 1 is in the file; the disk fills; 2-5 wait in memory; the broker
    comes up during the final flush: all five arrive, in order."""
    from tests.test_broker_faults import durable_broker

    b = durable_broker(tmp_path)
    b.start()
    sub = DurableSubscriber(b.port, "edge-msa/full/sentiment")
    b.stop()
    rc = None
    with small_disk(tmp_path / "state", "1m") as disk:
        proc = run_cli(b.port, tmp_path, "full", "--no-transcribe", flush_s="20")
        try:
            out = Output(proc)
            assert out.wait_for(1, 120), out.stderr
            fill(disk)
            assert out.wait_for(len(DEMO), 120), out.stderr
            b.start()
            rc = out.finish(60)
        finally:
            proc.kill()
    try:
        assert rc == 0, out.stderr
        assert sub.wait_for(len(out.ids()), 20), (sub.received(), out.stderr)
        assert_all_in_order(sub.received(), out.ids())
        errs = [x for x in out.stderr.splitlines() if " ERROR " in x]
        assert len(errs) == 1 and "database or disk is full" in errs[0], out.stderr
    finally:
        sub.close()
        b.stop()


def test_health_names_an_outbox_that_cannot_be_written(tmp_path):
    """/healthz's body (what the metrics server returns) says when results only
    wait in memory, so an operator sees it before a restart loses them."""
    from edge_msa.config import load_config
    from edge_msa.runtime.metrics import Metrics
    from edge_msa.runtime.pipeline import Pipeline

    cfg = load_config(None, {}, environ={})
    with read_only(tmp_path / "state") as state:
        outbox = Outbox(state / "outbox.sqlite")
        pipeline = Pipeline(cfg, [], None, None, outbox, [], "test")
        metrics = Metrics(cfg)
        metrics.pipeline = pipeline
        metrics.sample()
        outbox.close()
    healthy, body = metrics.health
    assert healthy is False and body["outbox_problem"]
    assert any(r.startswith("outbox: ") for r in body["reasons"])
