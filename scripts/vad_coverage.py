"""Which clips of a folder the segmenter loses or cuts short: each clip, with 0.5 s
of silence before and 1 s after, streamed in 100 ms chunks through the runtime's
VAD and segmenter.

    python scripts/vad_coverage.py ../shared/datasets/ravdess_speech [--json OUT]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from edge_msa.data.voice_corpus import load_audio_16k
from edge_msa.segmentation.segmenter import Segmenter
from edge_msa.segmentation.vad import SileroVad
from edge_msa.types import SAMPLE_RATE, AudioChunk

AUDIO = {".flac", ".wav", ".mp3", ".ogg", ".m4a"}
SHORT_S = 1.0


def spans(segmenter: Segmenter, audio: np.ndarray) -> list[tuple[float, float]]:
    chunk = SAMPLE_RATE // 10
    out = []
    for i in range(0, len(audio), chunk):
        out += segmenter.push(AudioChunk(audio[i : i + chunk], i / SAMPLE_RATE))
    return [(round(u.t0, 3), round(u.t1, 3)) for u in out + segmenter.flush()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--json", type=Path, help="write every clip's utterance spans here")
    args = parser.parse_args()
    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in AUDIO)
    segmenter = Segmenter(SileroVad())
    found = {}
    for path in files:
        pad = [np.zeros(SAMPLE_RATE // 2, np.float32), np.zeros(SAMPLE_RATE, np.float32)]
        found[path.stem] = spans(segmenter, np.concatenate([pad[0], load_audio_16k(path), pad[1]]))
    lost = [name for name, s in found.items() if not s]
    short = [name for name, s in found.items() if s and sum(b - a for a, b in s) < SHORT_S]
    print(f"{len(files)} clips: {len(lost)} without an utterance, {len(short)} under {SHORT_S} s")
    print("lost:", " ".join(lost) or "-")
    print("short:", " ".join(short) or "-")
    if args.json:
        args.json.write_text(json.dumps(found, indent=1))


if __name__ == "__main__":
    main()
