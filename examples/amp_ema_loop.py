"""Prune inside a plain training loop with mixed precision (AMP), gradient accumulation and an EMA
of the weights.

The rules: ``pruner.step`` goes right after each real ``optimizer.step()`` (once per accumulated
step, not per micro-batch), and with a ``GradScaler`` it is told the scaler, so that a step the
scaler skips does not move the threshold. The EMA is ``torch.optim.swa_utils.AveragedModel`` with
``use_buffers=True``: the threshold is a buffer, averaged with the weights, so the EMA's own
threshold lags the live one. At the end the EMA copy is given the live model's masks
(``pruner.apply_masks``, by layer name) and finalized (``snnprune.bake``), so it is exactly as
sparse as the model that was pruned. On the CPU autocast runs in bfloat16 and needs no scaler; on CUDA float16 and a
``GradScaler``.

    python examples/amp_ema_loop.py              # 150 optimizer steps on the 8x8 digits
    python examples/amp_ema_loop.py --steps 2    # a smoke run
"""

import argparse
import copy
import itertools

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

import snnprune
from snnprune import Pruner
from snnprune.data import create_dataset, make_loader
from snnprune.models import create_model


def accuracy(model: nn.Module, loader) -> float:
    model.eval()
    with torch.no_grad():
        hits = sum((model(x).argmax(1) == y).sum().item() for x, y in loader)
    return hits / len(loader.dataset)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=150, help="optimizer steps")
    parser.add_argument("--accumulate", type=int, default=2, help="micro-batches per optimizer step")
    parser.add_argument("--ema-decay", type=float, default=0.95, help="weight of the average at each update")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    amp_dtype = torch.float16 if device == "cuda" else torch.bfloat16
    train = make_loader(create_dataset("digits", None, "train"), batch_size=32, train=True, seed=0)
    test = make_loader(create_dataset("digits", None, "test"), batch_size=360, train=False)

    net = create_model("sew_digits", T=4).to(device)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps)
    pruner = Pruner(net, "soft_threshold", target_sparsity=0.8, total_steps=args.steps)
    scaler = torch.amp.GradScaler("cuda") if device == "cuda" else None      # float16 needs one
    ema = AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(args.ema_decay), use_buffers=True)

    micro_batches = itertools.chain.from_iterable(itertools.repeat(train))
    for _ in range(args.steps):
        optimizer.zero_grad()
        for x, y in itertools.islice(micro_batches, args.accumulate):
            with torch.autocast(device, dtype=amp_dtype):
                loss = nn.functional.cross_entropy(net(x.to(device)), y.to(device)) / args.accumulate
            (scaler.scale(loss) if scaler else loss).backward()
        if scaler:
            scaler.step(optimizer)
            pruner.step(optimizer, scaler=scaler)    # a step the scaler skipped does not count
            scaler.update()
        else:
            optimizer.step()
            pruner.step(optimizer)
        scheduler.step()                             # after pruner.step: it reads the LR the step used
        ema.update_parameters(net)

    live = pruner.sparsity().total
    # the live masks on a copy of the EMA (as sparse as the live model), then finalized
    ema_plain = snnprune.bake(pruner.apply_masks(copy.deepcopy(ema.module))).cpu()
    result = {"sparsity": live, "ema_sparsity": snnprune.sparsity(ema_plain).total,
              "test_acc": accuracy(net.cpu(), test), "ema_test_acc": accuracy(ema_plain, test)}
    print(f"live model: sparsity {live:.2%}, test accuracy {result['test_acc']:.2%}")
    print(f"EMA model:  sparsity {result['ema_sparsity']:.2%}, test accuracy {result['ema_test_acc']:.2%}")
    return result


if __name__ == "__main__":
    main()
