"""CPU inference latency of channel-pruned networks against their dense originals, next to the MAC ratio.

Channel pruning only pays if the smaller convolutions run proportionally faster. This measures,
for a share ``s`` of each residual block's *inner* channels removed (the ``bn1``/``conv1`` output of
every basic block; the residual width stays), the median forward latency relative to the dense
model and the MAC ratio (``torch.utils.flop_counter``), on

* torchvision ResNet-18 (the ANN), 3x224x224, batch 4;
* SpikingJelly SEW-ResNet-18 (IF neurons, ADD, multi-step), T=4, 3x112x112, batch 2;

in these variants (each the previous plus one step):

* ``pruned``          — snnprune's surgery (``prune_channels_by_mask``), ``n - round(s n)`` channels kept
  (odd widths at s = 30 %, 70 %);
* ``tp_plain``        — the same cut by Torch-Pruning's own surgery (``DependencyGraph``, one
  ``get_pruning_group(bn1, ...).prune()`` per block; SpikingJelly nets traced single-step, the
  workaround for its multi-step neurons), the reference snnprune's cut must match: the two
  networks are compared tensor by tensor (values, shapes, strides; ``same_as_tp`` in the results);
* ``round8``          — widths rounded up to a multiple of 8 (the vector width CPU conv kernels block by);
* ``round8_fuse``     — batch norms folded into the preceding convs (inference only);
* ``round8_fuse_cl``  — and channels_last memory format;
* ``round8_fuse_compiled`` (with ``--compile``) — ``round8_fuse`` through ``torch.compile``
  (inductor): the spiking neurons' per-step element-wise ops become a few fused C++ loops.

The dense model gets the same treatments (``dense``, ``dense_fuse``, ``dense_fuse_cl``,
``dense_fuse_compiled``); a row's
``lat_ratio`` is against the dense model *with the same treatment* (what pruning buys on top of it),
``vs_dense`` against the plain dense model (what the whole recipe buys). Timings are interleaved
round-robin over all models in one process, so machine load hits all alike; medians are reported.

Run:  python bench/channels.py [--reps 9] [--threads 2] [--quick] [--models ...] [--sparsities ...]
                               [--compile] [--plain-only] [--name channels] [--out bench/results]
Writes <name>.json and <name>.md to --out. Compiling takes minutes per model (about 4 min for the
dense SEW-ResNet-18 on a loaded 2-core machine), so ``--compile`` is best run on a few rows.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
import torchvision
from spikingjelly.activation_based import functional, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet as sj_sew
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights
from torch.utils.flop_counter import FlopCounterMode

from snnprune.channels import prune_channels_by_mask

RESULTS = Path(__file__).resolve().parent / "results"
FULL = {
    "resnet18": {"size": 224, "batch": 4, "T": None},
    "sew_resnet18": {"size": 112, "batch": 2, "T": 4},
    "sparsities": [0.3, 0.5, 0.7],
}
QUICK = {
    "resnet18": {"size": 32, "batch": 1, "T": None},
    "sew_resnet18": {"size": 32, "batch": 1, "T": 2},
    "sparsities": [0.5],
}


def build(model_name: str) -> nn.Module:
    torch.manual_seed(0)
    if model_name == "resnet18":
        net = torchvision.models.resnet18(num_classes=1000)
    else:
        net = sj_sew.sew_resnet18(num_classes=1000, cnf="ADD", spiking_neuron=neuron.IFNode,
                                  surrogate_function=surrogate.ATan(), detach_reset=True)
        functional.set_step_mode(net, "m")
    g = torch.Generator().manual_seed(1)
    for m in net.modules():  # trained-looking BN statistics, so neurons fire
        if isinstance(m, nn.BatchNorm2d):
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.3)
    return net.eval()


def example(model_name: str, cfg: dict, channels_last: bool = False) -> torch.Tensor:
    c = cfg[model_name]
    n = c["batch"] * (c["T"] or 1)
    x = torch.rand(n, 3, c["size"], c["size"])
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x if c["T"] is None else x.view(c["T"], c["batch"], 3, c["size"], c["size"])


def inner_keep(net: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """``bn1 name -> keep mask``: the ``sparsity`` share of smallest-|gamma| channels of every block's ``bn1`` go."""
    keep = {}
    for name, m in net.named_modules():
        if name.startswith("layer") and name.endswith(".bn1"):
            n = m.num_features
            order = m.weight.detach().abs().argsort(descending=True)
            mask = torch.zeros(n, dtype=torch.bool)
            mask[order[: n - round(sparsity * n)]] = True
            keep[name] = mask
    return keep


def _spiking(net: nn.Module) -> bool:
    return any(hasattr(m, "step_mode") for m in net.modules())


