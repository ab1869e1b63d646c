#!/bin/bash
# The digits SNN at 99% through snnprune's own target path (target99.py: Pruner(target_sparsity=0.99, min_weights=K)),
# static scikit-learn digits, 20 epochs, seeds 0-2, one run at a time on one thread (about 40 s each on a quiet core).
# Each line appends one JSON record to runs_target99.jsonl; the table: python target99.py --summary runs_target99.jsonl
# (min_weights 20 is what the Pruner now takes by default for this net at 99%: min(32, 290 // (2 x 7 layers)).)
set -e
cd "$(dirname "$0")"
P=${PYTHON:-python}
O=${OUT:-runs_target99.jsonl}
export OMP_NUM_THREADS=1
$P target99.py --target 0 --tag dense --out $O
for s in 0 1 2; do
  $P target99.py --seed $s --min_weights 0 --tag sgd --out $O                       # the old default: no floor
  $P target99.py --seed $s --min_weights 20 --tag sgd_floor20 --out $O              # the new default
  $P target99.py --seed $s --min_weights 40 --tag sgd_floor40 --out $O
  $P target99.py --seed $s --min_weights 0 --opt adam --lr 0.01 --tag adam --out $O
  $P target99.py --seed $s --min_weights 20 --opt adam --lr 0.01 --tag adam_floor20 --out $O
  $P target99.py --seed $s --min_weights 40 --opt adam --lr 0.01 --tag adam_floor40 --out $O
  # the target reached at 75% of the run, then the mask frozen for sparse fine-tuning
  $P target99.py --seed $s --min_weights 0 --opt adam --lr 0.01 --reach 0.75 --tag adam_reach75 --out $O
  $P target99.py --seed $s --min_weights 20 --opt adam --lr 0.01 --reach 0.75 --tag adam_floor20_reach75 --out $O
  $P target99.py --seed $s --min_weights 40 --opt adam --lr 0.01 --reach 0.75 --tag adam_floor40_reach75 --out $O
  $P target99.py --seed $s --min_weights 40 --opt adam --lr 0.01 --reach 0.5 --tag adam_floor40_reach50 --out $O
  $P target99.py --seed $s --min_weights 20 --opt adam --lr 0.01 --reach 0.75 --hold_threshold \
    --tag adam_floor20_reach75_hold --out $O
  $P target99.py --seed $s --min_weights 20 --opt adam --lr 0.01 --reach 0.75 --epochs 40 \
    --tag adam_floor20_reach75_e40 --out $O
  $P target99.py --seed $s --min_weights 40 --reach 0.75 --tag sgd_floor40_reach75 --out $O
  $P target99.py --seed $s --min_weights 40 --readout_scale 4 --tag sgd_floor40_scale4 --out $O
  $P target99.py --seed $s --min_weights 40 --opt adam --lr 0.01 --reach 0.75 --twin --tag ann_adam_floor40_reach75 --out $O
  # longer runs, and the ANN twin with SGD
  $P target99.py --seed $s --min_weights 40 --opt adam --lr 0.01 --reach 0.75 --epochs 40 \
    --tag adam_floor40_reach75_e40 --out $O
  $P target99.py --seed $s --min_weights 40 --opt adam --lr 0.01 --reach 0.75 --epochs 60 \
    --tag adam_floor40_reach75_e60 --out $O
  $P target99.py --seed $s --min_weights 40 --opt adam --lr 0.01 --reach 0.75 --epochs 40 --twin \
    --tag ann_adam_floor40_reach75_e40 --out $O
  $P target99.py --seed $s --min_weights 20 --twin --tag ann_sgd_floor20 --out $O
  $P target99.py --seed $s --min_weights 0 --reach 0.75 --twin --tag ann_sgd_reach75 --out $O
  $P target99.py --seed $s --min_weights 20 --reach 0.75 --twin --tag ann_sgd_floor20_reach75 --out $O
  $P target99.py --seed $s --min_weights 20 --reach 0.75 --epochs 40 --twin --tag ann_sgd_floor20_reach75_e40 --out $O
done
# seed 0 only
$P target99.py --min_weights 40 --opt adam --lr 0.01 --epochs 40 --tag adam_floor40_e40 --out $O
$P target99.py --min_weights 40 --opt adam --lr 0.01 --twin --tag ann_adam_floor40 --out $O
