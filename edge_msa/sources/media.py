"""Media files and network streams through PyAV: 16 kHz mono audio and BGR frames."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import av
import numpy as np

from edge_msa.sources.base import Emit, SourceError
from edge_msa.sources.resample import ToMono16k
from edge_msa.types import SAMPLE_RATE, AudioChunk, VideoFrame

log = logging.getLogger(__name__)

CHUNK_SAMPLES = 1600  # hand audio on in 100 ms pieces: fewer thread hops
TRUNCATION_SLACK_S = 1.0
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class MediaSource:
    """Decodes a file or stream; paces it at wall-clock speed when ``realtime``."""

    def __init__(self, url: str, realtime: bool = False, reconnect_max_s: float = 30.0) -> None:
        self.url = url
        self.name = f"media {url}"
        self.realtime = realtime
        self.live = url.startswith(LIVE_SCHEMES)
        self.reconnect_max_s = reconnect_max_s
        self.has_audio = False
        self.has_video = False
        self._container: av.container.InputContainer | None = None

    def open(self) -> None:
        if not self.live and not Path(self.url).is_file():
            raise SourceError(f"media file {self.url} not found; check the path given to --media")
        try:
            options = {"rtsp_transport": "tcp"} if self.url.startswith("rtsp") else {}
            self._container = av.open(self.url, options=options, timeout=10.0)
        except av.FFmpegError as e:
            raise SourceError(
                f"cannot read media {self.url}: {_reason(e)}; is it a complete audio/video file?"
            ) from None
        c = self._container
        self.has_audio = bool(c.streams.audio)
        self.has_video = bool(c.streams.video)
        if not (self.has_audio or self.has_video):
            raise SourceError(f"media {self.url} has neither an audio nor a video stream")

    def run(self, emit: Emit, stop: threading.Event) -> None:
        delay = 1.0
        t_offset = 0.0
        while not stop.is_set():
            if self._container is None:
                self.open()
            try:
                t_offset = self._decode(emit, stop, t_offset)
                if not stop.is_set():
                    self._check_complete(t_offset)
                return
            except av.FFmpegError as e:
                if not self.live:
                    raise SourceError(
                        f"media {self.url} is truncated or corrupt after {t_offset:.1f} s "
                        f"({_reason(e)}); results up to there are kept"
                    ) from None
                log.warning("stream %s failed (%s); reconnecting in %.0f s", self.url, e, delay)
            finally:
                self.close()
            if stop.wait(delay):
                return
            delay = min(delay * 2, self.reconnect_max_s)

    def _check_complete(self, t_reached: float) -> None:
        """A cut file often decodes without error and just stops early:
        compare with the duration its header declares."""
        assert self._container is not None
        declared = (self._container.duration or 0) / av.time_base
        if not self.live and declared and t_reached < declared - TRUNCATION_SLACK_S:
            raise SourceError(
                f"media {self.url} ends at {t_reached:.1f} s but declares {declared:.1f} s: "
                "it is truncated; results up to there are kept"
            )

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _decode(self, emit: Emit, stop: threading.Event, t_offset: float) -> float:
        """Decode until the end; returns the last stream time reached."""
        assert self._container is not None
        c = self._container
        streams = [*c.streams.audio[:1], *c.streams.video[:1]]
        for video in c.streams.video[:1]:
            video.thread_type = "AUTO"  # frame threads: decoding keeps up with audio
        resampler = ToMono16k()
        pending: list[np.ndarray] = []
        pending_n = 0
        audio_t: float | None = None  # stream time of the next audio sample to emit
        wall0 = time.monotonic()
        t_last = t_offset
        for packet in c.demux(streams):
            if stop.is_set():
                break
            for frame in packet.decode():
                t = t_offset + (frame.time or 0.0)
                if self.realtime:
                    _sleep_until(wall0 + t - t_offset, stop)
                t_last = max(t_last, t)
                if isinstance(frame, av.VideoFrame):
                    emit(VideoFrame(frame.to_ndarray(format="bgr24"), t))
                    continue
                if audio_t is None:
                    audio_t = t
                pending.append(resampler.frame(frame))
                pending_n += len(pending[-1])
                if pending_n >= CHUNK_SAMPLES:
                    audio_t = _emit_audio(emit, pending, audio_t)
                    pending, pending_n = [], 0
        if audio_t is not None:
            pending.append(resampler.flush())
            audio_t = _emit_audio(emit, pending, audio_t)
            t_last = max(t_last, audio_t)
        return t_last


def _emit_audio(emit: Emit, parts: list[np.ndarray], t: float) -> float:
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if len(samples):
        emit(AudioChunk(samples, t))
    return t + len(samples) / SAMPLE_RATE


def _sleep_until(deadline: float, stop: threading.Event) -> None:
    delay = deadline - time.monotonic()
    if delay > 0:
        stop.wait(delay)


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.split(":")[0].strip() if text else type(e).__name__
