"""The microphone through sounddevice (PortAudio): 16 kHz mono float32.

PortAudio's callback must never block, so it only copies the block into a
thread-safe queue; the source's own thread resamples and hands it on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time

import numpy as np

from edge_msa.sources.base import Emit, SourceError
from edge_msa.sources.resample import ToMono16k
from edge_msa.types import SAMPLE_RATE, AudioChunk

log = logging.getLogger(__name__)


class MicrophoneSource:
    has_audio = True
    has_video = False

    def __init__(self, device: int | str | None = None, clock0: float | None = None) -> None:
        self.device = int(device) if isinstance(device, str) and device.isdigit() else device
        self.name = f"microphone {'default' if device is None else device}"
        self.clock0 = time.monotonic() if clock0 is None else clock0
        self.rate = SAMPLE_RATE
        self._blocks: queue.Queue[tuple[np.ndarray, float]] = queue.Queue()
        self._stream = None

    def open(self) -> None:
        try:
            import sounddevice as sd
        except OSError as e:  # PortAudio library missing
            raise SourceError(f"no audio input: {e}; install libportaudio2") from None
        try:
            info = sd.query_devices(self.device, kind="input")
            self.rate = _pick_rate(sd, self.device, int(info["default_samplerate"]))
            self._stream = sd.InputStream(
                device=self.device,
                samplerate=self.rate,
                channels=1,
                dtype="float32",
                blocksize=self.rate // 20,
                callback=self._callback,
            )
        except (ValueError, sd.PortAudioError) as e:
            raise SourceError(
                f"{self.name} could not be opened ({e}); list inputs with "
                "`python -m sounddevice` and pass an index or name to --microphone"
            ) from None

    def _callback(self, data: np.ndarray, frames: int, t, status) -> None:
        if status:
            log.debug("%s: %s", self.name, status)
        # The time of the block's first sample on our clock.
        now = time.monotonic() - self.clock0 - frames / self.rate
        self._blocks.put_nowait((data.copy(), now))

    def run(self, emit: Emit, stop: threading.Event) -> None:
        assert self._stream is not None, "open() first"
        resampler = ToMono16k() if self.rate != SAMPLE_RATE else None
        self._stream.start()
        try:
            while not stop.is_set():
                try:
                    block, t = self._blocks.get(timeout=0.2)
                except queue.Empty:
                    continue
                samples = block[:, 0] if resampler is None else resampler.array(block, self.rate)
                emit(AudioChunk(samples, t))
        finally:
            self._stream.stop()
            self._stream.close()


def _pick_rate(sd, device, default_rate: int) -> int:
    """16 kHz when the device takes it, else its default (we resample)."""
    try:
        sd.check_input_settings(device=device, samplerate=SAMPLE_RATE, channels=1)
        return SAMPLE_RATE
    except Exception:
        return default_rate
