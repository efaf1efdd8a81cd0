"""Media files made in the tests, with PyAV."""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import av
import numpy as np

from edge_msa.sources import DEMO_CLIP
from edge_msa.types import SAMPLE_RATE


def espeak(text: str, folder: Path) -> np.ndarray:
    """``text`` spoken by espeak-ng (en-us, 160 wpm), resampled to 16 kHz float32."""
    path = folder / "espeak.wav"
    cmd = ["espeak-ng", "-v", "en-us", "-s", "160", "-p", "50", "-w", str(path), text]
    subprocess.run(cmd, check=True, capture_output=True)
    with wave.open(str(path), "rb") as wav:
        rate = wav.getframerate()
        pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    samples = pcm.astype(np.float32) / 32768.0
    times = np.arange(int(len(samples) * SAMPLE_RATE / rate)) / SAMPLE_RATE
    return np.interp(times, np.arange(len(samples)) / rate, samples).astype(np.float32)


def faststart_copy(dst: Path, src: Path = DEMO_CLIP) -> Path:
    """Remux with the index first, as streamed files are, so a cut copy still opens."""
    return _remux(src, dst, {"movflags": "faststart"}, video_only=False)


def video_stream_only(dst: Path, src: Path = DEMO_CLIP) -> Path:
    """The demo's pictures without its sound."""
    return _remux(src, dst, {}, video_only=True)


def demo_head(dst: Path, seconds: float) -> Path:
    """The first ``seconds`` of the demo clip, sound and pictures."""
    return _remux(DEMO_CLIP, dst, {}, video_only=False, until=seconds)


def _remux(
    src: Path, dst: Path, options: dict[str, str], video_only: bool, until: float = 1e9
) -> Path:
    with av.open(str(src)) as inp, av.open(str(dst), "w", options=options) as out:
        chosen = inp.streams.video if video_only else inp.streams
        streams = {s.index: out.add_stream_from_template(s) for s in chosen}
        for packet in inp.demux(*chosen):
            if packet.dts is None or packet.pts * packet.time_base > until:
                continue
            packet.stream = streams[packet.stream.index]
            out.mux(packet)
    return dst


def video_only(dst: Path, seconds: float = 2.0, fps: int = 10) -> Path:
    with av.open(str(dst), "w") as out:
        stream = out.add_stream("mpeg4", rate=fps)
        stream.width, stream.height, stream.pix_fmt = 160, 120, "yuv420p"
        for i in range(int(seconds * fps)):
            img = np.full((120, 160, 3), (i * 7) % 255, np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return dst
