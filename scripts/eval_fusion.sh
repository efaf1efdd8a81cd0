#!/usr/bin/env bash
# Every number in the README's fusion tables, on the dev/valid splits (the test
# splits are held out): scripts/eval_fusion.sh OUT_DIR [ABLATION_RUNS_DIR]
set -euo pipefail
out=${1:?usage: eval_fusion.sh OUT_DIR [RUNS_DIR]}
runs=${2:-runs}
data=${EDGE_MSA_DATA:-../shared/datasets}
mosi=$data/mosi/label.csv
mosei=$data/mosei/label.csv
e() { .venv/bin/edge-msa eval "$@" --json | tail -1; }
mkdir -p "$out"
for enc in "" "--encoder-only"; do
  tag=${enc:+v0}
  e text --labels "$mosi" --split dev $enc > "$out/text_mosi_dev${tag:+_$tag}.json"
  e text --labels "$mosei" --split valid $enc > "$out/text_mosei_valid${tag:+_$tag}.json"
done
for mode in present simulated absent; do
  e speech --labels "$mosi" --split dev --text $mode > "$out/speech_mosi_dev_$mode.json"
  e speech --labels "$mosei" --split valid --limit 300 --text $mode \
    > "$out/speech_mosei_valid_$mode.json"
done
e missing --labels "$mosi" --split dev --limit 229 --plot "$out/plots" > "$out/missing.json"
e missing --labels "$mosi" --split dev --limit 229 --encoder-only > "$out/missing_v0.json"
for ab in no-mia no-distill no-gate; do
  if [ -d "$runs/fusion-$ab/model" ]; then
    e missing --labels "$mosi" --split dev --limit 229 --model "$runs/fusion-$ab/model" \
      > "$out/missing_$ab.json"
    e text --labels "$mosi" --split dev --model "$runs/fusion-$ab/model" > "$out/text_mosi_dev_$ab.json"
    e speech --labels "$mosi" --split dev --text simulated --model "$runs/fusion-$ab/model" \
      > "$out/speech_mosi_dev_simulated_$ab.json"
    e speech --labels "$mosi" --split dev --text absent --model "$runs/fusion-$ab/model" \
      > "$out/speech_mosi_dev_absent_$ab.json"
  fi
done
echo "wrote $out"
