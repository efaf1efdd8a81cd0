"""`edge-msa train`: train and export a model from a TOML config."""

from __future__ import annotations

import argparse
import json
import logging

from edge_msa.cli.common import setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    train = sub.add_parser("train", help="train and export the fusion model")
    train.add_argument("--config", required=True, help="TOML training config")
    train.add_argument(
        "--export-only",
        action="store_true",
        help="export the finished run in the config's `out` again, without training",
    )
    train.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from edge_msa.training.train_fusion import load_train_config, run

    setup_logging("WARNING")
    logging.getLogger("edge_msa").setLevel(logging.INFO)
    cfg = load_train_config(args.config)
    print(json.dumps(run(cfg, args.config, export_only=args.export_only)))
    return 0
