#!/usr/bin/env bash
# One cross-fitting text model for the fusion training (edge_msa/training/folds.py):
# the shipped text recipe (2 epochs at lr 3e-5, then 1 epoch at lr 1e-5 with the
# recognised transcripts) without the videos of fold K of N.
#   scripts/train_text_fold.sh K N [OUT]   (OUT: ~/.cache/edge-msa/text-folds/foldK)
set -euo pipefail
k=${1:?usage: train_text_fold.sh K N [OUT]}
n=${2:?usage: train_text_fold.sh K N [OUT]}
out=${3:-$HOME/.cache/edge-msa/text-folds/fold$k}
work=${TMPDIR:-/tmp}/edge_msa_text_fold$k
spoken=${EDGE_MSA_SPOKEN:-$HOME/.cache/edge-msa/spoken}
py=.venv/bin/python
$py scripts/train_text.py --threads 1 --epochs 2 --skip-frozen --fold "$k/$n" \
  --out "$work/stage1" --work "$work/stage1"
$py scripts/train_text.py --threads 1 --epochs 1 --skip-frozen --fold "$k/$n" \
  --init "$work/stage1/finetuned.pt" --lr 1e-5 --head-lr 1e-4 --asr-corpus "$spoken" \
  --out "$out" --work "$work/stage2"
