"""What the engine's reliability checks cost: the per-step non-finite check and the checkpoint
checksum, against a plain training step.

For the digits ANN twin (``sew_digits``, 2x24x24, batch 16) and torchvision ResNet-18 (3x64x64,
batch 16), in one process, one thread, interleaved so that machine noise hits all alike:

* ``step``      — zero_grad, forward, sum, backward, SGD step;
* ``check``     — the engine's per-step check (``_check_step``: the fused L2 norms of every gradient
  and one host sync with the loss);
* ``max-norm``  — the same check by ``ord=inf`` norms (what it is not, for comparison);
* ``checksum``  — :func:`snnprune.runs.checkpoint.content_checksum` of the model's state_dict.

Run:  python bench/reliability.py [--reps 30]
Writes bench/results/reliability.json and bench/results/reliability.md (medians, with the machine).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import time
from pathlib import Path

import torch

from snnprune.engine import trainer
from snnprune.models import create_model
from snnprune.runs.checkpoint import content_checksum

RESULTS = Path(__file__).resolve().parent / "results"


class _Run:  # what _check_step reads of a run
    def __init__(self, model):
        self.model = model
        self.scaler = torch.amp.GradScaler("cuda", enabled=False)


def measure(name, model, shape, reps):
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(16, *shape)
    run = _Run(model)
    total = torch.tensor(1.0)
    grads = lambda: [p.grad for p in model.parameters() if p.grad is not None]  # noqa: E731

    def step():
        opt.zero_grad()
        model(x).sum().backward()
        opt.step()

    variants = {
        "step": step,
        "check": lambda: trainer._check_step(run, total),
        "max-norm": lambda: torch.stack(torch._foreach_norm(grads(), math.inf)).max().item(),
        "checksum": lambda: content_checksum(model.state_dict()),
    }
    step()
    times = {k: [] for k in variants}
    for _ in range(reps):
        for key, fn in variants.items():
            t0 = time.perf_counter()
            fn()
            times[key].append(time.perf_counter() - t0)
    med = {k: statistics.median(v) * 1e3 for k, v in times.items()}
    size = sum(v.numel() * v.element_size() for v in model.state_dict().values()) / 1e6
    return {"model": name, "parameters": sum(p.numel() for p in model.parameters()), "state_mb": round(size, 1),
            **{f"{k}_ms": round(v, 3) for k, v in med.items()},
            "check_pct_of_step": round(100 * med["check"] / med["step"], 2),
            "checksum_gb_per_s": round(size / 1e3 / (med["checksum"] / 1e3), 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    rows = [
        measure("sew_digits (ANN twin)", create_model("sew_digits", twin=True, in_channels=2, input_size=24,
                                                      num_classes=10), (2, 24, 24), args.reps),
        measure("resnet18", create_model("resnet18", num_classes=1000), (3, 64, 64), args.reps),
    ]
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.machine()) if Path("/proc/cpuinfo").exists() else ""
    machine = f"{cpu}, {os.cpu_count()} cores (shared), 1 thread, torch {torch.__version__}"
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "reliability.json").write_text(json.dumps({"machine": machine, "reps": args.reps, "rows": rows},
                                                         indent=2) + "\n")
    keys = list(rows[0])
    lines = [f"machine: {machine}; medians of {args.reps} interleaved rounds", "",
             "| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r[k]) for k in keys) + " |" for r in rows]
    (RESULTS / "reliability.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
