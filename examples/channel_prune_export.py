"""Channel-prune a spiking network (it physically shrinks) and export it: ONNX, a sparse file, reload.

The flow of Optimal Thresholding (Ye et al. 2020): train with an L1 penalty on the batch-norm
scales (``BNSparsity``, a proximal step after each optimizer step), cut the channels whose scales
are small (``prune_channels``: convs, batch norms and linears lose them, coupled channels of
residual blocks go together), fine-tune the smaller network, then export. The ``ChannelSpec``
saved with the weights rebuilds the shrunk architecture from the original one.

    python examples/channel_prune_export.py                                 # 600 + 200 steps
    python examples/channel_prune_export.py --steps 2 --criterion slimming  # a smoke run that cuts

ONNX export needs the ``export`` extra: ``pip install -e '.[export]'``.
"""

import argparse
import itertools
from pathlib import Path

import torch
from torch import nn

from snnprune.channels import BNSparsity, ChannelSpec, prune_channels
from snnprune.data import create_dataset, first_samples, make_loader
from snnprune.export import export_onnx, export_sparse
from snnprune.models import create_model


def train(model: nn.Module, loader, steps: int, bn: BNSparsity | None = None) -> None:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)   # new parameters: new optimizer
    for x, y in itertools.islice(itertools.chain.from_iterable(itertools.repeat(loader)), steps):
        loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if bn is not None:
            bn.step(optimizer)                                                 # L1 on every BN scale


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="sparsity-training steps; a third as many fine-tune")
    parser.add_argument("--criterion", choices=("optimal", "slimming"), default="optimal")
    parser.add_argument("--out", type=Path, default=Path("runs/examples/channels"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    loader = make_loader(create_dataset("digits", None, "train"), batch_size=64, train=True, seed=0)
    example = first_samples(create_dataset("digits", None, "test"), 8)       # [8, 1, 8, 8]

    model = create_model("sew_digits", T=4)                                  # SEW blocks, IF neurons
    before = sum(p.numel() for p in model.parameters())
    train(model, loader, args.steps, BNSparsity(model, l1=0.15))
    options = {"delta": 1e-3} if args.criterion == "optimal" else {"percent": 0.4}
    model, spec = prune_channels(model, example, args.criterion, **options)  # in place; returns the spec
    after = sum(p.numel() for p in model.parameters())
    train(model, loader, max(args.steps // 3, 1))                            # fine-tune, no penalty

    torch.save({"model": model.state_dict(), "channels": spec.to_state()}, args.out / "pruned.pt")
    saved = torch.load(args.out / "pruned.pt", weights_only=True)
    fresh = ChannelSpec.from_state(saved["channels"]).apply(create_model("sew_digits", T=4))
    fresh.load_state_dict(saved["model"])                                    # strict
    onnx_path = export_onnx(fresh, example, args.out / "sew_digits.onnx")   # checked by onnxruntime
    info = export_sparse(fresh, args.out / "sew_digits.sparse.pt")
    print(f"parameters {before} -> {after}; {onnx_path}; sparse file {info.size_bytes} bytes")
    return {"params_before": before, "params_after": after, "onnx": onnx_path, "fresh": fresh, "model": model,
            "example": example}


if __name__ == "__main__":
    main()
