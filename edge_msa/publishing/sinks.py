"""Local sinks: JSON lines on stdout (nothing else goes there) or in a file."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TextIO


class JsonlSink:
    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stdout

    def write(self, payload: dict[str, object]) -> None:
        self.stream.write(json.dumps(payload) + "\n")
        self.stream.flush()

    def close(self) -> None:
        self.stream.flush()


class JsonlFileSink(JsonlSink):
    def __init__(self, path: Path) -> None:
        path = Path(path).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(open(path, "a", encoding="utf-8"))  # noqa: SIM115 (closed in close())

    def close(self) -> None:
        self.stream.close()
