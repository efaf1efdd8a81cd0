"""`edge-msa train [text|voice|face|fusion] --config FILE`: train and export a model."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from edge_msa.cli.common import fail, setup_logging

KINDS = ("text", "voice", "face", "fusion")


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser(
        "train",
        help="train and export a model from a TOML config (configs/<kind>.toml)",
        description="Train a model, export it and write its manifest. The kind comes from "
        "the command, else from the config's `kind` key, else it is the fusion model.",
    )
    train.add_argument("kind", nargs="?", choices=KINDS, help="which model (default: the config's)")
    train.add_argument("--config", required=True, help="TOML training config")
    train.add_argument(
        "--export-only",
        action="store_true",
        help="export the finished run again (the config's out/work/state folder), without training",
    )
    train.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key for this run, e.g. --set fold=0/2 --set epochs=1 (a TOML "
        "value, else a string; repeatable; the manifest's command records it)",
    )
    train.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from edge_msa.training.run import train

    setup_logging("WARNING")
    logging.getLogger("edge_msa").setLevel(logging.INFO)
    try:
        summary = train(
            args.kind, Path(args.config), export_only=args.export_only, overrides=args.set
        )
    except FileNotFoundError as e:
        return fail(e)
    print(json.dumps(summary))
    return 0
