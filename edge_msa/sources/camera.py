"""A camera through OpenCV, read in its own thread; reconnects with backoff."""

from __future__ import annotations

import glob
import logging
import os
import threading
import time

from edge_msa.sources.base import Emit, SourceError
from edge_msa.types import VideoFrame

log = logging.getLogger(__name__)


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
        # OpenCV prints its own warnings for a missing device; we say it once, below.
        os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
        import cv2

        cap = cv2.VideoCapture(self.device)
        if not cap.isOpened():
            cap.release()
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

    def run(self, emit: Emit, stop: threading.Event) -> None:
        delay = 1.0
        while not stop.is_set():
            if self._cap is None and not self._reopen(delay, stop):
                delay = min(delay * 2, self.reconnect_max_s)
                continue
            ok, image = self._cap.read()
            if ok:
                delay = 1.0
                emit(VideoFrame(image, time.monotonic() - self.clock0))
                continue
            log.warning("%s: read failed; reconnecting", self.name)
            self.close()
        self.close()

    def _reopen(self, delay: float, stop: threading.Event) -> bool:
        try:
            self.open()
            log.info("%s: opened", self.name)
            return True
        except SourceError as e:
            log.warning("%s; retrying in %.0f s", e, delay)
            stop.wait(delay)
            return False

    def close(self) -> None:
        if self._cap is not None:
            self._cap.release()
            self._cap = None


def _parse_device(device: int | str) -> int | str:
    if isinstance(device, str) and device.isdigit():
        return int(device)
    return device