def prune_inner(net: nn.Module, sparsity: float, round_to: int | None) -> nn.Module:
    """snnprune's surgery of the inner cut (see :func:`inner_keep`)."""
    probe = torch.rand(1, 1, 3, 32, 32) if _spiking(net) else torch.rand(1, 3, 32, 32)
    net, _ = prune_channels_by_mask(net, probe, inner_keep(net, sparsity), round_to=round_to)
    return net


def tp_plain_inner(net: nn.Module, sparsity: float) -> nn.Module:
    """The same cut by Torch-Pruning alone: its dependency graph and group pruning, nothing else."""
    import torch_pruning as tp

    keep, spiking = inner_keep(net, sparsity), _spiking(net)
    if spiking:  # Torch-Pruning takes a multi-step neuron's loop over time for a channel split
        functional.set_step_mode(net, "s")
    dg = tp.DependencyGraph().build_dependency(net, example_inputs=torch.rand(1, 3, 32, 32))
    modules = dict(net.named_modules())
    for name, mask in keep.items():
        dg.get_pruning_group(modules[name], tp.prune_batchnorm_out_channels, torch.where(~mask)[0].tolist()).prune()
    if spiking:
        functional.set_step_mode(net, "m")
        functional.reset_net(net)
    return net.eval()


def same_tensors(a: nn.Module, b: nn.Module) -> bool:
    """Equal parameters and buffers: names, values, shapes, strides and dtypes."""
    ta, tb = dict(a.state_dict(keep_vars=True)), dict(b.state_dict(keep_vars=True))
    return ta.keys() == tb.keys() and all(
        x.shape == y.shape and x.stride() == y.stride() and x.dtype == y.dtype and torch.equal(x, y)
        for x, y in ((ta[k], tb[k]) for k in ta))


def fuse_bn(net: nn.Module) -> nn.Module:
    """Fold every BN into the conv right before it (``convX``/``bnX`` siblings, ``downsample.0``/``.1``)."""
    for parent in list(net.modules()):
        children = dict(parent.named_children())
        for name, bn in children.items():
            if not isinstance(bn, nn.BatchNorm2d):
                continue
            if name.startswith("bn"):
                conv = children.get(name.replace("bn", "conv"))
            else:
                conv = children.get(str(int(name) - 1)) if name.isdigit() else None
            if not isinstance(conv, nn.Conv2d):
                continue
            w, b = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps,
                                        bn.weight, bn.bias)
            conv.weight, conv.bias = w, b
            setattr(parent, name, nn.Identity())
    return net


def elementwise(net: nn.Module, x: torch.Tensor) -> int:
    """Elements written by the layers that are not convolutions or linears (batch norm, ReLU or
    spiking neurons, pooling): work that falls with the cut only where the cut layer's own outputs
    narrow. Functional ops (a residual ``+``) are not modules and not counted."""
    count, handles = [0], []
    for m in net.modules():
        if not list(m.children()) and not isinstance(m, (nn.Conv2d, nn.Linear)):
            handles.append(m.register_forward_hook(
                lambda mod, i, o: count.__setitem__(0, count[0] + (o[0] if isinstance(o, tuple) else o).numel())))
    with torch.no_grad():
        functional.reset_net(net)
        net(x)
        functional.reset_net(net)
    for h in handles:
        h.remove()
    return count[0]


def macs(net: nn.Module, x: torch.Tensor) -> float:
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        functional.reset_net(net)
        net(x)
    return counter.get_total_flops() / 2


def make_models(model_name: str, sparsities: list[float], compile: bool = False,
                plain_only: bool = False) -> dict[tuple[float, str], nn.Module]:
    dense = build(model_name)
    models = {(0.0, "dense"): dense}
    for s in sparsities:
        models[(s, "pruned")] = prune_inner(build(model_name), s, None)
        models[(s, "tp_plain")] = tp_plain_inner(build(model_name), s)
    if plain_only:
        return models
    models[(0.0, "dense_fuse")] = fuse_bn(copy.deepcopy(dense))
    models[(0.0, "dense_fuse_cl")] = fuse_bn(copy.deepcopy(dense)).to(memory_format=torch.channels_last)
    if compile:
        models[(0.0, "dense_fuse_compiled")] = torch.compile(fuse_bn(copy.deepcopy(dense)))
    for s in sparsities:
        rounded = prune_inner(build(model_name), s, 8)
        models[(s, "round8")] = rounded
        models[(s, "round8_fuse")] = fuse_bn(copy.deepcopy(rounded))
        models[(s, "round8_fuse_cl")] = fuse_bn(copy.deepcopy(rounded)).to(memory_format=torch.channels_last)
        if compile:
            models[(s, "round8_fuse_compiled")] = torch.compile(fuse_bn(copy.deepcopy(rounded)))
    return models


