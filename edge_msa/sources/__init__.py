"""Sources: camera, microphone, media files and streams, the demo clip."""

from __future__ import annotations

from pathlib import Path

from edge_msa.sources.base import Emit, Source, SourceError
from edge_msa.sources.clock import StreamClock

DEMO_CLIP = Path(__file__).resolve().parents[1] / "assets" / "demo.mp4"

__all__ = ["DEMO_CLIP", "Emit", "Source", "SourceError", "StreamClock", "build_sources"]


def build_sources(cfg, clock: StreamClock | None = None) -> list[Source]:
    """The sources a SourceConfig asks for, not yet opened, all on ``clock``
    (the run's anchor; a new one when not given)."""
    from edge_msa.sources.media import MediaSource

    clock0 = (clock or StreamClock.start()).mono0
    if cfg.demo:
        return [MediaSource(str(DEMO_CLIP), cfg.realtime, cfg.reconnect_max_s, clock0)]
    if cfg.media:
        return [MediaSource(cfg.media, cfg.realtime, cfg.reconnect_max_s, clock0)]
    sources: list[Source] = []
    if cfg.camera is not None:
        from edge_msa.sources.camera import CameraSource

        sources.append(
            CameraSource(cfg.camera, cfg.width, cfg.height, cfg.fps, cfg.reconnect_max_s, clock0)
        )
    if cfg.microphone is not None or (cfg.camera is not None and cfg.use_microphone):
        from edge_msa.sources.microphone import MicrophoneSource

        sources.append(MicrophoneSource(cfg.microphone, clock0, cfg.reconnect_max_s))
    if not sources:
        raise SourceError("no input: pass --camera N, --microphone DEV, --media PATH or --demo")
    return sources

