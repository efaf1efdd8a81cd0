"""Build the bundled demo clip ``edge_msa/assets/demo.mp4`` and its ``demo.json``.

Picture: scikit-image's astronaut photo (NASA, public domain), slowly zoomed
and panned with a faint brightness "breathing" so that the video is not a
still. Sound: espeak-ng (en-us, fixed rate and pitch) speaking five sentences
of positive, negative and neutral sentiment, separated by silence. The clip is
encoded with PyAV only (H.264 yuv420p + AAC mono) so no ffmpeg CLI is needed.

``demo.json`` records, for each sentence, its text, intended polarity and its
speech span in the clip. The span is measured on the espeak audio itself
(trimmed of espeak's own leading/trailing silence by an energy threshold), so
it is the ground truth the VAD is tested against.

Run from the repository root::

    .venv/bin/python scripts/make_demo_clip.py

The output is deterministic for a given espeak-ng / FFmpeg build: fixed voice,
rate, pitch, single-threaded x264 and bit-exact muxing flags.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import tempfile
import wave
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from av.codec.context import Flags
from skimage import data as skdata

ASSETS = Path(__file__).resolve().parent.parent / "edge_msa" / "assets"

SENTENCES: list[tuple[str, str]] = [
    ("I absolutely love this place, the people here are wonderful.", "positive"),
    ("This is the worst service I have ever had, I am really disappointed.", "negative"),
    ("The meeting starts at ten and ends at noon.", "neutral"),
    ("What a fantastic day, everything went perfectly and I feel great.", "positive"),
    ("I hate waiting in this awful queue, it is a terrible waste of time.", "negative"),
]

VOICE = "en-us"
RATE_WPM = 160
PITCH = 50
AMPLITUDE = 100
LEAD_S = 0.5
GAP_S = 1.2
TAIL_S = 1.0  # longer than the VAD hangover, so the last sentence closes on silence
# Kept around each trimmed span so soft onsets are not cut off abruptly (no clicks).
MARGIN_S = 0.03
TRIM_DB = -35.0

WIDTH, HEIGHT, FPS = 640, 480, 15
CRF = "30"
AUDIO_BITRATE = 48_000
# Keeps encoder version strings out of the stream so rebuilds are byte-identical.
BITEXACT = int(Flags.bitexact)


def espeak(text: str) -> tuple[np.ndarray, int]:
    """Speak ``text`` with the fixed voice; returns float32 samples and their rate."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "s.wav"
        cmd = ["espeak-ng", "-v", VOICE, "-s", str(RATE_WPM), "-p", str(PITCH)]
        cmd += ["-a", str(AMPLITUDE), "-w", str(path), text]
        subprocess.run(cmd, check=True, capture_output=True)
        with wave.open(str(path), "rb") as wav:
            rate = wav.getframerate()
            pcm = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    return pcm.astype(np.float32) / 32768.0, rate


def speech_span(samples: np.ndarray, rate: int, threshold_db: float = TRIM_DB) -> tuple[int, int]:
    """First and last+1 sample of the 10 ms frames louder than ``threshold_db`` below the peak."""
    hop = rate // 100
    n = len(samples) // hop
    frames = samples[: n * hop].reshape(n, hop)
    rms = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    loud = np.flatnonzero(rms > rms.max() * 10 ** (threshold_db / 20))
    return int(loud[0]) * hop, (int(loud[-1]) + 1) * hop


def build_audio() -> tuple[np.ndarray, int, list[dict[str, object]]]:
    """Concatenate the trimmed sentences with fixed silences; returns samples, rate, spans."""
    pieces: list[np.ndarray] = []
    spans: list[dict[str, object]] = []
    rate = written = span_end = 0
    for index, (text, polarity) in enumerate(SENTENCES):
        samples, rate = espeak(text)
        start, end = speech_span(samples, rate)
        margin = int(MARGIN_S * rate)
        clip = samples[max(0, start - margin) : end + margin]
        # Silences are measured between speech spans, so the kept margins eat into them.
        span_start = span_end + round((LEAD_S if index == 0 else GAP_S) * rate)
        lead = span_start - (start - max(0, start - margin)) - written
        pieces += [np.zeros(lead, np.float32), clip]
        written += lead + len(clip)
        span_end = span_start + (end - start)
        spans.append(
            {
                "text": text,
                "polarity": polarity,
                "start": round(span_start / rate, 3),
                "end": round(span_end / rate, 3),
            }
        )
    pieces.append(np.zeros(span_end + round(TAIL_S * rate) - written, np.float32))
    return np.concatenate(pieces), rate, spans


