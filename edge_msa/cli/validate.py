"""`edge-msa validate-config` and `edge-msa schema`: check a config, print a schema."""

from __future__ import annotations

import argparse
import json

from edge_msa.config import load_config


def add_parsers(sub: argparse._SubParsersAction) -> None:
    check = sub.add_parser("validate-config", help="check a TOML config file and exit")
    check.add_argument("file")
    check.set_defaults(handler=validate)

    schema = sub.add_parser("schema", help="print the JSON Schema of a topic's messages")
    schema.add_argument(
        "--topic",
        default="sentiment",
        choices=["sentiment", "availability", "status"],
        help="which topic (default: sentiment, one result)",
    )
    schema.set_defaults(handler=print_schema)


def validate(args: argparse.Namespace) -> int:
    cfg = load_config(args.file, environ={})
    print(f"{args.file}: ok (device_id={cfg.device_id})")
    return 0


def print_schema(args: argparse.Namespace) -> int:
    from edge_msa.publishing.schemas import SCHEMAS

    print(json.dumps(SCHEMAS[args.topic], indent=2))
    return 0
