"""Pruner states written by snnprune at d9b6bc3 (before the Pruner was split by control regime).

Run at that commit from the repository root: python tests/data/make_pruner_state_d9b6bc3.py
(tests/test_pruner.py replays the same cases on the current code)."""
import torch
from torch import nn

from snnprune import Pruner
from snnprune.schedules import LATS, Cubic


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))

def data():
    g = torch.Generator().manual_seed(3)
    return [torch.randn(16, 8, generator=g) for _ in range(12)]

CASES = {
    "lats_lambda": dict(method="soft_threshold", schedule=lambda: LATS(l1=0.2)),
    "lats_d": dict(method="soft_threshold", schedule=lambda: LATS(final=0.1, lr=[0.1] * 12), total_steps=12),
    "target_soft": dict(method="soft_threshold", target_sparsity=0.8, total_steps=12),
    "target_soft_layer": dict(method="soft_threshold", target_sparsity=0.8, total_steps=12, scope="layer"),
    "gmp": dict(method="gmp", schedule=lambda: Cubic(final=0.8, end=12, every=2)),
    "magnitude": dict(method="magnitude"),
    "ltp_target": dict(method="ltp", target_sparsity=0.8, total_steps=12),
    "str_target": dict(method="str", target_sparsity=0.8, total_steps=12, method_kwargs={"s_init": -5.0}),
}

def build(case):
    spec = dict(CASES[case])
    model = mlp()
    method = spec.pop("method")
    sched = spec.pop("schedule", None)
    pruner = Pruner(model, method, sched() if sched else None, **spec)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    return model, pruner, opt

def run(model, pruner, opt, xs):
    for x in xs:
        opt.zero_grad()
        loss = model(x).pow(2).mean()
        if pruner.has_regularization:
            loss = loss + pruner.regularization()
        loss.backward()
        opt.step()
        pruner.step(opt)

if __name__ == "__main__":
    out = {}
    for case in CASES:
        model, pruner, opt = build(case)
        xs = data()
        if case == "magnitude":
            pruner.prune_to(0.6)
        run(model, pruner, opt, xs[:6])
        saved = {"model": {k: v.clone() for k, v in model.state_dict().items()},
                 "optimizer": opt.state_dict(), "pruner": pruner.state_dict()}
        run(model, pruner, opt, xs[6:])
        saved["after"] = {"steps": pruner.steps, "threshold": pruner.threshold,
                          "sparsity": pruner.sparsity().pruned,
                          "masks": {k: v.clone() for k, v in pruner.masks().items()}}
        out[case] = saved
    torch.save(out, "tests/data/pruner_state_d9b6bc3.pt")
    back = torch.load("tests/data/pruner_state_d9b6bc3.pt", weights_only=True)
    for k, v in back.items():
        print(k, v["pruner"], v["after"]["steps"], v["after"]["threshold"], v["after"]["sparsity"])
