"""Live preview: the drawing itself, and a real demo run that writes a decodable mp4."""

from __future__ import annotations

import numpy as np
import pytest

from edge_msa.runtime.preview import draw, gui_problem
from edge_msa.types import FaceObservation, SentimentResult
from tests.conftest import cli


def _face() -> FaceObservation:
    probs = np.zeros(7, np.float32)
    probs[3] = 0.9  # happy
    return FaceObservation(
        t=1.0,
        box=(100, 120, 80, 90),
        quality=0.9,
        probs=probs,
        embedding=np.zeros(8, np.float32),
    )


def _result() -> SentimentResult:
    return SentimentResult(
        id="x",
        device_id="d",
        t_start="",
        t_end="",
        score=1.25,
        polarity="positive",
        uncertainty=0.8,
        modalities={},
        latency_ms={},
        model="m",
    )


def test_draw_marks_the_face_and_the_banner_without_touching_the_input():
    image = np.full((480, 640, 3), 128, np.uint8)
    out = draw(image, _face(), _result())
    assert (image == 128).all()  # drawn on a copy
    assert tuple(out[160, 100]) == (80, 200, 80)  # left edge of the box, green (BGR)
    assert out[2:26, 630].max() == 0  # the banner is black where no text is
    assert out[8:24, 8:200].max() > 240  # white banner text (anti-aliased)
    assert (draw(image, None, None)[100:200, 100:200] == 128).all()  # no face, no box


@pytest.mark.slow
def test_demo_writes_a_decodable_preview(tmp_path):
    import av

    path = tmp_path / "out" / "preview.mp4"
    proc = cli(
        "run",
        "--demo",
        "--no-transcribe",
        "--output",
        "jsonl",
        "--preview-out",
        str(path),
        "--preview",
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    if gui_problem():  # headless OpenCV (the default install): one line, then the file only
        warnings = [line for line in proc.stderr.splitlines() if "--preview:" in line]
        assert len(warnings) == 1 and "no window" in warnings[0]
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [f.to_ndarray(format="bgr24") for f in container.decode(stream)]
    assert len(frames) > 50  # 24 s at up to 10 analysed frames a second
    assert frames[0].shape == (480, 640, 3)
    banner = np.stack([f[2:26, 600:640] for f in frames])
    assert banner.mean() < 20  # every frame carries the black sentiment banner
    green = [(f[..., 1].astype(int) - f[..., 2].astype(int) > 80).sum() for f in frames[-20:]]
    assert max(green) > 200  # the face box (the astronaut's face is in view throughout)
