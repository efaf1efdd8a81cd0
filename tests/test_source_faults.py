"""Sources that fail mid-stream, on real components.

A network camera or stream is emulated by ffmpeg serving a clip over loopback
TCP as MPEG-TS at real-time pace (``-re``), the way an IP camera serves RTSP;
killing ffmpeg is the camera dropping off the network, starting it again is
it coming back. The same stream is read through PyAV (``--media tcp://...``)
and through OpenCV (``--camera tcp://...``). The microphone has no device
here: a MicrophoneSource whose device is missing is the real code path of a
microphone that was unplugged (it fails to reopen and keeps retrying).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from edge_msa.config import Config
from edge_msa.publishing.outbox import Outbox
from edge_msa.runtime.app import load_models
from edge_msa.runtime.metrics import Metrics, MetricsServer
from edge_msa.runtime.pipeline import Pipeline, PipelineListener
from edge_msa.sources import DEMO_CLIP, SourceError
from edge_msa.sources.camera import CameraSource
from edge_msa.sources.media import MediaSource
from edge_msa.sources.microphone import MicrophoneSource
from edge_msa.types import AudioChunk, SentimentResult, VideoFrame
from tests.conftest import free_port
from tests.media_util import faststart_copy, video_stream_only

pytestmark = pytest.mark.timeout(240)


class StreamServer:
    """ffmpeg serving ``clip`` on tcp://127.0.0.1:PORT, looped, one client per start."""

    def __init__(self, clip: Path, video_only: bool = False) -> None:
        exe = shutil.which("ffmpeg")
        if exe is None:
            pytest.skip("ffmpeg is not installed (scripts/setup.sh installs it)")
        self.port = free_port()
        self.url = f"tcp://127.0.0.1:{self.port}"
        self.cmd = [
            exe, "-nostdin", "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(clip),
            *(["-an"] if video_only else []), "-c", "copy", "-f", "mpegts",
            f"{self.url}?listen=1",
        ]
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(self.cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # Probing with a connection would use up the one client it serves: read the table.
        assert wait_for(lambda: self._listening(), 10), "ffmpeg did not listen"

    def _listening(self) -> bool:
        port = f":{self.port:04X} "
        table = Path("/proc/net/tcp").read_text()
        return any(port in line and line.split()[3] == "0A" for line in table.splitlines())

    def kill(self) -> None:
        """Gone without a goodbye, as a camera that loses power."""
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def stream_server():
    servers: list[StreamServer] = []

    def make(clip: Path, video_only: bool = False) -> StreamServer:
        servers.append(StreamServer(clip, video_only))
        servers[-1].start()
        return servers[-1]

    yield make
    for s in servers:
        s.kill()


def wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return predicate()


class Recorder:
    """Runs a source in a thread, recording what it emits and each state it reports."""

    def __init__(self, source) -> None:
        self.source = source
        self.items: list[tuple[float, AudioChunk | VideoFrame]] = []  # (arrival, item)
        self.states: list[tuple[float, str]] = []
        self.stop = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.source.run(
                lambda item: self.items.append((time.monotonic(), item)),
                self.stop,
                lambda state: self.states.append((time.monotonic(), state)),
            )
        except BaseException as e:  # surfaced by the test
            self.error = e

    def state_is(self, state: str) -> bool:
        return bool(self.states) and self.states[-1][1] == state

    def since(self, t: float, kind: type) -> list:
        return [item for at, item in list(self.items) if at > t and isinstance(item, kind)]

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(20)
        assert not self.thread.is_alive(), "the source did not stop"
        assert self.error is None, self.error


def backoff_delays(caplog) -> list[float]:
    return [float(d) for d in re.findall(r"in ([\d.]+) s", caplog.text)]


def check_outage(rec: Recorder, server: StreamServer, kinds: list[type], caplog) -> None:
    """Kill the server mid-stream, let a few reconnections fail, bring it back."""
    t = time.monotonic()
    assert wait_for(lambda: all(rec.since(t, k) for k in kinds), 30), "no data before the outage"
    server.kill()
    killed = time.monotonic()
    assert wait_for(lambda: rec.state_is("reconnecting"), 15), rec.states
    time.sleep(2.5)  # refused, refused, ...: the backoff grows
    server.start()
    assert wait_for(lambda: rec.state_is("up"), 30), rec.states
    back = time.monotonic()
    assert wait_for(lambda: all(rec.since(back, k) for k in kinds), 15), "no data after the outage"
    rec.finish()
    assert [s for _, s in rec.states] == ["reconnecting", "up"]  # said once each
    delays = backoff_delays(caplog)
    assert len(delays) >= 3 and delays == sorted(delays) and delays[-1] <= 1.0, delays
    for kind in kinds:
        times = [item.t for _, item in rec.items if isinstance(item, kind)]
        assert times == sorted(times), f"{kind.__name__} times go back after the reconnection"
        before = [item.t for at, item in rec.items if at <= killed and isinstance(item, kind)]
        after = [item.t for at, item in rec.items if at >= back and isinstance(item, kind)]
        # The outage (> 2.5 s) is a gap in the source's time, not glued over.
        assert after[0] - before[-1] > 2.0, (before[-1], after[0])


def test_live_stream_reconnects_with_backoff_when_its_server_dies(stream_server, caplog):
    caplog.set_level(logging.INFO, "edge_msa")
    server = stream_server(DEMO_CLIP)
    source = MediaSource(server.url, reconnect_max_s=1.0)
    source.open()
    rec = Recorder(source)
    rec.thread.start()
    try:
        check_outage(rec, server, [AudioChunk, VideoFrame], caplog)
    finally:
        rec.stop.set()
    assert "Connection refused" in caplog.text  # the reason is in the log line


def test_network_camera_reconnects_with_backoff_when_it_drops_off(stream_server, caplog):
    caplog.set_level(logging.INFO, "edge_msa")
    server = stream_server(DEMO_CLIP, video_only=True)
    camera = CameraSource(server.url, reconnect_max_s=1.0)
    camera.open()
    rec = Recorder(camera)
    rec.thread.start()
    try:
        check_outage(rec, server, [VideoFrame], caplog)
    finally:
        rec.stop.set()
    assert "read failed" in caplog.text


def test_camera_that_opens_but_never_reads_backs_off(tmp_path, caplog):
    # The index of a clip and none of its pictures: OpenCV opens it, and every
    # read fails at once. Without backoff that is a busy loop; with it the delays grow.
    caplog.set_level(logging.INFO, "edge_msa")
    whole = faststart_copy(tmp_path / "whole.mp4").read_bytes()
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(whole[: whole.find(b"mdat") + 100])
    camera = CameraSource(str(empty), reconnect_max_s=1.0)
    camera.open()
    rec = Recorder(camera)
    rec.thread.start()
    time.sleep(3.0)
    rec.finish()
    assert rec.items == [] and [s for _, s in rec.states][:1] == ["reconnecting"]
    delays = backoff_delays(caplog)
    assert 3 <= len(delays) <= 8 and delays[-1] == 1.0, delays


def test_camera_stream_that_never_answers_times_out(monkeypatch):
    # A server that accepts the connection and sends nothing (a camera that
    # hangs): opening gives up after the stream timeout, so neither a reconnect
    # loop nor a stop request waits on it for long.
    from edge_msa.sources import camera as camera_mod

    monkeypatch.setattr(camera_mod, "STREAM_TIMEOUT_S", 1.0)
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)  # the kernel accepts; nobody ever writes
        cam = CameraSource(f"tcp://127.0.0.1:{server.getsockname()[1]}")
        t = time.monotonic()
        with pytest.raises(SourceError, match="camera stream .* could not be opened"):
            cam.open()
    assert time.monotonic() - t < 15  # OpenCV's own default is 30 s


