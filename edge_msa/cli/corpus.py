"""`edge-msa corpus spoken`: speak labelled transcripts, cache ASR and audio features."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

from edge_msa.cli.common import fail, setup_logging


def add_parser(sub: argparse._SubParsersAction) -> None:
    corpus = sub.add_parser("corpus", help="build a training corpus (cached outside the repo)")
    corpus_sub = corpus.add_subparsers(dest="what", required=True)
    spoken = corpus_sub.add_parser("spoken", help="speak labelled transcripts, cache ASR + audio")
    spoken.add_argument("--labels", required=True, help="MOSI- or MOSEI-style label.csv")
    spoken.add_argument("--split", required=True, help="rows whose mode is NAME")
    spoken.add_argument("--limit", type=int, help="a seeded random subset of N sentences")
    spoken.add_argument("--seed", type=int, default=0)
    spoken.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="processes")
    spoken.add_argument("--cache", help="cache root (default ~/.cache/edge-msa/spoken)")
    spoken.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from edge_msa.data import spoken
    from edge_msa.data.labels import read_labels

    setup_logging("WARNING")
    labels = Path(args.labels)
    try:
        rows = spoken.select(read_labels(labels, args.split), args.limit, args.seed)
    except (OSError, ValueError) as e:
        return fail(e)
    if not rows:
        return fail(f"{labels}: no rows with mode == {args.split!r}")
    cache = Path(args.cache) if args.cache else spoken.default_cache()
    folder = spoken.corpus_folder(cache, labels, args.split)
    report = spoken.build(rows, folder, args.jobs)
    print(json.dumps({"folder": str(folder), "sentences": len(rows), **report}))
    return 0