BASELINE = {"pruned": "dense", "tp_plain": "dense", "round8": "dense", "round8_fuse": "dense_fuse",
            "round8_fuse_cl": "dense_fuse_cl", "round8_fuse_compiled": "dense_fuse_compiled"}


def _plain(net: nn.Module) -> nn.Module:
    """The module under a ``torch.compile`` wrapper (counting and naming go through it)."""
    return getattr(net, "_orig_mod", net)


def measure(model_name: str, cfg: dict, reps: int, compile: bool = False, plain_only: bool = False) -> list[dict]:
    models = make_models(model_name, cfg["sparsities"], compile, plain_only)
    inputs = {False: example(model_name, cfg), True: example(model_name, cfg, channels_last=True)}
    times: dict[tuple[float, str], list[float]] = {k: [] for k in models}
    cpu: dict[tuple[float, str], list[float]] = {k: [] for k in models}
    with torch.no_grad():
        for rep in range(reps + 1):  # the first round warms up
            for key, net in models.items():
                x = inputs[key[1].endswith("_cl")]
                functional.reset_net(net)
                t0, c0 = time.perf_counter(), time.process_time()
                net(x)
                elapsed, used = time.perf_counter() - t0, time.process_time() - c0
                if rep:
                    times[key].append(elapsed)
                    cpu[key].append(used)
    median = {k: statistics.median(v) for k, v in times.items()}
    cpu_median = {k: statistics.median(v) for k, v in cpu.items()}
    if compile:  # a compiled model computes what its plain module computes
        for key, net in models.items():
            if net is not _plain(net):
                x = inputs[False]
                with torch.no_grad():
                    functional.reset_net(net)
                    a = net(x)
                    functional.reset_net(net)
                    b = _plain(net)(x)
                assert torch.allclose(a, b, atol=1e-4), key
    models = {k: _plain(net) for k, net in models.items()}
    mac = {k: macs(net, inputs[False]) for k, net in models.items()}
    elems = {k: elementwise(net, inputs[False]) for k, net in models.items()}
    rows = []
    for (s, variant), net in models.items():
        base = (0.0, BASELINE.get(variant, variant))
        inner = [m.out_channels for n, m in net.named_modules() if n == "layer4.1.conv1"]
        rows.append({
            "model": model_name, "sparsity": s, "variant": variant,
            "layer4_inner_width": inner[0],
            "params": sum(p.numel() for p in net.parameters()),
            "macs": mac[(s, variant)], "mac_ratio": mac[(s, variant)] / mac[(0.0, "dense")],
            "elementwise_ratio": elems[(s, variant)] / elems[(0.0, "dense")],
            "latency_ms": 1e3 * median[(s, variant)],
            "lat_ratio": median[(s, variant)] / median[base],
            "cpu_ms": 1e3 * cpu_median[(s, variant)],
            "cpu_ratio": cpu_median[(s, variant)] / cpu_median[base],
            "vs_dense": median[(s, variant)] / median[(0.0, "dense")],
            "baseline": base[1],
            "same_as_tp": same_tensors(net, models[(s, "tp_plain")]) if variant == "pruned" else None,
        })
    for r in rows:
        r["gap"] = r["lat_ratio"] / r["mac_ratio"] if r["variant"] in BASELINE else None
        r["cpu_gap"] = r["cpu_ratio"] / r["mac_ratio"] if r["variant"] in BASELINE else None
    return rows


def op_times(model_name: str, cfg: dict, sparsity: float, reps: int) -> list[dict]:
    """Self CPU time per aten op (torch.profiler, ``reps`` forwards after one warm-up) of the dense
    and the pruned model: which ops fall with the cut and which do not."""
    from torch.profiler import ProfilerActivity, profile

    x = example(model_name, cfg)
    rows = []
    for variant, net in (("dense", build(model_name)), ("pruned", prune_inner(build(model_name), sparsity, None))):
        with torch.no_grad():
            functional.reset_net(net)
            net(x)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                for _ in range(reps):
                    functional.reset_net(net)
                    net(x)
        for event in prof.key_averages():
            rows.append({"model": model_name, "variant": variant, "op": event.key,
                         "ms": event.self_cpu_time_total / 1e3 / reps})
    return rows


