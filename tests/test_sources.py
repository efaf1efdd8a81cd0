"""Sources on real media: PyAV decoding, OpenCV capture, PortAudio errors."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

from edge_msa.sources import DEMO_CLIP, SourceError
from edge_msa.sources.camera import CameraSource
from edge_msa.sources.media import MediaSource
from edge_msa.types import SAMPLE_RATE, AudioChunk, VideoFrame
from tests.conftest import cli


def collect(source, stop_after: int | None = None):
    items: list[AudioChunk | VideoFrame] = []
    stop = threading.Event()

    def emit(item) -> None:
        items.append(item)
        if stop_after and len(items) >= stop_after:
            stop.set()

    source.open()
    source.run(emit, stop)
    return items


def test_media_gives_16k_mono_audio_and_bgr_frames_with_timestamps():
    items = collect(MediaSource(str(DEMO_CLIP)))
    audio = [i for i in items if isinstance(i, AudioChunk)]
    frames = [i for i in items if isinstance(i, VideoFrame)]
    samples = np.concatenate([a.samples for a in audio])
    assert samples.dtype == np.float32 and samples.ndim == 1
    assert abs(len(samples) / SAMPLE_RATE - 24.3) < 0.3
    # Chunk times follow on from each other: no gap, no overlap.
    for a, b in itertools.pairwise(audio):
        assert abs(a.t + a.duration - b.t) < 1e-6
    assert len(frames) > 300 and frames[0].image.shape == (480, 640, 3)
    times = [f.t for f in frames]
    assert times == sorted(times) and abs(times[1] - times[0] - 1 / 15) < 1e-3


def test_media_stop_ends_early():
    items = collect(MediaSource(str(DEMO_CLIP)), stop_after=10)
    # What was already decoded is still handed on (audio is never dropped).
    assert 10 <= len(items) <= 12


def test_camera_by_path_reconnects_when_reads_fail():
    # A file opened through the camera source ends, reads fail, and it reopens:
    # the same path a camera takes when it is unplugged and plugged in again.
    cam = CameraSource(str(DEMO_CLIP), reconnect_max_s=0.1)
    frames = collect(cam, stop_after=500)
    times = [f.t for f in frames]
    assert len(frames) == 500 and frames[0].image.ndim == 3
    assert times == sorted(times)  # capture clock, not media time


def test_missing_microphone_is_a_clear_error():
    from edge_msa.sources.microphone import MicrophoneSource

    with pytest.raises(SourceError, match="--microphone"):
        MicrophoneSource("no such input device 123").open()


def test_microphone_cli_error_is_one_line(tmp_path):
    res = cli("run", "--microphone", "no such input", "--state-dir", str(tmp_path))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1
