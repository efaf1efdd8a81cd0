"""Command line: a thin dispatcher; each command group lives in its own module."""

from __future__ import annotations

import argparse
import signal
import sys

from edge_msa import __version__
from edge_msa.cli import bench, corpus, doctor, eval, outbox, run, train, validate
from edge_msa.cli.common import fail, missing_extra
from edge_msa.config import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edge-msa",
        description="On-device multimodal sentiment analysis, published over MQTT.",
    )
    parser.add_argument("--version", action="version", version=f"edge-msa {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (run, doctor, validate, bench, outbox, corpus, train, eval):
        (getattr(module, "add_parsers", None) or module.add_parser)(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "run":
        # Until the runtime installs its own handlers (edge_msa.runtime.app.Shutdown),
        # a stop request finds nothing to finish: leave cleanly, not with a traceback.
        signal.signal(signal.SIGTERM, _stop_before_start)
        signal.signal(signal.SIGINT, _stop_before_start)
    try:
        return args.handler(args)
    except ConfigError as e:
        return fail(e)
    except ModuleNotFoundError as e:
        line = missing_extra(e, args.command)
        if line is None:
            raise
        return fail(line)
    except KeyboardInterrupt:
        return 130


def _stop_before_start(signum: int, frame: object) -> None:
    raise SystemExit(0)


if __name__ == "__main__":
    sys.exit(main())