def write_profile(rows: list[dict], meta: dict, out: Path, name: str) -> None:
    """Per model, the ops taking the most time in the dense model, dense vs pruned milliseconds."""
    lines = [f"# Where the pruned model's time goes (self CPU time per op, {meta['threads']} thread(s))", "",
             f"Command: `{meta['command']}`  ", f"Machine: {meta['machine']}; torch {meta['torch']}.", "",
             "| model | op | dense (ms) | pruned (ms) | pruned / dense |", "|---|---|---|---|---|"]
    for model in dict.fromkeys(r["model"] for r in rows):
        ms = {(r["variant"], r["op"]): r["ms"] for r in rows if r["model"] == model}
        ops = sorted({op for _, op in ms}, key=lambda op: -ms.get(("dense", op), 0.0))[:10]
        total = {v: sum(t for (k, _), t in ms.items() if k == v) for v in ("dense", "pruned")}
        for op in ops + ["(all ops)"]:
            d, p = (total[v] if op == "(all ops)" else ms.get((v, op), 0.0) for v in ("dense", "pruned"))
            ratio = f"{p / d:.2f}" if d else ""
            lines.append(f"| {model} | {op} | {d:.1f} | {p:.1f} | {ratio} |")
    (out / f"{name}_profile.md").write_text("\n".join(lines) + "\n")
    (out / f"{name}_profile.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")


def write(rows: list[dict], meta: dict, out: Path, name: str = "channels") -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = [
        "# Channel-pruned vs dense latency (CPU, forward, eval)",
        "",
        f"Command: `{meta['command']}`  ",
        f"Machine: {meta['machine']}; torch {meta['torch']}, {meta['threads']} thread(s), "
        f"{meta['reps']} interleaved reps, medians.  ",
        f"Status: {meta['status']}",
        "",
        "`lat_ratio` = latency / the dense model with the same treatment; `gap` = lat_ratio / mac_ratio "
        "(1.00 = latency falls exactly as MACs); `vs_dense` = latency / plain dense. `CPU gap`: the same "
        "gap from the process's CPU time of each forward (with one thread, the latency without the "
        "time the process waited for a CPU, so less sensitive to a busy machine).",
        "",
        "`elementwise ratio`: elements written by the non-conv, non-linear layers (BN, ReLU or neurons, "
        "pooling), against the dense model.",
        "",
        "| model | inner sparsity | variant | layer4 inner width | params (M) | MAC ratio | elementwise ratio "
        "| latency (ms) "
        "| lat_ratio | gap | vs_dense | CPU ms | CPU gap | same tensors as tp_plain |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        gap = f"{r['gap']:.2f}" if r["gap"] is not None else ""
        cpu_gap = f"{r['cpu_gap']:.2f}" if r["cpu_gap"] is not None else ""
        lines.append(
            f"| {r['model']} | {r['sparsity']:.0%} | {r['variant']} | {r['layer4_inner_width']} "
            f"| {r['params'] / 1e6:.2f} "
            f"| {r['mac_ratio']:.3f} | {r['elementwise_ratio']:.3f} "
            f"| {r['latency_ms']:.1f} | {r['lat_ratio']:.3f} | {gap} | {r['vs_dense']:.3f} "
            f"| {r['cpu_ms']:.1f} | {cpu_gap} "
            f"| {'' if r.get('same_as_tp') is None else ('yes' if r['same_as_tp'] else 'NO')} |"
        )
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--quick", action="store_true", help="tiny inputs, one sparsity, two reps (a smoke test)")
    parser.add_argument("--models", nargs="+", default=["resnet18", "sew_resnet18"])
    parser.add_argument("--sparsities", nargs="+", type=float, default=None, help="default 0.3 0.5 0.7")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variants")
    parser.add_argument("--plain-only", action="store_true", help="only dense, pruned and tp_plain")
    parser.add_argument("--profile", action="store_true",
                        help="also write <name>_profile.md: time per op, dense vs pruned at the first sparsity")
    parser.add_argument("--name", default="channels", help="the results' file name, without extension")
    parser.add_argument("--status", default="preliminary (measured on a busy shared machine)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    cfg, reps = (QUICK, 2) if args.quick else (FULL, args.reps)
    if args.sparsities:
        cfg = {**cfg, "sparsities": args.sparsities}
    try:
        rows = [r for name in args.models for r in measure(name, cfg, reps, args.compile, args.plain_only)]
        ops = [r for name in args.models for r in op_times(name, cfg, cfg["sparsities"][0], max(1, reps // 4))] \
            if args.profile else []
    finally:
        torch.set_num_threads(threads)
    meta = {
        "command": "python bench/channels.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
        "torch": torch.__version__, "threads": args.threads, "reps": reps, "status": args.status,
        "sizes": {k: v for k, v in cfg.items() if k in args.models},
    }
    write(rows, meta, args.out, args.name)
    if ops:
        write_profile(ops, meta, args.out, args.name)
    return rows


if __name__ == "__main__":
    main()