# -- the whole pipeline ---------------------------------------------------


@pytest.fixture(scope="module")
def models():
    # No speech recognition: it is not what these tests are about, and it is slow.
    cfg = Config.model_validate({"asr": {"enabled": False}})
    return load_models(cfg, has_video=True)


def pipeline_config(tmp_path: Path, **over) -> Config:
    data = {
        "device_id": "faults",
        "asr": {"enabled": False},
        "source": {"reconnect_max_s": 1.0},
        "runtime": {"state_dir": str(tmp_path), "flush_timeout_s": 5},
        "vision": {"visual_interval_s": 5},
        "output": {"sinks": []},
    }
    for key, value in over.items():
        data[key] = {**data.get(key, {}), **value} if isinstance(value, dict) else value
    return Config.model_validate(data)


class Results(PipelineListener):
    """Each result with the source states at the moment it was delivered."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.got: list[tuple[SentimentResult, dict[str, str]]] = []
        pipeline.listeners.append(self)

    def result(self, result: SentimentResult) -> None:
        self.got.append((result, dict(self.pipeline.source_state)))


def make_pipeline(cfg: Config, sources, models, outbox: Outbox | None = None) -> Pipeline:
    segmenter, analyzer, face_stage, name = models
    return Pipeline(cfg, sources, segmenter, analyzer, outbox, [], name, face_stage)


async def until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.05)
    return predicate()


def http_get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def test_microphone_lost_leaves_a_video_only_pipeline_running(models, tmp_path):
    video = MediaSource(str(video_stream_only(tmp_path / "faces.mp4")))
    video.open()
    mic = MicrophoneSource("no such input device 123", reconnect_max_s=1.0)
    cfg = pipeline_config(tmp_path)
    pipeline = make_pipeline(cfg, [video, mic], models)
    results = Results(pipeline)
    health: list[tuple[int, dict]] = []

    async def drive() -> int:
        metrics = Metrics(cfg)
        server = MetricsServer(metrics, "127.0.0.1", 0)
        server.start()
        metrics.attach(pipeline, 0.0)
        run = asyncio.create_task(pipeline.run())
        try:
            assert await until(lambda: len(results.got) >= 1, 120), "no face-only result"
            metrics.sample()
            health.append(await asyncio.to_thread(http_get, f"http://127.0.0.1:{server.port}/healthz"))
            assert await until(lambda: pipeline.source_state[video.name] == "ended", 120)
            pipeline.request_stop()
            return await asyncio.wait_for(run, 30)
        finally:
            await metrics.stop()
            server.stop()

    assert asyncio.run(drive()) == 0
    # 24 s of a face and no sound: a face-only result every 5 s of video.
    assert len(results.got) == 4, [r.t_start for r, _ in results.got]
    for result, states in results.got:
        assert result.modalities == {"text": "absent", "audio": "absent", "vision": "present"}
        assert states[mic.name] == "reconnecting"
    code, body = health[0]
    assert code == 503 and body["sources"][mic.name] == "reconnecting"
    assert f"source {mic.name} is reconnecting" in body["reasons"]


def test_truncated_media_says_error_and_keeps_what_it_heard(models, tmp_path):
    whole = faststart_copy(tmp_path / "whole.mp4")
    cut = tmp_path / "cut.mp4"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 2])
    source = MediaSource(str(cut))
    source.open()
    pipeline = make_pipeline(pipeline_config(tmp_path), [source], models)
    results = Results(pipeline)
    assert asyncio.run(pipeline.run()) == 1
    assert pipeline.status()["sources"] == {source.name: "error"}
    assert len(pipeline.errors) == 1 and "truncated" in pipeline.errors[0]
    # The first two demo sentences lie wholly in the first half of the file.
    assert len(results.got) >= 2
    assert all(r.modalities["audio"] == "present" for r, _ in results.got)


def demo_audio(dst: Path, seconds: float) -> Path:
    """The demo's sound alone, its first ``seconds``."""
    cmd = ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(DEMO_CLIP), "-vn", "-t",
           str(seconds), str(dst)]
    subprocess.run(cmd, check=True)
    return dst


