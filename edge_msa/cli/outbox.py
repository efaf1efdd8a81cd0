"""`edge-msa outbox status|flush`: results waiting in the outbox."""

from __future__ import annotations

import argparse
import asyncio

from edge_msa.cli.common import add_common, overrides, setup_logging
from edge_msa.config import load_config


def add_parser(sub: argparse._SubParsersAction) -> None:
    outbox = sub.add_parser("outbox", help="inspect or deliver results waiting in the outbox")
    outbox.add_argument("action", choices=["status", "flush"])
    add_common(outbox)
    outbox.add_argument("--timeout", type=float, default=30.0, help="flush: give up after (s)")
    outbox.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from edge_msa.runtime.outbox_cmd import outbox_command

    cfg = load_config(args.config, overrides(args))
    setup_logging(cfg.runtime.log_level)
    return asyncio.run(outbox_command(cfg, args.action, args.timeout))
