"""Media files and network streams through PyAV: 16 kHz mono audio and BGR frames."""

from __future__ import annotations

import logging
import threading
import time
from functools import partial
from pathlib import Path

import av
import numpy as np

from edge_msa.sources.base import (
    RECONNECTING,
    UP,
    Backoff,
    Emit,
    SourceError,
    StateFn,
    ignore_state,
)
from edge_msa.sources.pacing import Make, Pacer
from edge_msa.sources.resample import ToMono16k
from edge_msa.types import SAMPLE_RATE, AudioChunk, VideoFrame

log = logging.getLogger(__name__)

CHUNK_SAMPLES = 1600  # hand audio on in 100 ms pieces: fewer thread hops
TRUNCATION_SLACK_S = 1.0
LIVE_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "udp://", "tcp://")


class MediaSource:
    """Decodes a file or stream; paces it at wall-clock speed when ``realtime``
    (audio and video each released when due, whatever the file's order: see
    :mod:`edge_msa.sources.pacing`).

    A file played as fast as it decodes keeps its media time. A live stream,
    and a file paced at wall-clock speed, are placed on the run's clock
    (``clock0``, a ``time.monotonic()`` value; by default when ``run`` starts)
    at the moment their first frame arrives.
    """

    def __init__(
        self,
        url: str,
        realtime: bool = False,
        reconnect_max_s: float = 30.0,
        clock0: float | None = None,
    ) -> None:
        self.url = url
        self.name = f"media {url}"
        self.realtime = realtime
        self.live = url.startswith(LIVE_SCHEMES)
        self.reconnect_max_s = reconnect_max_s
        self.clock0 = clock0
        self.has_audio = False
        self.has_video = False
        self._container: av.container.InputContainer | None = None
        self._opened_once = False

    def open(self) -> None:
        if not self.live and not Path(self.url).is_file():
            raise SourceError(f"media file {self.url} not found; check the path given to --media")
        try:
            options = {"rtsp_transport": "tcp"} if self.url.startswith("rtsp") else {}
            # Tags that are not UTF-8 (a corrupt or odd file) must not stop it opening.
            self._container = av.open(
                self.url, options=options, timeout=10.0, metadata_errors="replace"
            )
        except (av.FFmpegError, UnicodeDecodeError) as e:
            hint = "is its server up?" if self.live else "is it a complete audio/video file?"
            raise SourceError(f"cannot read media {self.url}: {_reason(e)}; {hint}") from None
        c = self._container
        if not self._opened_once:
            # Fixed at the first open: the pipeline counts its producers by them,
            # and a stream that comes back with other tracks must not change that.
            self.has_audio = bool(c.streams.audio)
            self.has_video = bool(c.streams.video)
            self._opened_once = True
        if not (c.streams.audio or c.streams.video):
            raise SourceError(f"media {self.url} has neither an audio nor a video stream")

    def run(self, emit: Emit, stop: threading.Event, state: StateFn = ignore_state) -> None:
        """A file plays once; a live stream that fails or ends is reopened with backoff."""
        backoff = Backoff(self.reconnect_max_s)
        clock = _Clock(self.live, self.realtime, self.clock0)

        def emit_up(item: AudioChunk | VideoFrame) -> None:
            if backoff.failures:
                log.info("stream %s: data again", self.url)
                backoff.reset()
                state(UP)
            emit(item)

        while not stop.is_set():
            try:
                if self._container is None:
                    self.open()
                self._decode(emit_up, stop, clock)
                if stop.is_set() or self._ended(clock.position):
                    return
                why = "it ended"
            except av.FFmpegError as e:
                if not self.live:
                    raise SourceError(
                        f"media {self.url} is truncated or corrupt after {clock.position:.1f} s "
                        f"({_reason(e)}); results up to there are kept"
                    ) from None
                why = _reason(e)
            except SourceError as e:
                if not self.live:
                    raise
                why = str(e)
            finally:
                self.close()
            delay = backoff.fail()
            if backoff.failures == 1:
                state(RECONNECTING)
                log.warning("stream %s lost (%s); reconnecting in %.1f s", self.url, why, delay)
            else:
                log.warning("%s; retrying in %.1f s", why, delay)
            stop.wait(delay)

    def _ended(self, t_reached: float) -> bool:
        """True at the real end; raises for a cut file; False for a live stream
        that stopped early (it is reopened).

        A cut file often decodes without error and just stops early: compare
        with the duration its header declares. A live stream declares none.
        """
        assert self._container is not None
        declared = (self._container.duration or 0) / av.time_base
        if self.live:
            return bool(declared) and t_reached >= declared - TRUNCATION_SLACK_S
        if declared and t_reached < declared - TRUNCATION_SLACK_S:
            raise SourceError(
                f"media {self.url} ends at {t_reached:.1f} s but declares {declared:.1f} s: "
                "it is truncated; results up to there are kept"
            )
        return True

    def close(self) -> None:
        if self._container is not None:
            self._container.close()
            self._container = None

    def _decode(self, emit: Emit, stop: threading.Event, clock: _Clock) -> None:
        """Decode until the end of the file or stream, or ``stop``."""
        assert self._container is not None
        c = self._container
        streams = [*c.streams.audio[:1], *c.streams.video[:1]]
        for video in c.streams.video[:1]:
            video.thread_type = "AUTO"  # frame threads: decoding keeps up with audio
        resampler = ToMono16k()
        pending: list[np.ndarray] = []
        pending_n = 0
        audio_t: float | None = None  # stream time of the next audio sample to emit
        clock.connected()
        wall0 = time.monotonic()
        # Paced: audio and video each released when due on the run's clock, not in
        # the file's order (the demo's video comes out about a second after its audio).
        pacer = (
            Pacer(
                [s.type for s in streams], lambda t: wall0 + clock.since_connected(t), emit, stop
            )
            if self.realtime
            else None
        )

        def hand_on(kind: str, t_due: float, make: Make) -> None:
            if pacer is not None:
                pacer.push(kind, t_due, make)
            else:
                emit(make())

        def audio(parts: list[np.ndarray], t: float) -> float:
            chunk = _audio_chunk(parts, t)
            if chunk is None:
                return t
            t_end = t + len(chunk.samples) / SAMPLE_RATE
            hand_on("audio", t_end, lambda: chunk)  # due at its end, as a microphone gives it
            return t_end

        for packet in c.demux(streams):
            if stop.is_set():
                break
            for frame in packet.decode():
                t = clock.time(frame.time or 0.0)
                if isinstance(frame, av.VideoFrame):
                    hand_on("video", t, partial(_bgr_frame, frame, t))
                    continue
                if audio_t is None:
                    audio_t = t
                pending.append(resampler.frame(frame))
                pending_n += len(pending[-1])
                if pending_n >= CHUNK_SAMPLES:
                    audio_t = audio(pending, audio_t)
                    pending, pending_n = [], 0
        if audio_t is not None:
            pending.append(resampler.flush())
            clock.reached(audio(pending, audio_t))
        if pacer is not None:
            pacer.end()