def span(pipeline: Pipeline, result: SentimentResult) -> tuple[float, float]:
    """The result's stretch on the pipeline's clock (seconds since it started)."""
    t0, t1 = (_wall(t) for t in (result.t_start, result.t_end))
    return t0 - pipeline.started, t1 - pipeline.started


def state_during(timeline: list[tuple[float, str]], t0: float, t1: float) -> set[str]:
    """The states a source was in over [t0, t1], from a sampled timeline."""
    before = [s for t, s in timeline if t <= t0][-1:]
    return {*before, *(s for t, s in timeline if t0 < t <= t1)}


@pytest.mark.slow
def test_camera_lost_gives_audio_only_results_until_it_returns(stream_server, models, tmp_path):
    server = stream_server(DEMO_CLIP, video_only=True)
    camera = CameraSource(server.url, reconnect_max_s=1.0)
    camera.open()
    voice = MediaSource(str(demo_audio(tmp_path / "voice.wav", 19.0)), realtime=True)
    voice.open()
    pipeline = make_pipeline(pipeline_config(tmp_path, source={"realtime": True}), [camera, voice],
                             models)
    results = Results(pipeline)
    timeline: list[tuple[float, str]] = []  # (seconds since start, camera state)

    async def drive() -> int:
        run = asyncio.create_task(pipeline.run())
        t0 = time.monotonic()
        # The demo speaks at 0.5-4.0, 5.2-9.0, 10.2-12.9, 14.1-18.3 s: the camera
        # is lost for the second sentence and back before the fourth.
        plan = [(4.6, server.kill), (9.3, server.start)]
        while not run.done():
            now = time.monotonic() - t0
            if plan and now >= plan[0][0]:
                await asyncio.to_thread(plan.pop(0)[1])
            if not timeline or timeline[-1][1] != pipeline.source_state[camera.name]:
                timeline.append((now, pipeline.source_state[camera.name]))
            if pipeline.source_state[voice.name] == "ended":
                pipeline.request_stop()
            await asyncio.sleep(0.05)
        return run.result()

    camera.clock0 = time.monotonic()  # the camera's clock starts with the voice file's
    assert asyncio.run(drive()) == 0
    states = [s for _, s in timeline if s != "starting"]
    assert states[:3] == ["up", "reconnecting", "up"], timeline
    back = [t for t, s in timeline if s == "up"][1]
    assert len(results.got) == 4, [span(pipeline, r) for r, _ in results.got]
    lost = present = 0
    for result, _ in results.got:
        assert result.modalities["audio"] == "present"
        t0, t1 = span(pipeline, result)
        if state_during(timeline, t0, t1) == {"reconnecting"}:
            lost += 1
            assert result.modalities["vision"] == "absent", (t0, t1, timeline)
        elif t0 > back + 1.0:
            present += 1
            assert result.modalities["vision"] == "present", (t0, t1, timeline)
    assert lost >= 1 and present >= 1, ([span(pipeline, r) for r, _ in results.got], timeline)


