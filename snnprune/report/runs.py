"""``snnprune report`` and ``snnprune compare``: what a trained run costs, and runs side by side.

Operations are counted with :func:`snnprune.metrics.count_ops` on a held-out batch of the run's
own test data (the first ``batch`` samples; a random sample of the data's shape when the data is
not on this machine, said in the result): SOPs for a spiking net (input events times the
non-zero synapses they reach), MACs for an ANN (non-zero weights times output positions), energy
from the 45 nm table by default.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from .plots import plot_compare

__all__ = ["run_report", "layer_targets", "compare_runs", "sops_split", "report_table", "compare_table",
           "plot_compare", "to_markdown"]


def _held_out(recipe, model_kwargs: dict, batch: int) -> tuple[torch.Tensor, str]:
    from ..build import build_datasets
    from ..data import DatasetNotFoundError
    from ..export.run import example_input

    try:
        _, test_set, info = build_datasets(recipe)
        xs = [test_set[i][0] for i in range(min(batch, len(test_set)))]
        x = torch.stack([torch.as_tensor(v) for v in xs], 1 if info.events else 0)
        return x.float(), f"first {len(xs)} test samples"
    except (DatasetNotFoundError, OSError, ValueError):
        return example_input(recipe, model_kwargs), "a random sample shaped like the data (data not found)"


def layer_targets(recipe, model: torch.nn.Module) -> dict[str, float]:
    """The sparsity each pruned layer of ``model`` was to reach under the recipe's target and
    ``pruning.allocation`` (``{}`` without a target, or where one ranking over all layers decided)."""
    from ..allocation import effective_allocation, layer_sparsities
    from ..selection import select_tensors

    p = recipe.pruning
    target = getattr(p, "target_sparsity", None)
    if target is None or not hasattr(p, "include"):
        return {}
    selected = select_tensors(model, p.include, p.exclude, p.keep_first, p.keep_last)
    names = [name for name, _, _ in selected]
    split = layer_sparsities(effective_allocation(getattr(p, "allocation", None), p.scope), target,
                             [tuple(getattr(m, t).shape) for _, m, t in selected], names)
    return {} if split is None else dict(zip(names, split))


def run_report(path: str | Path, *, batch: int = 32, table: str = "45nm") -> dict:
    """Per-layer and summary measurements of the model at ``path`` (a run folder or a file)."""
    from ..metrics import count_ops, energy, sparsity
    from ..runs import load_run_model

    model, info = load_run_model(path)
    recipe = info["recipe"]
    if recipe is None:
        raise ValueError(f"{path}: no recipe saved with the run, so its data is unknown")
    x, source = _held_out(recipe, info["model_kwargs"], batch)
    ops = count_ops(model, x)
    report = sparsity(model)
    per_sample = max(ops.batch_size or 1, 1)
    layers = []
    targets = layer_targets(recipe, model)
    for name, module in model.named_modules():
        lo = ops.layers.get(name)
        if lo is None:
            continue
        layers.append({
            "name": name, "shape": list(module.weight.shape), "target": targets.get(name),
            "sparsity": report.layers.get(name, 0.0),
            "kind": lo.kind, "sops": lo.sops / per_sample, "macs": lo.macs / per_sample,
            "dense_macs": lo.dense_macs / per_sample,
            "input_rate": lo.input_rate if lo.kind != "mac" else None,
        })
    history = info["history"]
    last = history[-1] if history else {}
    nonzero = report.numel - report.zeros
    e = energy(ops, table=table)
    given = Path(path)
    return {
        "path": info["path"], "run": given.name if given.is_dir() else f"{given.parent.name}/{given.name}",
        "recipe": recipe.name,
        "model": info["model_name"] + (" (ANN twin)" if info["twin"] else ""),
        "spiking": ops.sops > 0,
        "test_acc": info["test_acc"] if info.get("test_acc") is not None else last.get("test_acc"),
        "sparsity": report.total,
        "nonzero_params": nonzero, "sops": ops.sops / per_sample, "dense_sops": ops.dense_sops / per_sample,
        "macs": ops.macs / per_sample,
        "dense_macs": ops.dense_macs / per_sample, "energy_pj": e.total_pj / per_sample,
        "firing_rate": ops.mean_firing_rate, "measured_on": source, "energy_table": table, "layers": layers,
    }


def compare_runs(paths, *, batch: int = 32, table: str = "45nm") -> list[dict]:
    """:func:`run_report` of each run, with ratios to the first (energy, operations, parameters)
    and the SOP ratio split into its spike and weight parts (:func:`sops_split`)."""
    rows = [run_report(p, batch=batch, table=table) for p in paths]
    base = rows[0]
    for row in rows:
        row.pop("layers")
        for key in ("energy_pj", "nonzero_params", "sops", "macs"):
            row[f"{key}_ratio"] = row[key] / base[key] if base[key] else None
        row.update(sops_split(base, row))
    return rows


def sops_split(base: dict, row: dict) -> dict:
    """The SOP ratio of ``row`` to ``base`` as the product of a spike part and a weight part.

    SOPs are events times the kept synapses each event reaches; ``dense_sops`` are the same events
    times every synapse (all weights kept). So ``SOPs = dense_sops x (SOPs / dense_sops)``: the
    events weighted by their fan-out, times the share of the synapses the events meet that
    survive. Between two runs

        sops_ratio = spike_ratio x weight_ratio
        spike_ratio  = dense_sops(row) / dense_sops(base)          (the spikes alone changed)
        weight_ratio = [SOPs/dense_sops](row) / [SOPs/dense_sops](base)   (the kept synapses the
                       events meet)

    exactly, and in logarithms the two parts add up to the whole: ``log sops_ratio = log
    spike_ratio + log weight_ratio``; ``sops_spike_share`` is the spike part's share of that log
    (of the reduction, when SOPs fell). A net without SOPs on either side (an ANN) has no split.

    Args:
        base: the run the ratios are to (a :func:`run_report` dict).
        row: the other run.

    Returns:
        ``{"sops_spike_ratio", "sops_weight_ratio", "sops_spike_share"}`` (each None where there is
        no split; the share None when the SOPs did not change).

    Example::

        >>> r = sops_split({"sops": 100.0, "dense_sops": 1000.0}, {"sops": 5.0, "dense_sops": 500.0})
        >>> [round(r[k], 4) for k in ("sops_spike_ratio", "sops_weight_ratio", "sops_spike_share")]  # 0.5 x 0.1
        [0.5, 0.1, 0.2314]
    """
    none = {"sops_spike_ratio": None, "sops_weight_ratio": None, "sops_spike_share": None}
    if not all(d.get(k) for d in (base, row) for k in ("sops", "dense_sops")):
        return none
    spike = row["dense_sops"] / base["dense_sops"]
    weight = (row["sops"] / row["dense_sops"]) / (base["sops"] / base["dense_sops"])
    total = math.log(spike) + math.log(weight)
    share = math.log(spike) / total if abs(total) > 1e-12 else None
    return {"sops_spike_ratio": spike, "sops_weight_ratio": weight, "sops_spike_share": share}


def _fmt(value, kind: str = "") -> str:
    if value is None:
        return "—"
    if kind == "pct":
        return f"{value:.2%}"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def report_table(report: dict):
    from rich.table import Table

    table = Table(title=f"{report['recipe']}: {report['model']} ({report['measured_on']}, per sample)")
    for column in ("layer", "shape", "target", "sparsity", "kind", "SOPs", "MACs", "input firing rate"):
        table.add_column(column, justify="left" if column in ("layer", "shape", "kind") else "right")
    for row in report["layers"]:
        table.add_row(row["name"], "x".join(map(str, row["shape"])), _fmt(row.get("target"), "pct"),
                      _fmt(row["sparsity"], "pct"), row["kind"],
                      _fmt(row["sops"]), _fmt(row["macs"]), _fmt(row["input_rate"]))
    table.caption = (f"test acc {_fmt(report['test_acc'], 'pct')} · sparsity {report['sparsity']:.2%} · "
                     f"non-zero params {report['nonzero_params']} · SOPs {report['sops']:.4g} · "
                     f"MACs {report['macs']:.4g}"
                     f" · energy {report['energy_pj']:.4g} pJ ({report['energy_table']})")
    return table


_COMPARE_COLUMNS = [("recipe", ""), ("model", ""), ("test_acc", "pct"), ("sparsity", "pct"),
                    ("nonzero_params", ""), ("sops", ""), ("macs", ""), ("energy_pj", ""), ("energy_pj_ratio", ""),
                    ("nonzero_params_ratio", ""), ("sops_ratio", ""), ("sops_spike_ratio", ""),
                    ("sops_weight_ratio", "")]


def compare_table(rows: list[dict]):
    from rich.table import Table

    table = Table(title="runs side by side (per sample; ratios to the first run)")
    for key, _ in _COMPARE_COLUMNS:
        table.add_column(key.replace("_", " "), justify="left" if key in ("recipe", "model") else "right")
    for row in rows:
        table.add_row(*[_fmt(row.get(key), kind) for key, kind in _COMPARE_COLUMNS])
    return table


def to_markdown(rows: list[dict], columns=None) -> str:
    columns = columns or [(k, kind) for k, kind in _COMPARE_COLUMNS]
    head = "| " + " | ".join(k.replace("_", " ") for k, _ in columns) + " |"
    sep = "|" + "---|" * len(columns)
    body = ["| " + " | ".join(_fmt(r.get(k), kind) for k, kind in columns) + " |" for r in rows]
    return "\n".join([head, sep, *body])


def dumps(obj) -> str:
    return json.dumps(obj, indent=2, default=str)
