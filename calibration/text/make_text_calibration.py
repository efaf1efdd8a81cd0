"""Rebuild calibration/text/: INT8 calibration sentences for the text model's TensorRT graph.

A seeded sample of MOSI and MOSEI *train* sentences (never dev, valid or
test), normalised and tokenised exactly as the runtime does, with the shipped
tokenizer. ``scripts/build_trt_graphs.py`` calibrates the static INT8 QDQ
candidate on them (edge_msa/training/graphs).

    .venv/bin/python calibration/text/make_text_calibration.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_msa.hashing import sha256_file
from edge_msa.models import model_dir
from edge_msa.training.graphs.calibration import build_text, data_root

HERE = Path(__file__).resolve().parent
OUT = HERE / "text_calibration.npz"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mosi", type=int, default=128, help="MOSI train sentences")
    p.add_argument("--mosei", type=int, default=256, help="MOSEI train sentences")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    text_dir = model_dir("text")
    manifest = json.loads((text_dir / "manifest.json").read_text(encoding="utf-8"))
    summary = build_text(OUT, text_dir, {"mosi": args.mosi, "mosei": args.mosei}, args.seed)
    record = {
        "file": f"calibration/text/{OUT.name}",
        "for": "models/text TensorRT graph (static INT8 QDQ candidate)",
        "what": "tokenised MOSI and MOSEI train sentences, one feed per sentence as at run time",
        "data": {
            "mosi": {"labels": "mosi/label.csv", "split": "train", "rows": args.mosi},
            "mosei": {"labels": "mosei/label.csv", "split": "train", "rows": args.mosei},
            "never": "dev, valid, test",
        },
        "arrays": {
            "input_ids": "int32 (N, max_len) zero-padded",
            "lengths": "int32 (N,) tokens per sentence",
            "row_ids": "str (N,) label.csv ids",
            "texts": "str (N,) the transcripts as in label.csv",
        },
        **summary,
        "seed": args.seed,
        "tokenizer_sha256": manifest["sha256"][manifest["tokenizer"]],
        "command": ".venv/bin/python calibration/text/make_text_calibration.py "
        f"--mosi {args.mosi} --mosei {args.mosei} --seed {args.seed}",
        "data_root": "$EDGE_MSA_DATA, default ../shared/datasets",
        "sha256": sha256_file(OUT),
    }
    (HERE / "manifest.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"{OUT} ({data_root()}): {summary}, sha256 {record['sha256']}")


if __name__ == "__main__":
    main()
