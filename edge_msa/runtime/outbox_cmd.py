"""`edge-msa outbox status|flush`."""

from __future__ import annotations

import json
import time

from edge_msa.config import Config
from edge_msa.publishing.mqtt import MqttPublisher
from edge_msa.publishing.outbox import OutboxError
from edge_msa.runtime.app import open_outbox


async def outbox_command(cfg: Config, action: str, timeout: float) -> int:
    try:
        outbox = open_outbox(cfg)
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
        publisher = MqttPublisher(cfg.mqtt, cfg.device_id, outbox)
        before = outbox.count()
        publisher.start()
        left = await publisher.stop(timeout)
        print(json.dumps({"delivered": before - left, "pending": left}))
        return 0 if left == 0 else 1
    finally:
        outbox.close()
