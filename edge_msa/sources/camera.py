"""A camera (index, /dev/video path or stream URL) through OpenCV; reconnects with backoff."""

from __future__ import annotations

import glob
import logging
import os
import threading
import time

from edge_msa.sources.base import (
    RECONNECTING,
    UP,
    Backoff,
    Emit,
    SourceError,
    StateFn,
    ignore_state,
)
from edge_msa.types import VideoFrame

log = logging.getLogger(__name__)

STREAM_TIMEOUT_S = 10.0  # for camera URLs: open and read, as for --media streams


class CameraSource:
    has_audio = False
    has_video = True

    def __init__(
        self,
        device: int | str,
        width: int = 640,
        height: int = 480,
        fps: float = 15.0,
        reconnect_max_s: float = 30.0,
        clock0: float | None = None,
    ) -> None:
        self.device = _parse_device(device)
        self.name = f"camera {device}"
        self.size = (width, height)
        self.fps = fps
        self.reconnect_max_s = reconnect_max_s
        self.clock0 = time.monotonic() if clock0 is None else clock0
        self._cap = None

    def open(self) -> None:
        # OpenCV and its FFmpeg print their own warnings for a missing device or a
        # refused stream, at every retry; we say it once, below.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        import cv2

        if _is_url(self.device):
            # OpenCV waits 30 s by default on a stream that accepts and says nothing;
            # a stop request would wait as long.
            ms = int(STREAM_TIMEOUT_S * 1000)
            timeouts = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms]
            cap = cv2.VideoCapture(self.device, cv2.CAP_FFMPEG, timeouts)
        else:
            cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
            if _is_url(self.device):
                raise SourceError(
                    f"camera stream {self.device} could not be opened; check the URL and "
                    "that the camera is reachable"
                )
            found = ", ".join(sorted(glob.glob("/dev/video*"))) or "none"
            raise SourceError(
                f"camera {self.device!r} could not be opened (video devices here: {found}); "
                "pass an existing index or path to --camera"
            )
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, self.size[0])
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, self.size[1])
        cap.set(cv2.CAP_PROP_FPS, self.fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # newest frame wins: no stale queue in the driver
        self._cap = cap

    def run(self, emit: Emit, stop: threading.Event, state: StateFn = ignore_state) -> None:
        backoff = Backoff(self.reconnect_max_s)
        try:
            while not stop.is_set():
                if self._cap is None and not self._reopen(backoff, stop, state):
                    continue
                ok, image = self._cap.read()
                if ok:
                    if backoff.failures:
                        log.info("%s: frames again", self.name)
                        backoff.reset()
                        state(UP)
                    emit(VideoFrame(image, time.monotonic() - self.clock0))
                    continue
                # Unplugged, a stream that stopped, a driver error: all read as a failed read.
                delay = backoff.fail()
                if backoff.failures == 1:
                    state(RECONNECTING)
                log.warning("%s: read failed; reconnecting in %.1f s", self.name, delay)
                self.close()
                stop.wait(delay)
        finally:
            self.close()

    def _reopen(self, backoff: Backoff, stop: threading.Event, state: StateFn) -> bool:
        try:
            self.open()
            log.info("%s: opened", self.name)
            return True
        except SourceError as e:
            delay = backoff.fail()
            if backoff.failures == 1:
                state(RECONNECTING)
            log.warning("%s; retrying in %.1f s", e, delay)
            stop.wait(delay)
            return False

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _is_url(device: int | str) -> bool:
    return isinstance(device, str) and "://" in device


def _parse_device(device: int | str) -> int | str:
    if isinstance(device, str) and device.isdigit():
        return int(device)
    return device
