"""How long a pause to wait before recognising early: the table in docs/performance.md.

For each clip and each candidate ``asr.draft_pause_ms`` (and no drafts at
all), the runtime plays the clip at wall-clock pace, as a live source would,
with the same loaded models, and counts the drafts started, used by their
utterance, and outdated by speech going on, with end of utterance to publish
(p50 / p95, through a private Mosquitto when it is installed, as `edge-msa
bench` measures it). Repeats are interleaved (every pause once, then again)
so that load from elsewhere spreads over all of them.

    python scripts/draft_pauses.py [--repeat 2] [--pauses none,32,96,160,240,320]
        [--media FILE ...] [--ravdess DIR] [--json LOG] [--set asr.window=fit ...]

Without ``--media``: the demo clip, the MOSI clip and a RAVDESS conversation
(actors 01-04, four clips each, 1 s of silence between them) from the shared
data sets folder (``EDGE_MSA_DATA``, else ``../shared/datasets``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import wave
from collections import defaultdict
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGE_MSA_DATA", REPO.parent / "shared" / "datasets"))
MOSI = DATA / "media" / "mosi_Oz06ZWiO20M_6.mp4"
RAVDESS_ACTORS = ("01", "02", "03", "04")
RAVDESS_PICK = (0, 15, 30, 45)  # of each actor's 60 sorted clips: four emotions
GAP_S = 1.0


def ravdess_conversation(folder: Path, out: Path) -> Path:
    """Clips of several actors one after the other, 16 kHz mono WAV."""
    from edge_msa.types import SAMPLE_RATE

    parts: list[np.ndarray] = []
    for actor in RAVDESS_ACTORS:
        clips = sorted((folder / f"Actor_{actor}").glob("*.flac"))
        for i in RAVDESS_PICK:
            parts += [_decode(clips[i], SAMPLE_RATE), np.zeros(int(GAP_S * SAMPLE_RATE))]
    pcm = (np.clip(np.concatenate(parts), -1, 1) * 32767).astype("<i2")
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(SAMPLE_RATE)
        w.writeframes(pcm.tobytes())
    return out


def _decode(path: Path, rate: int) -> np.ndarray:
    import av

    with av.open(str(path)) as c:
        resampler = av.AudioResampler(format="flt", layout="mono", rate=rate)
        chunks = [
            r.to_ndarray().ravel() for f in c.decode(audio=0) for r in resampler.resample(f)
        ]
    return np.concatenate(chunks).astype(np.float32)


def config(media: str, pause: int | None, port: int | None, settings: list[str]):
    """The paced run's configuration; ``settings`` are ``section.key=value`` (JSON values)."""
    from edge_msa.config import load_config

    cli: dict = {
        "source": {"media": media, "realtime": True},
        "output": {"sinks": ["mqtt"] if port else []},
        "mqtt": {"port": port or 1883, "prefix": "edge-msa-drafts"},
        "runtime": {"log_level": "WARNING"},
        "asr": {"early_start": pause is not None, "draft_pause_ms": pause or 0},
    }
    for setting in settings:
        name, value = setting.split("=", 1)
        section, field = name.split(".")
        try:
            cli.setdefault(section, {})[field] = json.loads(value)
        except json.JSONDecodeError:
            cli.setdefault(section, {})[field] = value
    return load_config(None, cli, environ={})


async def one_run(media: str, pause: int | None, port: int | None, models, settings) -> dict:
    from edge_msa.runtime.bench import _open, _pct, _run

    cfg = config(media, pause, port, settings)
    pipeline, _, eou = await _run(cfg, _open(cfg), models, port, naive=False)
    d = pipeline.drafts
    return {
        "media": Path(media).name, "pause_ms": pause, "results": len(eou), "eou_ms": eou,
        "p50": _pct(eou, 50), "started": d.started, "used": d.used, "outdated": d.outdated,
        "outdated_ran": d.outdated_ran, "head_start_ms": list(d.head_start_ms),
        "frames_analysed": pipeline.frames_analysed,
        "frames_dropped": pipeline.frames_dropped,
    }


async def main(args: argparse.Namespace) -> None:
    from edge_msa.runtime.app import load_models
    from edge_msa.runtime.bench import _broker, _open
    from edge_msa.sources import DEMO_CLIP

    pauses = [None if p == "none" else int(p) for p in args.pauses.split(",")]
    with tempfile.TemporaryDirectory() as tmp:
        media = args.media or [str(DEMO_CLIP), str(MOSI), str(
            ravdess_conversation(Path(args.ravdess), Path(tmp) / "ravdess_conversation.wav")
        )]
        runs: list[dict] = []
        log = Path(args.json) if args.json else None
        with _broker() as port:
            for m in media:
                cfg = config(m, 0, port, args.set)
                models = load_models(cfg, any(s.has_video for s in _open(cfg)), False)
                for rep in range(args.repeat):
                    for pause in pauses:
                        run = await one_run(m, pause, port, models, args.set)
                        run["repeat"] = rep
                        runs.append(run)
                        print(json.dumps({k: v for k, v in run.items() if k != "eou_ms"}),
                              file=sys.stderr, flush=True)
                        if log:
                            with log.open("a") as f:
                                f.write(json.dumps(run) + "\n")
        print(table(runs, pauses))


def table(runs: list[dict], pauses: list[int | None]) -> str:
    from edge_msa.runtime.bench import _pct

    by: dict[tuple[str, int | None], list[dict]] = defaultdict(list)
    for r in runs:
        by[(r["media"], r["pause_ms"])].append(r)
    lines = [
        "| clip | pause before a draft | drafts started | used | outdated (of them begun) "
        "| head start p50 | end of utterance to publish p50 / p95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for media in dict.fromkeys(r["media"] for r in runs):
        for pause in pauses:
            rs = by[(media, pause)]
            if not rs:
                continue
            eou = [ms for r in rs for ms in r["eou_ms"]]
            head = [ms for r in rs for ms in r.get("head_start_ms", [])]
            head_p50 = f"{_pct(head, 50):.0f} ms" if head else "-"
            s = {k: sum(r[k] for r in rs) for k in ("started", "used", "outdated", "outdated_ran")}
            share = f"{s['outdated'] / s['started']:.0%}" if s["started"] else "-"
            label = "no drafts" if pause is None else f"{pause} ms"
            lines.append(
                f"| {media} | {label} | {s['started']} | {s['used']} | {s['outdated']} "
                f"({s['outdated_ran']}), {share} | {head_p50} "
                f"| {_pct(eou, 50):.0f} / {_pct(eou, 95):.0f} ms |"
            )
    return "\n".join(lines)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--media", action="append", help="a clip (repeatable)")
    parser.add_argument("--ravdess", default=str(DATA / "ravdess_speech"))
    parser.add_argument("--pauses", default="none,32,96,160,240,320")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", help="append every run, as JSON lines, to this file")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="another setting for every run, e.g. asr.window=fit")
    asyncio.run(main(parser.parse_args()))
