"""A paced file releases audio and video by their times, not by the file's order.

The clip is a fragmented MP4 made by ffmpeg with its audio track first: in
each 2 s fragment the audio is stored ahead of the video, so PyAV decodes
audio about a second ahead of the frames of the same instant (as the demo
does for its first 14 s). Paced in decode order, each frame arrived that
late; an utterance's analysis then waited for frames of its end.
"""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from edge_msa.sources.media import MediaSource
from edge_msa.sources.pacing import MAX_LATE_S, MAX_REORDER_S, Pacer
from edge_msa.types import SAMPLE_RATE, AudioChunk, VideoFrame

pytestmark = pytest.mark.timeout(120)


def audio_first_clip(dst: Path, seconds: float = 4.0) -> Path:
    exe = shutil.which("ffmpeg")
    if exe is None:
        pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
    subprocess.run(
        [
            exe, "-nostdin", "-loglevel", "error", "-y",
            "-f", "lavfi", "-i", f"sine=frequency=440:sample_rate=22050:duration={seconds}",
            "-f", "lavfi", "-i", f"testsrc=size=160x120:rate=15:duration={seconds}",
            "-map", "0:a", "-map", "1:v", "-c:a", "aac", "-c:v", "libx264", "-g", "30",
            "-movflags", "frag_keyframe+empty_moov", "-frag_duration", "2000000", str(dst),
        ],
        check=True,
    )
    return dst


def due(item: AudioChunk | VideoFrame) -> float:
    """When the item is due: a frame at its time, an audio chunk at its end."""
    if isinstance(item, VideoFrame):
        return item.t
    return item.t + len(item.samples) / SAMPLE_RATE


def run_source(source: MediaSource, clock0: float) -> list[tuple[float, AudioChunk | VideoFrame]]:
    """Every item with the time it was handed on, on the run's clock."""
    items: list = []
    source.open()
    source.run(lambda item: items.append((time.monotonic() - clock0, item)), threading.Event())
    return items


def test_paced_file_hands_on_audio_and_video_when_due(tmp_path):
    clip = audio_first_clip(tmp_path / "audio_first.mp4")
    # The clip is what it should be: read as fast as it decodes, the frames
    # come out well behind the audio of the same instant.
    heard = float("-inf")
    behind = []
    for _, item in run_source(MediaSource(str(clip)), time.monotonic()):
        if isinstance(item, AudioChunk):
            heard = due(item)
        else:
            behind.append(heard - item.t)
    assert np.median(behind) > 0.5, np.median(behind)

    clock0 = time.monotonic()
    items = run_source(MediaSource(str(clip), realtime=True, clock0=clock0), clock0)
    frames = [(at, item) for at, item in items if isinstance(item, VideoFrame)]
    audio = [(at, item) for at, item in items if isinstance(item, AudioChunk)]
    assert len(frames) >= 55 and abs(sum(len(a.samples) for _, a in audio) / SAMPLE_RATE - 4) < 0.1
    # Handed on in the order they are due, each close to when it is due (the
    # two cores may be busy: a sleep can overshoot; decode order was ~1 s late).
    dues = [due(item) for _, item in items]
    assert dues == sorted(dues)
    for what in (frames, audio):
        late = [at - due(item) for at, item in what]
        assert np.median(late) < 0.1 and np.percentile(late, 90) < 0.2, (what[0][1], late)


class Released:
    def __init__(self) -> None:
        self.items: list[tuple[str, float]] = []
        self.stop = threading.Event()

    def pacer(self, due_in: float = 0.0) -> Pacer:
        """A pacer whose items are all due ``due_in`` seconds from now."""
        at = time.monotonic() + due_in
        return Pacer(["audio", "video"], lambda t: at, self.emit, self.stop)

    def emit(self, item) -> None:
        self.items.append(item)

    def push(self, pacer: Pacer, stream: str, t: float) -> None:
        pacer.push(stream, t, lambda: (stream, t))


def test_pacer_waits_for_each_stream_before_releasing():
    out = Released()
    pacer = out.pacer()
    for t in (0.0, 0.1, 0.2, 0.3):
        out.push(pacer, "audio", t)
    assert out.items == []  # the video's first frame may be earlier still
    out.push(pacer, "video", 0.15)
    assert out.items == [("audio", 0.0), ("audio", 0.1), ("video", 0.15)]
    out.push(pacer, "video", 0.25)
    assert out.items[3:] == [("audio", 0.2), ("video", 0.25)]
    pacer.end()
    assert out.items[5:] == [("audio", 0.3)]


def test_pacer_does_not_wait_for_a_silent_stream_for_ever():
    out = Released()
    pacer = out.pacer()
    times = [round(0.1 * i, 1) for i in range(26)]
    for t in times:
        out.push(pacer, "audio", t)
    # No video at all: audio goes once it is MAX_REORDER_S behind what was decoded.
    assert out.items == [("audio", t) for t in times if times[-1] - t >= MAX_REORDER_S - 1e-9]


def test_pacer_does_not_hold_a_live_streams_late_audio_for_stalled_video():
    out = Released()
    pacer = out.pacer(due_in=-2 * MAX_LATE_S)  # arriving late, as a live stream's can
    out.push(pacer, "audio", 0.0)
    assert out.items == [("audio", 0.0)]
    out = Released()
    pacer = out.pacer(due_in=-MAX_LATE_S / 2)
    out.push(pacer, "audio", 0.0)
    assert out.items == []  # not that late: the video's frame may still be earlier


def test_pacer_releases_nothing_before_it_is_due_or_after_a_stop():
    out = Released()
    pacer = out.pacer(due_in=0.3)
    out.push(pacer, "audio", 0.0)
    threading.Timer(0.1, out.stop.set).start()
    start = time.monotonic()
    pacer.end()  # waits for the item's time; the stop comes first
    assert out.items == [] and time.monotonic() - start < 0.25
