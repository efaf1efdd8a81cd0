#!/usr/bin/env bash
# One cross-fitting text model for the fusion training (edge_msa/data/folds.py):
# the shipped text recipe (configs/text.toml: 2 epochs at lr 3e-5, then 1 epoch at
# lr 1e-5 with the recognised transcripts) without the videos of fold K of N.
#   scripts/train_text_fold.sh K N [OUT [--set KEY=VALUE ...]]
#   (OUT: ~/.cache/edge-msa/text-folds/foldK; further arguments go to `edge-msa train text`)
set -euo pipefail
cd "$(dirname "$0")/.."
k=${1:?usage: train_text_fold.sh K N [OUT]}
n=${2:?usage: train_text_fold.sh K N [OUT]}
out=${3:-$HOME/.cache/edge-msa/text-folds/fold$k}
work=${TMPDIR:-/tmp}/edge_msa_text_fold$k
shift $(($# < 3 ? $# : 3))
spoken=${EDGE_MSA_SPOKEN:-$HOME/.cache/edge-msa/spoken}
edge=.venv/bin/edge-msa
[ -x "$edge" ] || edge=edge-msa
"$edge" train text --config configs/text.toml --set "fold=$k/$n" --set "out=$out" \
  --set "work=$work" --set "stages.1.asr_corpus=$spoken" "$@"
