#!/usr/bin/env python3
"""The text and fusion models' TensorRT graphs: make, measure, choose, install.

    build_trt_graphs.py build                 # both models: graphs, numbers, manifests
    build_trt_graphs.py build --only fusion   # one model
    build_trt_graphs.py build --no-write      # numbers only (JSON on stdout)
    build_trt_graphs.py fp32 text --out DIR   # the recovered FP32 graph, checked against
                                              # the sha256 its manifest records

Needs the train extra (onnx) and the data sets ($EDGE_MSA_DATA, default
../shared/datasets); the calibration sets come from calibration/text and
calibration/fusion. What it does and why: edge_msa/training/graphs,
docs/tensorrt.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="make, measure and choose; install into models/")
    b.add_argument("--only", choices=["text", "fusion"], action="append")
    b.add_argument("--work", type=Path, default=REPO / "build" / "trt_graphs")
    b.add_argument("--no-write", action="store_true", help="measure only; models/ untouched")
    b.add_argument("--no-speech", action="store_true", help="skip the fusion's MOSI dev speech")
    b.add_argument("--skip", choices=["int8_qdq"], action="append", default=[],
                   help="leave a candidate out of the choice (still measured)")
    f = sub.add_parser("fp32", help="write the recovered FP32 graph of one model")
    f.add_argument("model", choices=["text", "fusion"])
    f.add_argument("--out", type=Path, default=REPO / "build" / "trt_graphs")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from edge_msa.models import model_dir
    from edge_msa.training.graphs import build
    from edge_msa.training.graphs.calibration import data_root

    if args.command == "fp32":
        folder = model_dir(args.model)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        spec = build.SPECS[args.model]
        out = args.out / f"{spec.stem}.fp32.onnx"
        record = build.recover_file(folder / manifest["file"], out)
        want = ((manifest.get("tensorrt") or {}).get("fp32") or {}).get("sha256")
        same = want is None or want == record["sha256"]
        print(f"{out}: sha256 {record['sha256']}" + ("" if same else f" (manifest: {want})"))
        return 0 if same else 1
    names = tuple(args.only or ("text", "fusion"))
    report = build.build(
        REPO, data_root(), args.work, names, write=not args.no_write, speech=not args.no_speech,
        skip=tuple(args.skip),
    )
    print(json.dumps(report, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
