"""The state directory: writable, and with room for the outbox to grow."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from edge_msa.config import Config
from edge_msa.doctor.report import Check

LOW_SPACE_MB = 200  # a result is ~1 kB; this is days of broker outage


def check_state_dir(cfg: Config) -> list[Check]:
    path = Path(cfg.runtime.state_dir).expanduser()
    needed = "mqtt" in cfg.output.sinks  # the outbox lives there
    fail = "FAIL" if needed else "warn"
    existing = path
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK):
        return [
            Check(
                fail,
                "state dir",
                f"{path} is not writable (nearest existing: {existing})",
                "pass --state-dir DIR on a writable disk or fix its permissions",
            )
        ]
    if existing.exists() and not existing.is_dir():
        return [
            Check(fail, "state dir", f"{existing} is a file, not a folder", "pass --state-dir DIR")
        ]
    free_mb = shutil.disk_usage(existing).free / 1e6
    outbox = path / "outbox.sqlite"
    extra = f"; outbox {outbox.stat().st_size / 1e3:.0f} kB" if outbox.is_file() else ""
    detail = f"{path}: {free_mb:,.0f} MB free{extra}"
    if free_mb < LOW_SPACE_MB:
        return [
            Check(
                "warn",
                "state dir",
                detail + f" (below {LOW_SPACE_MB} MB)",
                "free disk space or move --state-dir to a larger disk",
            )
        ]
    return [Check("ok", "state dir", detail)]
