"""Compare a spiking network with its ANN twin: the same layers, the same pruning, what each costs.

``ann_twin`` copies an SNN and replaces every spiking neuron by a ReLU: identical conv, linear and
batch-norm weights, no time dimension. Both are trained the same way and pruned to the same
sparsity; ``count_ops`` then counts synaptic operations (SOPs: one accumulate per input spike and
non-zero synapse) for the SNN and multiply-accumulates (MACs) for the twin, and ``energy`` prices
them on a 45 nm table (0.9 pJ per accumulate, 4.6 pJ per MAC).

    python examples/snn_vs_twin.py              # 300 steps each on the 8x8 digits
    python examples/snn_vs_twin.py --steps 2    # a smoke run
"""

import argparse
import itertools

import torch
from torch import nn

from snnprune import Pruner
from snnprune.data import create_dataset, first_samples, make_loader
from snnprune.metrics import count_ops, energy
from snnprune.models import ann_twin, create_model


def train_pruned(model: nn.Module, loader, steps: int, sparsity: float) -> nn.Module:
    """Train ``model`` with LATS ending at ``sparsity``; return the plain pruned model."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    pruner = Pruner(model, "soft_threshold", target_sparsity=sparsity, total_steps=steps)
    for x, y in itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pruner.step(optimizer)
    return pruner.finalize()


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps of each net (batches of 64)")
    parser.add_argument("--sparsity", type=float, default=0.8)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    test_set = create_dataset("digits", None, "test")
    test = make_loader(test_set, batch_size=360, train=False)
    held_out = first_samples(test_set, 32)                 # the batch the operations are counted on

    snn = create_model("sew_digits", T=4)                 # a SpikingNet: IF neurons, direct coding
    twin = ann_twin(snn)                                   # same weights, ReLU instead of spikes
    rows = {}
    for label, model in (("SNN", snn), ("ANN twin", twin)):
        torch.manual_seed(1)                               # the same batches for both
        train = make_loader(create_dataset("digits", None, "train"), batch_size=64, train=True, seed=0)
        plain = train_pruned(model, train, args.steps, args.sparsity).eval()
        with torch.no_grad():
            x, y = next(iter(test))
            acc = (plain(x).argmax(1) == y).float().mean().item()
        ops = count_ops(plain, held_out)
        rows[label] = {"test_acc": acc, "sops": ops.sops / ops.batch_size, "macs": ops.macs / ops.batch_size,
                       "energy_pj": energy(ops).total_pj / ops.batch_size}

    print(f"{'':10} {'test acc':>9} {'SOPs':>10} {'MACs':>10} {'energy (pJ)':>12}   per sample")
    for label, r in rows.items():
        print(f"{label:10} {r['test_acc']:9.2%} {r['sops']:10.3g} {r['macs']:10.3g} {r['energy_pj']:12.3g}")
    ratio = rows["ANN twin"]["energy_pj"] / rows["SNN"]["energy_pj"]
    print(f"the twin spends {ratio:.1f}x the SNN's energy at {args.sparsity:.0%} sparsity")
    return rows


if __name__ == "__main__":
    main()