@pytest.mark.slow
def test_live_stream_outage_in_the_pipeline(stream_server, models, broker, subscribe, tmp_path):
    sub = subscribe(broker.port, "edge-msa/faults/#")
    server = stream_server(DEMO_CLIP)
    stream = MediaSource(server.url, reconnect_max_s=1.0)
    stream.open()
    outbox = Outbox(tmp_path / "outbox.sqlite")
    cfg = pipeline_config(tmp_path, mqtt={"port": broker.port})
    pipeline = make_pipeline(cfg, [stream], models, outbox)

    def stream_state() -> str | None:
        statuses = sub.on("/status")
        return json.loads(statuses[-1][0])["sources"][stream.name] if statuses else None

    async def drive() -> tuple[int, float]:
        run = asyncio.create_task(pipeline.run())
        assert await until(lambda: len(sub.results()) >= 1, 60), "no result before the outage"
        await asyncio.to_thread(server.kill)
        killed = time.time()
        # The retained status says so while no result is being delivered.
        assert await until(lambda: stream_state() == "reconnecting", 15), sub.on("/status")
        await asyncio.sleep(2.0)
        await asyncio.to_thread(server.start)
        assert await until(lambda: stream_state() == "up", 30), sub.on("/status")
        # The stream starts the demo again: its first sentence arrives once more.
        assert await until(
            lambda: any(_wall(r["t_start"]) > killed for r in sub.results()), 60
        ), "no result after the stream came back"
        pipeline.request_stop()
        return await asyncio.wait_for(run, 60), killed

    try:
        code, killed = asyncio.run(drive())
    finally:
        outbox.close()
    assert code == 0
    got = sub.results()
    assert len({r["id"] for r in got}) == len(got) == pipeline.results
    starts = [_wall(r["t_start"]) for r in got]
    assert starts == sorted(starts)
    # Speech before and after the outage; anything else is a face-only result
    # (a face in view while nobody spoke for vision.visual_interval_s).
    speech = [_wall(r["t_start"]) for r in got if r["modalities"]["audio"] == "present"]
    assert any(t < killed for t in speech) and any(t > killed for t in speech)
    others = [r["modalities"] for r in got if r["modalities"]["audio"] != "present"]
    assert all(m["vision"] == "present" and m["text"] != "present" for m in others), others
    assert json.loads(sub.on("/status")[-1][0])["state"] == "stopped"


def _wall(iso: str) -> float:
    return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


# -- a real microphone: PortAudio over ALSA, fed through a FIFO --------------