def frame_at(photo: np.ndarray, t: float, duration: float) -> np.ndarray:
    """The photo at time ``t``: a slow zoom in and out with a small pan, gently breathing."""
    phase = 0.5 - 0.5 * np.cos(2 * np.pi * t / duration)  # 0 -> 1 -> 0 over the clip
    src_w = 512 - 112 * phase
    src_h = src_w * HEIGHT / WIDTH
    # Centre drifts towards the face (upper middle) as the view zooms in.
    cx = 256 - 20 * phase + 6 * np.sin(2 * np.pi * t / 7.0)
    cy = src_h / 2 + 10 * phase
    scale = WIDTH / src_w
    matrix = np.array(
        [[scale, 0.0, -(cx - src_w / 2) * scale], [0.0, scale, -(cy - src_h / 2) * scale]]
    )
    frame = cv2.warpAffine(
        photo, matrix, (WIDTH, HEIGHT), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    gain = 1.0 + 0.04 * np.sin(2 * np.pi * t / 5.0)
    return np.clip(frame.astype(np.float32) * gain, 0, 255).astype(np.uint8)


def add_streams(container: av.container.OutputContainer, rate: int):
    video = container.add_stream("libx264", rate=FPS)
    video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
    video.options = {"crf": CRF, "preset": "slow", "tune": "stillimage", "g": str(FPS * 4)}
    # One thread keeps x264's output identical between runs and machines.
    video.codec_context.thread_count = 1
    video.codec_context.flags |= BITEXACT
    audio = container.add_stream("aac", rate=rate, layout="mono")
    audio.bit_rate = AUDIO_BITRATE
    audio.codec_context.flags |= BITEXACT
    return video, audio


def write_video(container, stream, duration: float) -> None:
    photo = skdata.astronaut()
    for index in range(int(round(duration * FPS))):
        frame = av.VideoFrame.from_ndarray(frame_at(photo, index / FPS, duration), format="rgb24")
        frame.pts = index
        frame.time_base = Fraction(1, FPS)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    size = 1024  # the AAC frame size
    padded = np.concatenate([samples, np.zeros(-len(samples) % size, np.float32)])
    for offset in range(0, len(padded), size):
        frame = av.AudioFrame.from_ndarray(
            padded[None, offset : offset + size], format="fltp", layout="mono"
        )
        frame.sample_rate = rate
        frame.pts = offset
        frame.time_base = Fraction(1, rate)
        container.mux(stream.encode(frame))
    container.mux(stream.encode(None))


def write_clip(path: Path, samples: np.ndarray, rate: int) -> None:
    duration = len(samples) / rate
    options = {"movflags": "+faststart", "fflags": "+bitexact"}
    with av.open(str(path), "w", format="mp4", options=options) as container:
        video, audio = add_streams(container, rate)
        write_audio(container, audio, samples, rate)
        write_video(container, video, duration)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ASSETS / "demo.mp4")
    args = parser.parse_args()
    samples, rate, spans = build_audio()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_clip(args.out, samples, rate)
    manifest = {
        "clip": args.out.name,
        "duration_s": round(len(samples) / rate, 3),
        "video": {"width": WIDTH, "height": HEIGHT, "fps": FPS, "codec": "h264 yuv420p"},
        "audio": {"sample_rate": rate, "channels": 1, "codec": "aac"},
        "sentences": spans,
        "timing": f"speech spans measured on the espeak audio, 10 ms frames above "
        f"{TRIM_DB:g} dB of the sentence's peak",
        "sources": {
            "photo": "scikit-image skimage.data.astronaut(): Eileen Collins, NASA, public domain",
            "voice": f"espeak-ng {VOICE}, {RATE_WPM} wpm, pitch {PITCH} (GPL-3.0 tool; "
            "its synthetic output is not restricted)",
            "made_by": "scripts/make_demo_clip.py",
        },
    }
    json_path = args.out.with_suffix(".json")
    json_path.write_text(json.dumps(manifest, indent=2) + "\n")
    print(
        f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB, "
        f"{manifest['duration_s']} s) and {json_path}"
    )


if __name__ == "__main__":
    main()