class _Clock:
    """Maps a connection's frame times to source times that never go back.

    A file read as fast as it decodes keeps its own timeline. A live stream
    restarts its timestamps at every reconnection, so each connection is
    placed at the time on the run's clock its first frame arrived (a gap in
    the stream is a gap in time); a paced file is placed once, the same way.
    """

    def __init__(self, live: bool, paced: bool = False, clock0: float | None = None) -> None:
        self.live = live
        self.placed = live or paced  # on the run's clock, from the first frame
        self.clock0 = time.monotonic() if clock0 is None else clock0
        self.t_last = 0.0  # the latest source time handed out
        self._offset: float | None = None if self.placed else 0.0  # source minus frame time
        self._first = 0.0  # source time of this connection's first frame

    def connected(self) -> None:
        if self.live:
            self._offset = None

    @property
    def position(self) -> float:
        """How far into the media it got: the latest frame time (a live stream:
        its source time)."""
        if self.live:
            return self.t_last
        return max(self.t_last - (self._offset or 0.0), 0.0)

    def time(self, frame_t: float) -> float:
        if self._offset is None:
            now = max(time.monotonic() - self.clock0, self.t_last)
            self._offset = now - frame_t
            self._first = now
        t = self._offset + frame_t
        self.t_last = max(self.t_last, t)
        return t

    def since_connected(self, t: float) -> float:
        return t - (self._first if self.placed else 0.0)

    def reached(self, t: float) -> None:
        self.t_last = max(self.t_last, t)


def _audio_chunk(parts: list[np.ndarray], t: float) -> AudioChunk | None:
    samples = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    return AudioChunk(samples, t) if len(samples) else None


def _bgr_frame(frame: av.VideoFrame, t: float) -> VideoFrame:
    # Converted when handed on: a frame waiting for its time keeps the decoder's smaller YUV.
    return VideoFrame(frame.to_ndarray(format="bgr24"), t)


def _reason(e: Exception) -> str:
    text = getattr(e, "strerror", None) or str(e)
    return text.split(":")[0].strip() if text else type(e).__name__
