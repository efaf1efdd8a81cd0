"""`edge-msa outbox status|flush`.

``flush`` delivers only when no running service holds the outbox (its
``outbox.lock``): a service delivers by itself, so the command says so in one
line and leaves the results to it. Otherwise it holds the lock while it
flushes, connects with its own client id (the broker would drop a service's
session for a second connection with the service's id) and publishes no
availability: the device is not running.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from edge_msa.config import Config
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import Outbox, OutboxBusy, OutboxError
from edge_msa.publishing.outbox_lock import FLUSH


def outbox_path(cfg: Config) -> Path:
    return Path(cfg.runtime.state_dir).expanduser() / "outbox.sqlite"


async def outbox_command(cfg: Config, action: str, timeout: float) -> int:
    try:
        # A flush never waits for another flush: one is enough.
        outbox = Outbox(outbox_path(cfg), lock=FLUSH if action == "flush" else None,
                        flush_wait_s=0)
    except OutboxBusy as e:
        print(f"edge-msa: {e.holder.describe()} holds the outbox {outbox_path(cfg)} and "
              "delivers its results itself; nothing to do")
        return 0
    except OutboxError as e:
        print(f"edge-msa: {e}")
        return 2
    try:
        if action == "status":
            oldest = outbox.oldest_created()
            print(json.dumps({
                "path": str(outbox.path),
                "pending": outbox.count(),
                "oldest_age_s": None if oldest is None else round(time.time() - oldest, 1),
                "problem": outbox.problem,
            }))
            return 0
        publisher = MqttPublisher(cfg.mqtt, cfg.device_id, outbox, flush=True)
        before = await outbox.call(outbox.count)
        publisher.start()
        left = await publisher.stop(timeout)
        print(json.dumps({"delivered": before - left, "pending": left}))
        return 0 if left == 0 else 1
    finally:
        outbox.close()
