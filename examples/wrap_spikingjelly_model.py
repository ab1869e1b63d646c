"""Wrap your own SpikingJelly network and prune it to a sparsity you ask for.

``SpikingNet`` turns a multi-step SpikingJelly network into a plain classifier: it resets the
neurons at every forward, encodes a static image batch over T time steps and averages the logits
over time. The ``Pruner`` attaches to its conv and linear weights like to any ``nn.Module``;
``target_sparsity`` makes the soft threshold (LATS) end exactly there.

    python examples/wrap_spikingjelly_model.py              # 300 steps on the 8x8 digits
    python examples/wrap_spikingjelly_model.py --steps 2    # a smoke run
"""

import argparse
import itertools

import torch
from spikingjelly.activation_based import layer, neuron, surrogate
from torch import nn

from snnprune import Pruner
from snnprune.data import create_dataset, make_loader
from snnprune.models import SpikingNet


def my_spiking_body() -> nn.Module:
    """Any multi-step SpikingJelly network: here two conv blocks and a readout for 8x8 digits."""

    def spiking():
        return neuron.IFNode(surrogate_function=surrogate.ATan(), detach_reset=True)

    return nn.Sequential(
        layer.Conv2d(1, 16, 3, padding=1, bias=False), layer.BatchNorm2d(16), spiking(),
        layer.Conv2d(16, 32, 3, padding=1, bias=False), layer.BatchNorm2d(32), spiking(),
        layer.MaxPool2d(2), layer.Flatten(), layer.Linear(32 * 4 * 4, 10),
    )


def accuracy(model: nn.Module, loader) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    model.train()
    return hits / len(loader.dataset)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="training steps (batches of 64)")
    parser.add_argument("--sparsity", type=float, default=0.9, help="the sparsity to end at")
    args = parser.parse_args(argv)
    torch.manual_seed(0)

    train = make_loader(create_dataset("digits", None, "train"), batch_size=64, train=True, seed=0)
    test = make_loader(create_dataset("digits", None, "test"), batch_size=256, train=False)

    net = SpikingNet(my_spiking_body(), T=4)      # [N, 1, 8, 8] in, [N, 10] logits out
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    pruner = Pruner(net, "soft_threshold", target_sparsity=args.sparsity, total_steps=args.steps)

    batches = itertools.chain.from_iterable(itertools.repeat(train))
    for x, y in itertools.islice(batches, args.steps):
        loss = nn.functional.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        pruner.step(optimizer)                    # after every optimizer.step()

    reached = pruner.sparsity().pruned            # over the pruned layers: what the target means
    plain = pruner.finalize()                     # plain parameters, zeros baked in
    fresh = SpikingNet(my_spiking_body(), T=4)
    fresh.load_state_dict(plain.state_dict())     # strict: the original architecture's keys
    result = {"sparsity": reached, "test_acc": accuracy(fresh, test)}
    print(f"sparsity {result['sparsity']:.2%}, test accuracy {result['test_acc']:.2%}")
    return result


if __name__ == "__main__":
    main()
