"""`edge-msa bench`: the pipeline's latency, speed and memory on a media file."""

from __future__ import annotations

import argparse
import asyncio
import json

from edge_msa.cli.common import add_models, setup_logging, use_models


def add_parser(sub: argparse._SubParsersAction) -> None:
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
    add_models(bench)
    bench.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from edge_msa.runtime.bench import bench, format_report

    setup_logging("WARNING")
    use_models(args)
    report = asyncio.run(bench(args.media, args.plot, args.baseline))
    print(format_report(report))
    if args.json:
        print(json.dumps(report))
    return 0
