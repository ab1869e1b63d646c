"""How close the snnTorch, Norse and SpikingJelly readings of an exported NIR graph come to the source net.

For each net (pruned to 50 % and with batch-norm statistics that make every layer fire), the graph
written by ``snnprune.export.export_nir`` is read back by each importer, run one time step a call,
and compared with the source's multi-step body:

* ``spikes``: the share of the source's spike values (every neuron, every step) the import
  reproduces, over the neurons it names like the source (its node names are the layers');
* ``output``: the largest difference of the per-step outputs (the classifier's currents).

Nets: ``sew_digits`` as the ``digits_snn_*`` recipes build it (2x24x24 event frames, T=4, IF,
SEW ADD blocks, max pooling); ``sew_resnet18`` (T=2, 32x32); ``chain`` (conv-IF, a SEW ADD block
without downsample, conv-BN-IF, max pooling, linear-IF: no branch that rejoins except a skip).
Graph forms: ``IF`` (the default) and ``LIF`` (``if_node="LIF"``, for snnTorch).

Run:  python bench/nir_importers.py [--quick] [--out bench/results]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import platform
import sys
import tempfile
import warnings
from pathlib import Path

import nir
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from snnprune.export import export_nir
from snnprune.models import create_model

RESULTS = Path(__file__).resolve().parent / "results"


def _firing(net: nn.Module, seed: int = 0) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.5)
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            with torch.no_grad():
                m.weight.mul_(torch.rand(m.weight.shape, generator=g) < 0.5)  # half the weights pruned
    return net.eval()


def nets(quick: bool):
    from snnprune.models.sew_small import SEWBlock

    torch.manual_seed(0)
    digits = _firing(create_model("sew_digits", in_channels=2, input_size=24, T=4))
    out = {"sew_digits": (digits.body, digits.encode(torch.randint(0, 3, (4, 1, 2, 24, 24)).float()))}
    chain = nn.Sequential(layer.Conv2d(2, 8, 3, padding=1), neuron.IFNode(), SEWBlock(8, "if"),
                          layer.Conv2d(8, 8, 3, padding=1), layer.BatchNorm2d(8), neuron.IFNode(),
                          layer.MaxPool2d(2), layer.Flatten(), layer.Linear(8 * 4 * 4, 5), neuron.IFNode())
    functional.set_step_mode(chain, "m")
    out["chain"] = (_firing(chain), (torch.rand(6, 1, 2, 8, 8) > 0.6).float())
    if not quick:
        r18 = _firing(create_model("sew_resnet18", num_classes=10, T=2))
        out["sew_resnet18"] = (r18.body, r18.encode(torch.rand(1, 3, 32, 32)))
    return out


def _hooked_run(module: nn.Module, frames: torch.Tensor, names, stateful: bool):
    """Per-step outputs and ``name -> spikes`` of ``module`` (source: one multi-step call)."""
    spikes = {k: [] for k in names}
    handles = []
    for k in names:
        try:  # torch.fx names the layer "1" of a Sequential "_1"
            sub = module.get_submodule(k)
        except AttributeError:
            try:
                sub = module.get_submodule("_" + k)
            except AttributeError:
                continue

        def hook(m, i, o, k=k):
            spikes[k].append((o[0] if isinstance(o, tuple) else o).detach().clone())

        handles.append(sub.register_forward_hook(hook))
    with torch.no_grad():
        if not stateful:
            functional.reset_net(module)
            out = module(frames)
            functional.reset_net(module)
        else:
            outs, state = [], None
            for x_t in frames:
                o, state = module(x_t, state)
                # Norse's executor returns the node it ran last; its state keeps the output node's value
                cache = getattr(state, "cache", None)
                outs.append(cache["output"] if cache is not None and "output" in cache else o)
            out = torch.stack(outs)
    for h in handles:
        h.remove()
    return out, {k: torch.cat([s.reshape(-1) for s in v]) for k, v in spikes.items() if v}


def compare(body: nn.Module, frames: torch.Tensor, form: str, reader: str, path: Path) -> dict:
    names = [n.replace(".", "_") for n, m in body.named_modules() if isinstance(m, neuron.BaseNode)]
    source_names = {n.replace(".", "_"): n for n, m in body.named_modules() if isinstance(m, neuron.BaseNode)}
    want, source = _hooked_run(body, frames, list(source_names.values()), stateful=False)
    source = {k.replace(".", "_"): v for k, v in source.items()}
    export_nir(body, frames, path, if_node=form)
    graph = nir.read(str(path))
    row = {"form": form, "reader": reader}
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # snnTorch prints notes
            if reader == "spikingjelly":
                from spikingjelly.activation_based.nir_exchange import import_from_nir

                module = import_from_nir(graph)
            elif reader == "snntorch":
                from snntorch.import_nir import import_from_nir

                module = import_from_nir(graph)
            else:
                import norse.torch

                module = norse.torch.from_nir(graph, dt=1e-4)
            got, spikes = _hooked_run(module, frames, names, stateful=True)
    except Exception as exc:  # what the importer does with this graph is the measurement
        text = str(exc).strip().splitlines()
        row["error"] = f"{type(exc).__name__}: {text[0] if text else ''}"
        return row
    total = sum(s.numel() for k, s in source.items() if k in spikes and spikes[k].numel() == s.numel())
    same = sum(int((spikes[k] == s).sum()) for k, s in source.items() if k in spikes and spikes[k].numel() == s.numel())
    row["spikes"] = same / total if total else None
    row["neurons_compared"] = f"{sum(1 for k in source if k in spikes)}/{len(source)}"
    row["output"] = (got.reshape(want.shape) - want).abs().max().item() if got.numel() == want.numel() else \
        f"shape {tuple(got.shape)} (the source's {tuple(want.shape)})"
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="sew_digits and chain only")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (body, frames) in nets(args.quick).items():
            for form, reader in (("IF", "spikingjelly"), ("IF", "norse"), ("IF", "snntorch"),
                                 ("LIF", "snntorch"), ("LIF", "spikingjelly")):
                row = {"net": name, **compare(body, frames, form, reader, Path(tmp) / f"{name}.nir")}
                rows.append(row)
                print(json.dumps(row), file=sys.stderr)
    meta = {"command": "python bench/nir_importers.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {platform.platform()}",
            "torch": torch.__version__}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "nir_importers.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1) + "\n")
    lines = ["# NIR importers against the source net", "", f"Command: `{meta['command']}`  ",
             f"Machine: {meta['machine']}; torch {meta['torch']}.", "",
             "`spikes`: share of the source's spike values (all neurons, all steps) reproduced; "
             "`output`: largest difference of the per-step classifier outputs.", "",
             "| net | graph form | reader | spikes | neurons compared | output | error |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        spikes = f"{r['spikes']:.4f}" if isinstance(r.get("spikes"), float) else ""
        output = f"{r['output']:.2g}" if isinstance(r.get("output"), float) else r.get("output", "")
        lines.append(f"| {r['net']} | {r['form']} | {r['reader']} | {spikes} | {r.get('neurons_compared', '')} "
                     f"| {output} | {r.get('error', '')} |")
    (args.out / "nir_importers.md").write_text("\n".join(lines) + "\n")
    return rows


if __name__ == "__main__":
    main()
