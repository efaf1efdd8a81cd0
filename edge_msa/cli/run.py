"""`edge-msa run`: analyse a camera, microphone, media file or the demo clip."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from edge_msa.cli.common import BACKENDS, add_common, overrides, setup_logging, use_models
from edge_msa.config import Config, load_config

log = logging.getLogger("edge_msa")

# Flags that only matter when results go to the broker.
MQTT_FLAGS = {
    "mqtt.host": "--mqtt-host",
    "mqtt.port": "--mqtt-port",
    "mqtt.ha_discovery": "--ha-discovery",
}


def add_parser(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="analyse a camera, microphone, media file or the demo clip")
    add_common(run)
    src = run.add_mutually_exclusive_group()
    src.add_argument("--camera", dest="source.camera", help="camera index or device path")
    src.add_argument("--media", dest="source.media", help="media file or rtsp:// URL")
    src.add_argument(
        "--demo", dest="source.demo", action="store_const", const=True,
        help="play the bundled demo clip",
    )
    run.add_argument("--microphone", dest="source.microphone", help="input device index or name")
    _flag(run, "--no-microphone", "source.use_microphone", False, "with --camera: video only")
    _flag(run, "--realtime", "source.realtime", True, "pace a file at wall-clock speed")
    run.add_argument(
        "--output",
        dest="output.sinks",
        action="append",
        choices=["mqtt", "jsonl"],
        help="where results go (repeatable; default mqtt); jsonl: stdout",
    )
    run.add_argument("--output-file", dest="output.jsonl_file", help="also append JSONL here")
    _flag(run, "--transcript", "output.include_transcript", True,
          "put the transcript into published results")
    _flag(run, "--no-transcribe", "asr.enabled", False,
          "no speech recognition (privacy): text is imagined from the voice")
    run.add_argument("--backend", dest="runtime.backend", choices=BACKENDS)
    _flag(run, "--no-vision", "vision.enabled", False, "do not analyse frames: vision is absent")
    run.add_argument(
        "--visual-interval",
        dest="vision.visual_interval_s",
        type=float,
        metavar="S",
        help="face-only result every S s when nobody speaks (0: never)",
    )
    run.add_argument(
        "--preview-out",
        dest="output.preview_file",
        metavar="FILE.mp4",
        help="write the analysed frames with face box, expression and sentiment",
    )
    _flag(run, "--preview", "output.preview_window", True,
          "show that preview in a window (needs a display and a GUI OpenCV)")
    run.add_argument(
        "--metrics-port",
        dest="runtime.metrics_port",
        type=int,
        metavar="N",
        help="serve Prometheus /metrics and /healthz on 127.0.0.1:N (0: off)",
    )
    _flag(run, "--ha-discovery", "mqtt.ha_discovery", True,
          "publish Home Assistant MQTT discovery configs (retained)")
    run.add_argument(
        "--listen",
        dest="runtime.listen",
        type=_on_off,
        metavar="on|off",
        help="off: start muted (nothing analysed until ON on <prefix>/<device_id>/listen/set)",
    )
    run.add_argument(
        "--ha-discovery-remove",
        action="store_true",
        help="clear this device's Home Assistant discovery configs and exit",
    )
    run.set_defaults(handler=handle)


def _on_off(value: str) -> bool:
    if value.lower() not in ("on", "off"):
        raise argparse.ArgumentTypeError(f"expected on or off, got {value!r}")
    return value.lower() == "on"


def _flag(p: argparse.ArgumentParser, name: str, dest: str, value: bool, help: str) -> None:
    p.add_argument(name, dest=dest, action="store_const", const=value, help=help)


def handle(args: argparse.Namespace) -> int:
    given = overrides(args)
    cfg = load_config(args.config, given)
    setup_logging(cfg.runtime.log_level)
    use_models(args)
    warn_unused_mqtt(vars(args), cfg)
    if args.ha_discovery_remove:
        return asyncio.run(_ha_remove(cfg))
    from edge_msa.runtime.app import run

    return asyncio.run(run(cfg))


def warn_unused_mqtt(flags: dict[str, object], cfg: Config) -> None:
    """MQTT flags given while no result goes to the broker: say so, once."""
    if "mqtt" in cfg.output.sinks:
        return
    named = [flag for dest, flag in MQTT_FLAGS.items() if flags.get(dest) is not None]
    if named:
        log.warning(
            "%s given but mqtt is not among the outputs (%s): nothing is published; "
            "add --output mqtt",
            ", ".join(named),
            ", ".join(cfg.output.sinks),
        )


async def _ha_remove(cfg: Config) -> int:
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
