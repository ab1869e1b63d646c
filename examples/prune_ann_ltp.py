"""Prune an ordinary network (an ANN) with Learned Threshold Pruning (LTP).

LTP (Azarian et al. 2020) learns one threshold per layer: a weight ``w`` is kept where
``w² > τ``, trained through a sigmoid soft mask; a soft-L0 penalty, ``pruner.regularization()``,
pushes the thresholds up against the task loss. The thresholds are parameters of the model, so
the optimizer is built after the Pruner, with no weight decay on them.

    python examples/prune_ann_ltp.py              # 600 steps on the 8x8 digits
    python examples/prune_ann_ltp.py --steps 2    # a smoke run
"""

import argparse
import itertools

import torch
from torch import nn

from snnprune import Pruner
from snnprune.data import create_dataset, make_loader
from snnprune.reparam import LTP


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="training steps (batches of 64)")
    parser.add_argument("--l0", type=float, default=1.0, help="strength of the soft-L0 penalty")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    train = make_loader(create_dataset("digits", None, "train"), batch_size=64, train=True, seed=0)
    test = make_loader(create_dataset("digits", None, "test"), batch_size=360, train=False)
    net = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(),
                        nn.Linear(128, 10))

    pruner = Pruner(net, LTP(l0=args.l0, temperature=0.1))     # an instance: its options, per layer
    thresholds = list(pruner.parameters())                      # each layer's learnable τ
    weights = [p for p in net.parameters() if all(p is not t for t in thresholds)]
    optimizer = torch.optim.SGD([{"params": weights, "weight_decay": 1e-4},
                                 {"params": thresholds, "weight_decay": 0.0}], lr=0.05, momentum=0.9)

    batches = itertools.chain.from_iterable(itertools.repeat(train))
    for x, y in itertools.islice(batches, args.steps):
        loss = nn.functional.cross_entropy(net(x), y) + pruner.regularization()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pruner.step(optimizer)

    thresholds = pruner.thresholds()                            # absolute τ per layer
    for name, tau in thresholds.items():
        print(f"{name}: threshold on w² {tau:.3g}")
    plain = pruner.finalize()                                   # w where w² > τ, else 0
    with torch.no_grad():
        x, y = next(iter(test))
        acc = (plain(x).argmax(1) == y).float().mean().item()
    zeros = sum(int((m.weight == 0).sum()) for m in plain if isinstance(m, nn.Linear))
    total = sum(m.weight.numel() for m in plain if isinstance(m, nn.Linear))
    result = {"sparsity": zeros / total, "test_acc": acc, "thresholds": thresholds}
    print(f"sparsity {result['sparsity']:.2%}, test accuracy {acc:.2%}")
    return result


if __name__ == "__main__":
    main()
