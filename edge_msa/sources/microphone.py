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

from edge_msa.sources.base import (
    RECONNECTING,
    UP,
    Backoff,
    Emit,
    SourceError,
    StateFn,
    ignore_state,
)
from edge_msa.sources.resample import ToMono16k
from edge_msa.types import SAMPLE_RATE, AudioChunk

log = logging.getLogger(__name__)

STALL_S = 2.0  # a running input stream gives a block every 50 ms; this long without one: lost


class MicrophoneSource:
    has_audio = True
    has_video = False

    def __init__(
        self,
        device: int | str | None = None,
        clock0: float | None = None,
        reconnect_max_s: float = 30.0,
    ) -> None:
        self.device = int(device) if isinstance(device, str) and device.isdigit() else device
        self.name = f"microphone {'default' if device is None else device}"
        self.clock0 = time.monotonic() if clock0 is None else clock0
        self.rate = SAMPLE_RATE
        self.reconnect_max_s = reconnect_max_s
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

    def run(self, emit: Emit, stop: threading.Event, state: StateFn = ignore_state) -> None:
        """Capture until ``stop``; a device that fails, vanishes or goes quiet
        is closed and reopened with backoff while the other sources go on."""
        backoff = Backoff(self.reconnect_max_s)
        try:
            while not stop.is_set():
                try:
                    if self._stream is None:
                        if backoff.failures:
                            _rescan_devices()
                        self.open()
                    why = self._capture(emit, stop, backoff, state)
                except SourceError as e:
                    why = str(e)
                if stop.is_set():
                    return
                delay = backoff.fail()
                if backoff.failures == 1:
                    # Said before closing: closing a device that hangs can take a while.
                    state(RECONNECTING)
                    log.warning("%s lost (%s); reopening in %.1f s", self.name, why, delay)
                else:
                    log.warning("%s; retrying in %.1f s", why, delay)
                self._close()
                stop.wait(delay)
        finally:
            self._close()

    def _capture(
        self, emit: Emit, stop: threading.Event, backoff: Backoff, state: StateFn
    ) -> str:
        """Hand blocks on until ``stop`` (returns "") or the device fails (returns why)."""
        assert self._stream is not None, "open() first"
        resampler = ToMono16k() if self.rate != SAMPLE_RATE else None
        try:
            self._stream.start()
        except Exception as e:  # sounddevice.PortAudioError; sounddevice is imported lazily
            return f"cannot start: {e}"
        last_block = time.monotonic()
        while not stop.is_set():
            try:
                block, t = self._blocks.get(timeout=0.2)
            except queue.Empty:
                # PortAudio stops calling back when a device is unplugged, and
                # does not always say so: silence from the driver means it is gone.
                if not self._stream.active:
                    return "the stream stopped"
                if time.monotonic() - last_block > STALL_S:
                    return f"no audio for {STALL_S:.0f} s"
                continue
            last_block = time.monotonic()
            if backoff.failures:
                log.info("%s: audio again", self.name)
                backoff.reset()
                state(UP)
            samples = block[:, 0] if resampler is None else resampler.array(block, self.rate)
            emit(AudioChunk(samples, t))
        return ""

    def _close(self) -> None:
        stream, self._stream = self._stream, None
        if stream is None:
            return
        try:
            stream.abort()  # abort, not stop: a dead device never drains its buffers
            stream.close()
        except Exception as e:  # closing a vanished device may fail too; it is gone anyway
            log.debug("%s: close failed: %s", self.name, e)
        while not self._blocks.empty():  # blocks of the old stream carry its old times
            self._blocks.get_nowait()


def _rescan_devices() -> None:
    """PortAudio lists devices once, at start: a microphone plugged back in is
    only seen after it starts again (no stream of ours is open at this point)."""
    try:
        import sounddevice as sd

        sd._terminate()
        sd._initialize()
    except Exception as e:  # private API of sounddevice; without it we retry the old list
        log.debug("rescanning audio devices failed: %s", e)


def _pick_rate(sd, device, default_rate: int) -> int:
    """16 kHz when the device takes it, else its default (we resample)."""
    try:
        sd.check_input_settings(device=device, samplerate=SAMPLE_RATE, channels=1)
        return SAMPLE_RATE
    except Exception:
        return default_rate
