#!/bin/bash
# Reproduce the final claims of REPORT.md (seeds 0-2, sew_digits on scikit-learn digits, exactly 99.00% sparsity
# over all 29072 conv/linear weights). One run at a time, torch threads = 1 (set in lab.py).
# Each line prints one JSON record and appends it to runs_repro.jsonl; summarise with:
#   python3 tables.py --seeds runs_repro.jsonl ; python3 tables.py runs_repro.jsonl
set -e
cd "$(dirname "$0")"
P=${PYTHON:-python}
O=runs_repro.jsonl
# hitting the target: feedback controller on λ (cubic ramp to 99% at 75% of training), exact projection at epoch 15,
# then 5 epochs sparse fine-tuning with the mask frozen
CTRL="--schedule ctrl --ctrl_end 0.75 --freeze_epoch 15 --project --target 0.99"
FLOOR="--floor_first 40 --floor_last 40"
for s in 0 1 2; do
  # 1. plain global-threshold LATS, SGD (the failure): ANN and SNN
  $P lab.py $CTRL --twin --seed $s --save ann99_seed$s.pt --tag ann_ctrl_sgd_s$s --out $O
  $P lab.py $CTRL --seed $s --tag snn_ctrl_sgd_s$s --out $O
  # 2. best SNN path: the ANN twin's 99% mask + weights, SNN fine-tuned with the mask fixed (20 epochs SGD 0.1)
  $P lab.py --init_from ann99_seed$s.pt --fixed_mask --schedule none --seed $s --tag snn_from_ann99_s$s --out $O
  # 3. SNN pruned directly: floors on stem/readout (counted in the budget) + Adam lr 1e-2
  $P lab.py $CTRL $FLOOR --opt adam --lr 0.01 --seed $s --tag snn_floor_adam_s$s --out $O
  $P lab.py $CTRL $FLOOR --seed $s --tag snn_floor_sgd_s$s --out $O
  $P lab.py $CTRL $FLOOR --twin --seed $s --tag ann_floor_sgd_s$s --out $O
done
# plain LATS D-form (no target), seed 0, for the sparsity/accuracy curve
for D in 0.5 2.0 4.0; do $P lab.py --D $D --tag snn_D$D --out $O; $P lab.py --twin --D $D --tag ann_D$D --out $O; done
for s in 1 2; do $P lab.py --D 2.0 --seed $s --tag snn_D2.0_s$s --out $O; $P lab.py --twin --D 2.0 --seed $s --tag ann_D2.0_s$s --out $O; done
