"""Command line: builds the config and hands over to the runtime. Nothing else."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from edge_msa import __version__
from edge_msa.config import ConfigError, load_config

log = logging.getLogger("edge_msa")


def _common(p: argparse.ArgumentParser) -> None:
    """Flags shared by `run` and `outbox`: config, broker and state."""
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--mqtt-host", dest="mqtt.host")
    p.add_argument("--mqtt-port", dest="mqtt.port", type=int)
    p.add_argument("--device-id", dest="device_id")
    p.add_argument("--state-dir", dest="runtime.state_dir", help="where the outbox lives")
    p.add_argument(
        "--log-level", dest="runtime.log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edge-msa", description=__doc__)
    parser.add_argument("--version", action="version", version=f"edge-msa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="analyse a camera, microphone, media file or the demo clip")
    _common(run)
    src = run.add_mutually_exclusive_group()
    src.add_argument("--camera", dest="source.camera", help="camera index or device path")
    src.add_argument("--media", dest="source.media", help="media file or rtsp:// URL")
    src.add_argument(
        "--demo",
        dest="source.demo",
        action="store_const",
        const=True,
        help="play the bundled demo clip",
    )
    run.add_argument("--microphone", dest="source.microphone", help="input device index or name")
    run.add_argument(
        "--no-microphone",
        dest="source.use_microphone",
        action="store_const",
        const=False,
        help="with --camera: video only",
    )
    run.add_argument(
        "--realtime",
        dest="source.realtime",
        action="store_const",
        const=True,
        help="pace a file at wall-clock speed",
    )
    run.add_argument(
        "--output",
        dest="output.sinks",
        action="append",
        choices=["mqtt", "jsonl"],
        help="where results go (repeatable; default mqtt); jsonl: stdout",
    )
    run.add_argument("--output-file", dest="output.jsonl_file", help="also append JSONL here")
    run.add_argument(
        "--transcript",
        dest="output.include_transcript",
        action="store_const",
        const=True,
        help="put the transcript into published results",
    )
    run.add_argument(
        "--no-transcribe",
        dest="asr.enabled",
        action="store_const",
        const=False,
        help="no speech recognition (privacy): text is absent",
    )
    run.add_argument("--backend", dest="runtime.backend", choices=["cpu", "cuda", "tensorrt"])
    run.add_argument(
        "--no-vision",
        dest="vision.enabled",
        action="store_const",
        const=False,
        help="do not analyse frames: vision is absent",
    )
    run.add_argument(
        "--visual-interval",
        dest="vision.visual_interval_s",
        type=float,
        metavar="S",
        help="face-only result every S s when nobody speaks (0: never)",
    )

    doctor = sub.add_parser(
        "doctor", help="check cameras, audio, broker, backends, models and disk; say what to fix"
    )
    _common(doctor)
    doctor.add_argument("--camera", dest="source.camera", help="also require this camera")
    doctor.add_argument("--microphone", dest="source.microphone", help="also require this input")
    doctor.add_argument(
        "--output",
        dest="output.sinks",
        action="append",
        choices=["mqtt", "jsonl"],
        help="the sinks the run will use (the broker is needed only with mqtt)",
    )
    doctor.add_argument("--json", action="store_true", help="one JSON object on stdout")

    run.add_argument(
        "--preview-out",
        dest="output.preview_file",
        metavar="FILE.mp4",
        help="write the analysed frames with face box, expression and sentiment",
    )
    run.add_argument(
        "--preview",
        dest="output.preview_window",
        action="store_const",
        const=True,
        help="show that preview in a window (needs a display and a GUI OpenCV)",
    )
    run.add_argument(
        "--metrics-port",
        dest="runtime.metrics_port",
        type=int,
        metavar="N",
        help="serve Prometheus /metrics and /healthz on 127.0.0.1:N (0: off)",
    )
    run.add_argument(
        "--ha-discovery",
        dest="mqtt.ha_discovery",
        action="store_const",
        const=True,
        help="publish Home Assistant MQTT discovery configs (retained)",
    )
    run.add_argument(
        "--ha-discovery-remove",
        action="store_true",
        help="clear this device's Home Assistant discovery configs and exit",
    )

    check = sub.add_parser("validate-config", help="check a TOML config file and exit")
    check.add_argument("file")

    schema = sub.add_parser("schema", help="print the JSON Schema of a topic's messages")
    schema.add_argument(
        "--topic",
        default="sentiment",
        choices=["sentiment", "availability", "status"],
        help="which topic (default: sentiment, one result)",
    )

    bench = sub.add_parser("bench", help="measure the pipeline's latency, speed and memory")
    bench.add_argument("--media", help="media file (default: the demo clip)")
    bench.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    bench.add_argument("--plot", metavar="DIR", help="write a latency histogram PNG here")
    bench.add_argument(
        "--baseline",
        action="store_true",
        help="also run a naive configuration (FP32, recognition after the utterance, "
        "one stage at a time) and report the ratios",
    )

    outbox = sub.add_parser("outbox", help="inspect or deliver results waiting in the outbox")
    outbox.add_argument("action", choices=["status", "flush"])
    _common(outbox)
    outbox.add_argument("--timeout", type=float, default=30.0, help="flush: give up after (s)")

    corpus = sub.add_parser("corpus", help="build a training corpus (cached outside the repo)")
    corpus_sub = corpus.add_subparsers(dest="what", required=True)
    spoken = corpus_sub.add_parser("spoken", help="speak labelled transcripts, cache ASR + audio")
    spoken.add_argument("--labels", required=True, help="MOSI- or MOSEI-style label.csv")
    spoken.add_argument("--split", required=True, help="rows whose mode is NAME")
    spoken.add_argument("--limit", type=int, help="a seeded random subset of N sentences")
    spoken.add_argument("--seed", type=int, default=0)
    spoken.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    spoken.add_argument("--cache", help="cache root (default ~/.cache/edge-msa/spoken)")

    train = sub.add_parser("train", help="train and export the fusion model")
    train.add_argument("--config", required=True, help="TOML training config")
    train.add_argument(
        "--export-only",
        action="store_true",
        help="export the finished run in the config's `out` again, without training",
    )

    ev = sub.add_parser("eval", help="evaluate a model on labelled data")
    ev_sub = ev.add_subparsers(dest="what", required=True)
    text = ev_sub.add_parser("text", help="the fusion model given only the transcripts")
    speech = ev_sub.add_parser(
        "speech", help="transcripts spoken by espeak-ng, heard as at run time"
    )
    speech.add_argument(
        "--text",
        default="simulated",
        choices=["present", "simulated", "absent"],
        help="what text the model gets besides the audio",
    )
    missing = ev_sub.add_parser("missing", help="fixed modality subsets and random missing rates")
    for p in (text, speech, missing):
        p.add_argument("--labels", required=True, help="MOSI- or MOSEI-style label.csv")
        p.add_argument("--split", default=None, help="rows whose mode is NAME (default: all)")
        p.add_argument("--model", help="fusion model folder (default: models/fusion)")
        p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
        p.add_argument("--plot", metavar="DIR", help="write PNG plots here")
        p.add_argument("--backend", default="cpu", choices=["cpu", "cuda", "tensorrt"])
    for p in (speech, missing):
        p.add_argument(
            "--limit",
            type=int,
            default=200 if p is missing else None,
            help="a seeded random subset of N sentences",
        )
        p.add_argument("--jobs", type=int, help="processes for speaking and hearing")
    for p in (text, missing):
        p.add_argument(
            "--encoder-only",
            action="store_true",
            help="the v0 path instead: encoder heads (+ inverse-variance fusion)",
        )
    face = ev_sub.add_parser("face", help="the face expression model on FER2013-style npz")
    face.add_argument("--fer2013", required=True, help="npz with images (N,48,48) and labels")
    voice = ev_sub.add_parser("voice", help="the voice emotion model on EmoDB wavs")
    voice.add_argument("--emodb", required=True, help="folder of EmoDB-named wav files")
    voice.add_argument("--speakers", help="only these EmoDB speakers, e.g. 03,08")
    voice.add_argument(
        "--model", help="voice head folder (default models/voice; scripts/train_voice.py --out)"
    )
    for p in (face, voice):
        p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
        p.add_argument("--plot", metavar="DIR", help="write a confusion-matrix PNG here")
        p.add_argument("--backend", default="cpu", choices=["cpu", "cuda", "tensorrt"])
    return parser


def cli_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """Dotted argparse dests that were given, as a nested dict."""
    out: dict[str, Any] = {}
    for key, value in vars(args).items():
        if value is None or ("." not in key and key != "device_id"):
            continue
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def _setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("faster_whisper", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        # Until the runtime installs its own handlers (edge_msa.runtime.app.Shutdown),
        # a stop request finds nothing to finish: leave cleanly, not with a traceback.
        signal.signal(signal.SIGTERM, _stop_before_start)
        signal.signal(signal.SIGINT, _stop_before_start)
    try:
        return _dispatch(args)
    except ConfigError as e:
        print(f"edge-msa: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "validate-config":
        cfg = load_config(args.file, environ={})
        print(f"{args.file}: ok (device_id={cfg.device_id})")
        return 0
    if args.command == "schema":
        from edge_msa.publishing.schemas import SCHEMAS

        print(json.dumps(SCHEMAS[args.topic], indent=2))
        return 0
    if args.command == "bench":
        from edge_msa.runtime.bench import bench, format_report

        _setup_logging("WARNING")
        report = asyncio.run(bench(args.media, args.plot, args.baseline))
        print(format_report(report))
        if args.json:
            print(json.dumps(report))
        return 0
    if args.command == "train":
        from edge_msa.training.train_fusion import load_train_config, run

        _setup_logging("WARNING")
        logging.getLogger("edge_msa").setLevel(logging.INFO)
        cfg = load_train_config(args.config)
        print(json.dumps(run(cfg, args.config, export_only=args.export_only)))
        return 0
    if args.command == "corpus":
        return _corpus_spoken(args)
    if args.command == "eval":
        _setup_logging("WARNING")
        try:
            return EVALS[args.what](args)
        except (OSError, ValueError, RuntimeError) as e:
            print(f"edge-msa: {e}", file=sys.stderr)
            return 2
    cfg = load_config(args.config, cli_overrides(args))
    _setup_logging(cfg.runtime.log_level)
    if args.command == "doctor":
        return _doctor(cfg, args.json)
    if args.command == "outbox":
        from edge_msa.runtime.outbox_cmd import outbox_command

        return asyncio.run(outbox_command(cfg, args.action, args.timeout))
    if getattr(args, "ha_discovery_remove", False):
        return asyncio.run(_ha_remove(cfg))
    from edge_msa.runtime.app import run

    return asyncio.run(run(cfg))


async def _ha_remove(cfg) -> int:
    import aiomqtt

    from edge_msa.publishing.ha import remove_discovery

    try:
        n = await remove_discovery(cfg.mqtt, cfg.device_id)
    except aiomqtt.MqttError as e:
        print(
            f"edge-msa: broker {cfg.mqtt.host}:{cfg.mqtt.port} unreachable ({e}); "
            "nothing removed: check --mqtt-host/--mqtt-port",
            file=sys.stderr,
        )
        return 1
    print(f"removed {n} Home Assistant discovery config(s) of {cfg.device_id}")
    return 0


def _doctor(cfg, as_json: bool) -> int:
    from edge_msa.doctor import exit_code, format_line, run_checks

    checks = run_checks(cfg)
    code = exit_code(checks)
    if as_json:
        print(json.dumps({"ok": code == 0, "checks": [c.to_dict() for c in checks]}))
    else:
        print("\n".join(format_line(c) for c in checks))
    return code


def _corpus_spoken(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.labels import read_labels
    from edge_msa.training import spoken

    _setup_logging("WARNING")
    labels = Path(args.labels)
    try:
        rows = spoken.select(read_labels(labels, args.split), args.limit, args.seed)
    except (OSError, ValueError) as e:
        print(f"edge-msa: {e}", file=sys.stderr)
        return 2
    if not rows:
        print(f"edge-msa: {labels}: no rows with mode == {args.split!r}", file=sys.stderr)
        return 2
    cache = Path(args.cache) if args.cache else spoken.default_cache()
    folder = spoken.corpus_folder(cache, labels, args.split)
    report = spoken.build(rows, folder, args.jobs)
    print(json.dumps({"folder": str(folder), "sentences": len(rows), **report}))
    return 0


def _eval_text(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.fusion_eval import evaluate_text

    metrics = evaluate_text(args.labels, args.split, args.model, args.backend, args.encoder_only)
    return _report_fusion(args, metrics)


def _eval_speech(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.fusion_eval import evaluate_speech

    metrics = evaluate_speech(
        args.labels, args.split, args.text, args.limit, args.model, args.backend, args.jobs
    )
    return _report_fusion(args, metrics)


def _eval_missing(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.fusion_eval import evaluate_missing

    metrics = evaluate_missing(
        args.labels, args.split, args.limit, args.model, args.backend, args.jobs, args.encoder_only
    )
    return _report_fusion(args, metrics)


def _report_fusion(args: argparse.Namespace, metrics: dict) -> int:
    from edge_msa.evaluation.report import format_table

    arrays = metrics.pop("_arrays")
    if "subsets" in metrics:
        rows = {
            **{f"subset {k}": v for k, v in metrics["subsets"].items()},
            **{f"r={k}": v for k, v in metrics["random"].items()},
            "random mean": metrics["random_mean"],
        }
        print(format_rows(rows))
    else:
        print(format_table(metrics))
    if args.plot:
        from edge_msa.evaluation import plots

        out = [plots.calibration_png(*arrays, Path(args.plot) / "calibration.png")]
        if "random" in metrics:
            out.append(plots.robustness_png(metrics["random"], Path(args.plot) / "robustness.png"))
        print("wrote " + ", ".join(map(str, out)), file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    return 0


def format_rows(rows: dict[str, dict]) -> str:
    keys = ("mae", "corr", "acc2", "f1", "acc7", "coverage_1sigma", "coverage_2sigma")
    heads = ("mae", "corr", "acc2", "f1", "acc7", "cov±1σ", "cov±2σ")
    width = max(len(k) for k in rows)
    lines = [f"{'':<{width}}  " + " ".join(f"{h:>8}" for h in heads)]
    lines += [
        f"{name:<{width}}  " + " ".join(f"{m[k]:8.4f}" for k in keys) for name, m in rows.items()
    ]
    return "\n".join(lines)


def _eval_face(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.face_eval import evaluate_face, format_face_table
    from edge_msa.vision.detector import DEFAULT_MODEL_DIR

    metrics = evaluate_face(args.fer2013, DEFAULT_MODEL_DIR, args.backend)
    return _report(args, metrics, format_face_table(metrics), "face")


def _eval_voice(args: argparse.Namespace) -> int:
    from edge_msa.evaluation.voice_eval import evaluate_voice, format_voice_table

    speakers = [s for s in args.speakers.split(",") if s] if args.speakers else None
    try:
        metrics = evaluate_voice(args.emodb, args.model, args.backend, speakers=speakers)
    except FileNotFoundError as e:
        print(f"edge-msa: {e}", file=sys.stderr)
        return 2
    return _report(args, metrics, format_voice_table(metrics), "voice")


def _report(args: argparse.Namespace, metrics: dict, table: str, name: str = "") -> int:
    print(table)
    if getattr(args, "plot", None):
        from edge_msa.evaluation.plots import confusion_png
        from edge_msa.types import FACE_EMOTIONS, VOICE_EMOTIONS

        labels = list(FACE_EMOTIONS if name == "face" else VOICE_EMOTIONS)
        path = confusion_png(
            metrics["confusion"],
            labels,
            f"{name} confusion",
            Path(args.plot) / f"{name}_confusion.png",
        )
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(metrics))
    return 0


EVALS = {
    "text": _eval_text,
    "speech": _eval_speech,
    "missing": _eval_missing,
    "face": _eval_face,
    "voice": _eval_voice,
}


if __name__ == "__main__":
    sys.exit(main())
