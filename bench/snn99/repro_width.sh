#!/bin/bash
# Capacity at 99%: sew_digits with width w (channels c16w / c32w) through snnprune's own target path
# (target99.py: Pruner(target_sparsity=0.99, total_steps=0.75 N, min_weights=40), Adam 1e-2, the mask frozen at 75%),
# static scikit-learn digits, 20 epochs, seeds 0-2, one run at a time on one thread (about 17 min here).
# Each line appends one JSON record to runs_width.jsonl; the table: python target99.py --summary runs_width.jsonl
set -e
cd "$(dirname "$0")"
P=${PYTHON:-python}
O=${OUT:-runs_width.jsonl}
export OMP_NUM_THREADS=1
A="--epochs 20 --min_weights 40 --opt adam --lr 0.01 --reach 0.75"
for s in 0 1 2; do
  for w in 1 2 3 4; do
    $P target99.py --seed $s --width $w $A --tag snn_w$w --out $O
    $P target99.py --seed $s --width $w $A --twin --tag ann_w$w --out $O
  done
  $P target99.py --seed $s --width 4 --twin --tag ann_w4_sgd_floor_default --out $O   # SGD 0.1, the default floor
done
# the width-3 net dense (no pruning), the same optimizer and epochs
for s in 0 1 2; do
  $P target99.py --seed $s --width 3 --target 0 --epochs 20 --opt adam --lr 0.01 --tag snn_w3_dense --out $O
  $P target99.py --seed $s --width 3 --target 0 --epochs 20 --opt adam --lr 0.01 --twin --tag ann_w3_dense --out $O
done