class FifoMicrophone:
    """A capture device PortAudio really opens: ALSA's ``file`` plugin reads its
    samples from a FIFO that this class writes at real-time pace (silence when
    nothing is said). ALSA finds it in ``$HOME/.asoundrc``, so the process under
    test runs with ``HOME=self.home``.

    ``stall`` stops the writing with the FIFO still open: the device is there and
    gives nothing, as a microphone whose USB link died. ``unplug`` closes it too.
    """

    RATE = 16000
    BLOCK = 800

    def __init__(self, home: Path) -> None:
        import os

        self.home = home
        self.fifo = home / "mic.fifo"
        os.mkfifo(self.fifo)
        (home / ".asoundrc").write_text(
            "pcm.fifomic {\n type file\n slave.pcm \"null\"\n file \"/dev/null\"\n"
            f" infile \"{self.fifo}\"\n format \"raw\"\n}}\n"
        )
        self._queue: list[np.ndarray] = []
        self.said_at: list[float] = []  # time.time() each said clip's first block was written
        self._in_clip = False
        self._writing = threading.Event()
        self._closed = threading.Event()
        self._fd: int | None = None
        self._thread = threading.Thread(target=self._write, daemon=True)
        self.plug()
        self._thread.start()

    def say(self, samples: np.ndarray) -> None:
        self._queue.append(samples.astype(np.float32))

    @property
    def quiet(self) -> bool:
        return not self._queue

    def stall(self) -> None:
        self._writing.clear()

    def unplug(self) -> None:
        self._writing.clear()
        self._closed.set()

    def plug(self) -> None:
        import os

        # Read and write: opening never blocks, and a reader that goes away does
        # not kill the writer (no SIGPIPE).
        self._fd = os.open(self.fifo, os.O_RDWR)
        self._closed.clear()
        self._writing.set()

    def _write(self) -> None:
        import os

        t0, sent = time.monotonic(), 0
        while True:
            if self._closed.is_set() and self._fd is not None:
                os.close(self._fd)
                self._fd = None
            if not self._writing.wait(0.05):
                t0, sent = time.monotonic(), 0
                continue
            if self._queue and not self._in_clip:
                self._in_clip = True
                self.said_at.append(time.time())
            block = self._queue[0][: self.BLOCK] if self._queue else np.zeros(self.BLOCK)
            if self._queue:
                self._queue[0] = self._queue[0][self.BLOCK :]
                if not len(self._queue[0]):
                    self._queue.pop(0)
                    self._in_clip = False
            os.write(self._fd, block.astype(np.float32).tobytes())
            sent += len(block)
            time.sleep(max(t0 + sent / self.RATE - time.monotonic(), 0))

    def close(self) -> None:
        self.unplug()


@pytest.mark.slow
def test_real_microphone_that_stops_is_reopened(tmp_path):
    from tests.conftest import cli_popen
    from tests.media_util import espeak

    home = tmp_path / "home"
    home.mkdir()
    mic = FifoMicrophone(home)
    port = free_port()
    proc = cli_popen(
        "run", "--microphone", "fifomic", "--output", "jsonl", "--no-transcribe",
        "--metrics-port", str(port), "--state-dir", str(tmp_path),
        env={"HOME": str(home), "EDGE_MSA_SOURCE__RECONNECT_MAX_S": "1"},
    )
    lines: list[str] = []
    log: list[str] = []
    readers = [threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True),
               threading.Thread(target=lambda: log.extend(proc.stderr), daemon=True)]
    for reader in readers:
        reader.start()
    healthz = f"http://127.0.0.1:{port}/healthz"

    def mic_state() -> str | None:
        try:
            return http_get(healthz)[1].get("sources", {}).get("microphone fifomic")
        except (OSError, ValueError):
            return None

    try:
        speech = espeak("I absolutely love this place, the people here are wonderful.", tmp_path)
        assert wait_for(lambda: mic_state() == "up", 90), "the microphone did not come up"
        mic.say(speech)
        assert wait_for(lambda: len(lines) >= 1, 60), "nothing heard from the microphone"
        mic.stall()
        assert wait_for(lambda: mic_state() == "reconnecting", 15)
        time.sleep(1.0)
        mic.unplug()
        time.sleep(2.0)
        mic.plug()
        assert wait_for(lambda: mic_state() == "up", 30), "the microphone did not come back"
        mic.say(speech)
        assert wait_for(lambda: len(lines) >= 2, 60), "nothing heard after it came back"
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)
        for reader in readers:
            reader.join(5)
    finally:
        proc.kill()
        mic.close()
    stderr = "".join(log)
    assert proc.returncode == 0, stderr
    results = [json.loads(line) for line in lines]
    assert len(results) == 2, stderr
    for r in results:
        assert r["modalities"]["audio"] == "present" and r["modalities"]["vision"] == "absent"
    # The same words before and after: the same audio came through.
    assert abs(results[0]["score"] - results[1]["score"]) < 0.15, results
    assert "microphone fifomic lost (no audio for 2 s)" in stderr
