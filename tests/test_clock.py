"""One clock: a live result's ``t_start`` is when its speech was captured.

The real microphone path: PortAudio over ALSA, fed through a FIFO that the
test writes at real-time pace (:class:`FifoMicrophone`). The speech is
written at a known wall time; where the VAD puts its start inside the clip
is measured offline with the same segmenter. Before the shared clock,
results were late by the time the models took to load.
"""

from __future__ import annotations

import json
import signal
import threading
import time
from datetime import datetime

import numpy as np
import pytest

from edge_msa.config import Config
from edge_msa.segmentation.segmenter import Segmenter
from edge_msa.segmentation.vad import SileroVad
from edge_msa.sources.clock import StreamClock
from edge_msa.types import SAMPLE_RATE, AudioChunk
from tests.conftest import cli_popen
from tests.media_util import espeak
from tests.test_source_faults import FifoMicrophone, wait_for

pytestmark = pytest.mark.timeout(180)

TOLERANCE_S = 0.1


def speech_start_in(clip: np.ndarray) -> float:
    """Where the VAD says speech starts in ``clip`` (seconds), fed as the microphone feeds it."""
    vad = Config().vad
    seg = Segmenter(SileroVad(), vad.threshold, vad.min_speech_ms, vad.hangover_ms,
                    vad.max_utterance_s, vad.pad_ms)
    block = FifoMicrophone.BLOCK
    utts = []
    for i in range(0, len(clip), block):
        utts += seg.push(AudioChunk(clip[i : i + block], i / SAMPLE_RATE))
    utts += seg.flush()
    assert len(utts) == 1, [(u.t0, u.t1) for u in utts]
    return utts[0].t0


def test_stream_clock_anchor():
    clock = StreamClock.start()
    assert abs(clock.wall(clock.now()) - time.time()) < 0.01


def test_sources_share_the_runs_clock():
    """A paced file is placed on the run's clock when its first frame arrives (a
    file read as fast as it decodes keeps its media time)."""
    from edge_msa.sources import build_sources

    clock = StreamClock(time.time() - 5.0, time.monotonic() - 5.0)  # the run began 5 s ago
    cfg = Config.model_validate({"source": {"demo": True, "realtime": True}}).source
    (paced,) = build_sources(cfg, clock)

    def first_items(source) -> list:
        items: list = []
        stop = threading.Event()

        def emit(item) -> None:
            items.append((clock.now(), item))
            if len(items) >= 5:
                stop.set()

        source.open()
        source.run(emit, stop)
        return items

    # Dated on the run's clock (an audio chunk is handed on once 0.1 s of it is in).
    for arrived, item in first_items(paced):
        assert abs(item.t - arrived) < 0.25, (item.t, arrived)
    (fast,) = build_sources(cfg.model_copy(update={"realtime": False}), clock)
    assert first_items(fast)[0][1].t < 0.1  # media time, from 0


def test_live_result_starts_when_its_speech_was_captured(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    mic = FifoMicrophone(home)
    quiet = np.zeros(SAMPLE_RATE // 2, np.float32)
    clip = np.concatenate([quiet, espeak("I really enjoyed the concert last night.", tmp_path),
                           quiet, quiet])
    offset = speech_start_in(clip)
    proc = cli_popen("run", "--microphone", "fifomic", "--output", "jsonl", "--no-transcribe",
                     "--state-dir", str(tmp_path), env={"HOME": str(home)})
    lines: list[str] = []
    log: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True),
               threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    try:
        assert wait_for(lambda: any("; running" in x for x in log), 90), "".join(log)
        time.sleep(1.0)  # the microphone's stream is up and gives silence
        mic.say(clip)
        assert wait_for(lambda: len(lines) >= 1, 60), "".join(log)
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
    finally:
        proc.kill()
        mic.close()
    result = json.loads(lines[0])
    t_start = datetime.fromisoformat(result["t_start"].replace("Z", "+00:00")).timestamp()
    # The FIFO hands a block over when its 50 ms begin; a microphone hands it
    # over when they end, and the source dates a block by that (arrival minus
    # its length). So the clip's first sample, handed over at said_at, stands
    # for sound captured one block before.
    captured = mic.said_at[0] - FifoMicrophone.BLOCK / FifoMicrophone.RATE
    spoken = captured + offset  # the wall time the speech started
    assert abs(t_start - spoken) < TOLERANCE_S, (t_start - spoken, "".join(log))
