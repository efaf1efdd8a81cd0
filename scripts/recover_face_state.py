"""Rebuild a finished face run's state folder (best.pt, history.json) from a model
folder that holds expression.fp32.onnx and its manifest, so that a config can start
from that model (`init`) or be taught by it (`teachers`) after its checkpoints are gone.

    mkdir -p /tmp/face-0.3.0 && git archive 4a9f11f models/face | tar -x -C /tmp/face-0.3.0
    .venv/bin/python scripts/recover_face_state.py /tmp/face-0.3.0/models/face build/face-0.3.0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from edge_msa.training.face.data import centre, load_split
from edge_msa.training.face.recover import recover_state
from edge_msa.training.settings import default_data

STATS_FACES = 4096  # training faces for the BatchNorm running statistics


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("model_dir", type=Path)
    p.add_argument("state_dir", type=Path)
    p.add_argument("--data", type=Path, default=Path(default_data()))
    args = p.parse_args()
    images, _ = load_split(args.data / "fer2013/fer2013_Training.npz", "--data")
    pick = torch.randperm(len(images), generator=torch.Generator().manual_seed(0))
    recover_state(args.model_dir, args.state_dir, centre(images[pick[:STATS_FACES]]))
    print(f"wrote {args.state_dir}")


if __name__ == "__main__":
    main()
