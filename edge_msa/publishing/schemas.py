"""JSON Schemas of every topic a device publishes, for consumers (and `edge-msa schema`).

The sentiment schema lives beside the code that builds the message
(``result.py``); availability and status are here. ``docs/schemas/`` holds
copies that a test keeps equal to these.
"""

from __future__ import annotations

from edge_msa.publishing.result import RESULT_SCHEMA

AVAILABILITY_SCHEMA: dict[str, object] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://edge-msa.invalid/schema/availability.json",
    "title": "edge-msa availability",
    "description": "Retained on <prefix>/<device_id>/availability; 'offline' is also the MQTT "
    "last will, so it appears when the device dies without saying goodbye. A plain string, "
    "not JSON-quoted.",
    "type": "string",
    "enum": ["online", "offline"],
}

STATUS_SCHEMA: dict[str, object] = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "https://edge-msa.invalid/schema/status.json",
    "title": "edge-msa status",
    "description": "Retained health summary on <prefix>/<device_id>/status, sent at connect, "
    "after each delivered batch, when a source's or the listen state changes and at the end. "
    "`edge-msa outbox flush` sends only state (stopped) and outbox_pending, once at its end.",
    "type": "object",
    "required": ["state", "outbox_pending"],
    "properties": {
        "state": {"type": "string", "enum": ["running", "stopped"]},
        "outbox_pending": {
            "type": "integer",
            "minimum": 0,
            "description": "results waiting for the broker",
        },
        "outbox_problem": {
            "type": "string",
            "description": "only while the outbox file cannot be used: why (read-only, full); "
            "results then wait in memory",
        },
        "outbox_memory": {
            "type": "integer",
            "minimum": 0,
            "description": "only with outbox_problem: results held in memory, lost if the "
            "process stops before the broker takes them",
        },
        "listen": {
            "type": "string",
            "enum": ["ON", "OFF"],
            "description": "OFF: muted (--listen off, or OFF on <prefix>/<device_id>/listen/set); "
            "audio and frames are dropped unanalysed until ON",
        },
        "version": {"type": "string"},
        "device_id": {"type": "string"},
        "started": {"type": "number", "description": "start time, seconds since the epoch"},
        "sources": {
            "type": "object",
            "description": "each source's state by name; reconnecting: its device or stream "
            "was lost and is being reopened with backoff",
            "additionalProperties": {
                "type": "string",
                "enum": ["starting", "up", "reconnecting", "ended", "error"],
            },
        },
        "results": {"type": "integer", "minimum": 0, "description": "results computed so far"},
        "frames": {"type": "integer", "minimum": 0, "description": "video frames read"},
        "frames_analysed": {"type": "integer", "minimum": 0},
        "frames_dropped": {
            "type": "integer",
            "minimum": 0,
            "description": "live frames replaced by newer ones while the face stage was busy",
        },
        "transcribe": {"type": "boolean", "description": "speech recognition on"},
    },
}

SCHEMAS: dict[str, dict[str, object]] = {
    "sentiment": RESULT_SCHEMA,
    "availability": AVAILABILITY_SCHEMA,
    "status": STATUS_SCHEMA,
}
