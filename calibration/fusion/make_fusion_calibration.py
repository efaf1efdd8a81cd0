"""Rebuild calibration/fusion/: INT8 calibration inputs for the fusion model's TensorRT graph.

A seeded sample of MOSI and MOSEI *train* sentences (never dev, valid or
test) turned into fusion inputs as the joint corpus builds them: the shipped
text model's features of the real or recognised transcript, the espeak-ng
rendering heard through the runtime's audio path (cached in
~/.cache/edge-msa/spoken, as for training), and expression tokens of
polarity-matched FER2013 Training faces from calibration/face_calibration.npz.
Each row takes one of the modality combinations the runtime meets
(edge_msa.training.graphs.calibration.CASES).

The features depend on the shipped text model, Whisper encoder, voice head
and expression CNN: rebuild after any of them changes.

    .venv/bin/python calibration/fusion/make_fusion_calibration.py
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_msa.hashing import sha256_file
from edge_msa.models import model_dir
from edge_msa.training.graphs.calibration import CASES, build_fusion, data_root

HERE = Path(__file__).resolve().parent
OUT = HERE / "fusion_calibration.npz"
FACES = HERE.parent / "face_calibration.npz"


def _model_shas() -> dict[str, str]:
    out = {}
    for name in ("text", "voice", "face"):
        manifest = json.loads((model_dir(name) / "manifest.json").read_text(encoding="utf-8"))
        out.update({f"{name}/{k}": v for k, v in manifest["sha256"].items() if k.endswith(".onnx")})
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--mosi", type=int, default=48, help="MOSI train sentences")
    p.add_argument("--mosei", type=int, default=48, help="MOSEI train sentences")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--jobs", type=int, help="processes that speak and hear the sentences")
    args = p.parse_args()
    per_set = {"mosi": args.mosi, "mosei": args.mosei}
    summary = build_fusion(OUT, per_set, FACES, args.seed, args.jobs)
    record = {
        "file": f"calibration/fusion/{OUT.name}",
        "for": "models/fusion TensorRT graph (static INT8 QDQ candidate)",
        "what": "fusion inputs of train sentences: text features, espeak-ng speech heard by the "
        "runtime's audio path, polarity-matched FER2013 Training faces; one modality "
        "combination per row, in turn",
        "data": {
            "mosi": {"labels": "mosi/label.csv", "split": "train", "rows": args.mosi},
            "mosei": {"labels": "mosei/label.csv", "split": "train", "rows": args.mosei},
            "faces": "calibration/face_calibration.npz (FER2013 Training faces)",
            "never": "dev, valid, test, FER2013 PublicTest/PrivateTest",
        },
        "case_letters": "t real transcript, s recognised transcript (simulated), a audio and "
        "voice, v faces; in turn: " + ", ".join(c or "none" for c in CASES),
        "arrays": {
            "text": "float32 (N, 385) text features (zeros where has_text is false)",
            "has_text, simulated": "bool (N,)",
            "audio, audio_lengths": "float16 (sum T, 384) audio tokens of the rows, T per row",
            "voice": "float32 (N, 7) voice probabilities (rows with audio)",
            "vision, vision_lengths": "float16 (sum F, 135) face tokens of the rows, F per row",
            "row_ids, cases": "str (N,)",
        },
        **summary,
        "seed": args.seed,
        "made_with": _model_shas(),
        "command": ".venv/bin/python calibration/fusion/make_fusion_calibration.py "
        f"--mosi {args.mosi} --mosei {args.mosei} --seed {args.seed}",
        "data_root": "$EDGE_MSA_DATA, default ../shared/datasets",
        "sha256": sha256_file(OUT),
    }
    (HERE / "manifest.json").write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    print(f"{OUT} ({data_root()}): {summary}, sha256 {record['sha256']}")


if __name__ == "__main__":
    main()
