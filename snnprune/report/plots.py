"""The pictures of a run folder and of runs side by side (matplotlib PNGs, written atomically).

* :func:`plot_training` — ``training_curves.png``: test and train accuracy, loss, sparsity,
  threshold, regrowth and operations per sample over the epochs of ``metrics.jsonl``;
* :func:`plot_layer_sparsity` — ``layer_sparsity.png``: the zero fraction of every conv and linear
  layer of the model, with its number of weights;
* :func:`plot_compare` — runs side by side: accuracy against sparsity, SOPs/MACs per sample and
  energy per sample (SNNs against ANNs);
* :func:`plot_sensitivity` — ``sensitivity.png``: accuracy against sparsity, each layer pruned alone;
* :func:`write_run_plots` — the two pictures of one run folder (``snnprune report RUN --plot``);
* :class:`PlotSink` — a sink of :func:`snnprune.engine.train` that redraws the curves after every
  epoch (a killed run has them up to its last epoch) and draws the layers at the end
  (``snnprune train`` and ``snnprune demo`` pass one).

Only :class:`matplotlib.figure.Figure` is used (no pyplot, no global backend switch), so plotting
works without a display and from any thread.

Example::

    >>> history = [{"epoch": 1, "test_acc": 0.5, "sparsity": 0.2}, {"epoch": 2, "test_acc": 0.7, "sparsity": 0.6}]
    >>> plot_training(history, CURVES_PNG, title="two epochs").stat().st_size > 10_000
    True
    >>> from snnprune.models import create_model
    >>> [row["name"] for row in layer_rows(create_model("sew_digits"))][:2]
    ['body.features.0.conv', 'body.features.1.conv.0.conv']
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path

__all__ = ["CURVES_PNG", "LAYERS_PNG", "PlotSink", "history_by_epoch", "layer_rows", "plot_compare",
           "plot_layer_sparsity", "plot_sensitivity", "plot_training", "write_run_plots"]

#: file names inside a run folder
CURVES_PNG, LAYERS_PNG = "training_curves.png", "layer_sparsity.png"

_SNN_COLOR, _ANN_COLOR = "tab:blue", "tab:orange"


def _figure(width: float, height: float, layout: str | None = "constrained"):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout=layout)


def _save(fig, out: str | Path) -> Path:
    """``out`` replaced in one step (a temporary file beside it, then a rename): a run killed while
    drawing keeps the previous picture, never half of one."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, dpi=110, format="png")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def _numbers(history: list[dict], key: str) -> tuple[list[int], list[float]]:
    xs, ys = [], []
    for h in history:
        v = h.get(key)
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v):
            xs.append(h["epoch"])
            ys.append(float(v))
    return xs, ys


def _log_if_wide(ax, ys: list[float]) -> None:
    """Log scale when the positive values span more than a factor 20 (a threshold or an operation
    count that moves over decades), linear otherwise."""
    positive = [y for y in ys if y > 0]
    if positive and len(positive) == len(ys) and max(positive) > 20 * min(positive):
        _log_scale(ax, ys)


def _log_scale(ax, values) -> None:
    """Log y axis with short labels (2e5, 5e5, 1e6): at 1, 2 and 5 of each decade when the values
    span up to two decades, at the decades beyond (matplotlib's own minor labels crowd a panel)."""
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    ax.set_yscale("log")
    positive = [v for v in values if v > 0]
    narrow = bool(positive) and max(positive) <= 100 * min(positive)
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0) if narrow else (1.0,)))
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0e}".replace("e+0", "e").replace("e-0", "e-")))
    ax.yaxis.set_minor_formatter(NullFormatter())


def _empty(ax, text: str) -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def history_by_epoch(history: list[dict]) -> list[dict]:
    """One entry per epoch, the last one written (a run killed after logging an epoch but before
    its checkpoint replays that epoch on resume and logs it again), in epoch order."""
    by_epoch = {h["epoch"]: h for h in history if isinstance(h.get("epoch"), int)}
    return [by_epoch[e] for e in sorted(by_epoch)]


def plot_training(history: list[dict], out: str | Path, title: str = "") -> Path:
    """Six panels over the epochs of ``history`` (the per-epoch lines of ``metrics.jsonl``):
    accuracy (train and test), loss, sparsity over every conv/linear weight, the pruning threshold,
    regrowth, and SOPs/MACs per sample on the held-out batch (dense MACs dashed). A panel whose
    metric the run does not log (a dense run has no threshold) says so."""
    history = history_by_epoch(history)
    fig = _figure(13, 6.6, layout=None)  # a fixed grid: constrained layout would double the time of a redraw
    axes = fig.subplots(2, 3, gridspec_kw={"left": 0.05, "right": 0.985, "bottom": 0.075, "top": 0.9, "wspace": 0.22,
                                           "hspace": 0.38})
    fig.suptitle(title or "training", fontsize=12)
    panels = [
        ("accuracy (%)", [("train_acc", "train", 100), ("test_acc", "test", 100)]),
        ("loss", [("train_loss", "train", 1), ("test_loss", "test", 1)]),
        ("sparsity over every conv/linear weight (%)", [("sparsity", "sparsity", 100)]),
        ("threshold", [("threshold", "threshold", 1)]),
        ("regrowth since the previous epoch (% of pruned weights)", [("regrowth", "regrowth", 100)]),
        ("operations per sample (held-out batch)", [("sops_per_sample", "SOPs", 1), ("macs_per_sample", "MACs", 1),
                                                    ("dense_macs_per_sample", "MACs if dense", 1)]),
    ]
    colors = {"train": "tab:gray", "test": "tab:red", "SOPs": _SNN_COLOR, "MACs": _ANN_COLOR, "MACs if dense": "0.3"}
    for ax, (label, series) in zip(axes.flat, panels):
        drawn = []
        for key, name, scale in series:
            xs, ys = _numbers(history, key)
            if not xs or (key.endswith("per_sample") and not any(ys)):
                continue  # an SNN logs MACs 0 when every layer gets events: nothing to draw
            ys = [scale * y for y in ys]
            style = "--" if key.startswith("dense") else "-"
            ax.plot(xs, ys, style, marker="o", markersize=3, label=name, color=colors.get(name, _SNN_COLOR))
            drawn += ys
        ax.set_title(label, fontsize=9)
        if not drawn:
            pruner = any(h.get("regrowth") is not None for h in history)  # logged whenever a pruner is attached
            _empty(ax, "no epoch finished yet" if not history else
                   "not logged: no pruner in this run" if not pruner and series[0][0] in ("threshold", "regrowth")
                   else "not logged: the method has no threshold" if series[0][0] == "threshold"
                   else "not logged by this run")
            continue
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
        if label.startswith("operations") and min(drawn) > 0:
            _log_scale(ax, drawn)  # sparse against dense: a factor 10 or more
        elif label.startswith("threshold"):
            _log_if_wide(ax, drawn)
        elif label.startswith(("sparsity", "regrowth")):  # shares: never below 0 or above 100
            low, high = ax.get_ylim()
            if max(drawn) - min(drawn) < 1e-9:  # flat (a dense run's 0%): one percent point of room
                low, high = min(drawn) - 1, max(drawn) + 1
            ax.set_ylim(max(low, 0.0), min(high, 100.0))
        if len(series) > 1:
            ax.legend(fontsize=8)
    return _save(fig, out)


def layer_rows(model) -> list[dict]:
    """``name``, ``sparsity`` and ``shape`` of every conv and linear layer of ``model``, in order."""
    from ..metrics import sparsity

    report = sparsity(model)
    modules = dict(model.named_modules())
    return [{"name": name, "sparsity": value, "shape": list(modules[name].weight.shape)}
            for name, value in report.layers.items()]


def plot_layer_sparsity(layers: list[dict], out: str | Path, title: str = "") -> Path:
    """One horizontal bar per layer (``name``, ``sparsity``, ``shape`` as :func:`layer_rows`
    gives), its zero fraction in percent, labelled with the layer's non-zero and total weights; a
    dashed line marks the sparsity over all of them."""
    import numpy as np

    names = [row["name"] for row in layers]
    sizes = [int(np.prod(row["shape"])) for row in layers]
    values = [100 * row["sparsity"] for row in layers]
    total = 100 * sum(v / 100 * n for v, n in zip(values, sizes)) / max(sum(sizes), 1)
    fig = _figure(9, 1.6 + 0.3 * max(len(layers), 1))
    ax = fig.subplots()
    ax.set_title(title or "per-layer sparsity", fontsize=11)
    if not layers:
        _empty(ax, "no conv or linear layer")
        return _save(fig, out)
    y = np.arange(len(layers))
    ax.barh(y, values, color=_SNN_COLOR, height=0.7)
    ax.axvline(total, color="0.3", linestyle="--", linewidth=1)
    for yi, v, n in zip(y, values, sizes):
        kept = round(n * (1 - v / 100))
        inside = v > 75
        ax.text(v - 1 if inside else v + 1, yi, f"{v:.1f}%  ({kept:,} of {n:,} kept)", va="center",
                ha="right" if inside else "left", fontsize=7, color="white" if inside else "black")
    ax.set_yticks(y, names, fontsize=8)
    ax.invert_yaxis()  # the first layer on top
    ax.set_xlim(0, 100)
    ax.set_xlabel(f"zero weights in the layer (%); dashed line: {total:.1f}% of all {sum(sizes):,} weights")
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, out)


def plot_sensitivity(result: dict, out: str | Path, title: str = "") -> Path:
    """Accuracy against sparsity, one line per layer, of a
    :func:`snnprune.sensitivity.sensitivity` result; the unpruned accuracy dotted. The sparsity axis
    is ``-log10(1 - s)`` (90%, 99% equally spaced), so the high end, where layers part, is readable."""
    import numpy as np

    fig = _figure(9, 5.2)
    ax = fig.subplots()
    ax.set_title(title or "sensitivity: each layer pruned alone (one-shot magnitude)", fontsize=11)
    grid = np.asarray(result["sparsities"], dtype=float)
    layers = result["layers"]
    if not layers:
        _empty(ax, "no layer probed")
        return _save(fig, out)
    x = -np.log10(1 - grid)
    colors = [f"C{i % 10}" for i in range(len(layers))]
    styles = ["-", "--", ":", "-."]
    for i, (name, row) in enumerate(layers.items()):
        ax.plot(x, 100 * np.asarray(row["accuracy"]), marker="o", markersize=3, color=colors[i],
                linestyle=styles[(i // 10) % len(styles)], label=f"{name} ({row['numel']:,})")
    ax.axhline(100 * result["baseline"], color="0.3", linestyle=":", linewidth=1,
               label=f"unpruned {100 * result['baseline']:.2f}%")
    ax.set_xticks(x, [f"{100 * s:g}" for s in grid], fontsize=8)
    ax.set_xlabel("sparsity of the probed layer (%), the other layers unpruned")
    ax.set_ylabel(f"held-out {result.get('metric', 'accuracy')} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left", ncol=1 + len(layers) // 12)
    return _save(fig, out)


def _label(i: int, row: dict) -> str:
    return f"{i + 1} {row.get('run') or row['recipe']}"


def plot_compare(rows: list[dict], out: str | Path) -> Path:
    """Three panels for the rows of :func:`~snnprune.report.runs.compare_runs`: test accuracy
    against sparsity (one point a run, SNNs round, ANNs square); SOPs and MACs per sample with each
    run's dense MACs marked (log scale); energy per sample with the ratio to the first run (log)."""
    import numpy as np
    from matplotlib.lines import Line2D

    labels = [_label(i, r) for i, r in enumerate(rows)]
    colors = [_SNN_COLOR if r["spiking"] else _ANN_COLOR for r in rows]
    fig = _figure(15, 4.8)
    ax1, ax2, ax3 = fig.subplots(1, 3)
    seen: dict[tuple[float, float], int] = {}
    for r, label, color in zip(rows, labels, colors):
        x, y = 100 * r["sparsity"], 100 * (r["test_acc"] or 0)
        if r["spiking"]:  # filled dots over hollow squares, so an SNN and an ANN on one spot both show
            ax1.scatter(x, y, marker="o", s=45, color=color, zorder=3)
        else:
            ax1.scatter(x, y, marker="s", s=110, facecolors="none", edgecolors=color, linewidths=1.8, zorder=2)
        spot = (round(x, 1), round(y, 2))
        n = seen[spot] = seen.get(spot, -1) + 1  # stack the numbers of runs that land on one spot
        ax1.annotate(label.split(" ")[0], (x, y), xytext=(7, 4 + 10 * n), textcoords="offset points", fontsize=8)
    ax1.set_xlabel("sparsity over every conv/linear weight (%)")
    ax1.set_ylabel("test accuracy (%)")
    ax1.set_title("accuracy against sparsity (runs numbered as on the right)")
    ax1.set_xlim(-5, 105)
    ax1.margins(y=0.15)
    ax1.grid(alpha=0.3)
    ax1.legend(handles=[Line2D([], [], marker="o", color=_SNN_COLOR, linestyle="", label="SNN"),
                        Line2D([], [], marker="s", color=_ANN_COLOR, markerfacecolor="none", markeredgewidth=1.8,
                               linestyle="", label="ANN")], fontsize=8)

    x = np.arange(len(rows))
    width = 0.38
    sops = [r["sops"] for r in rows]
    macs = [r["macs"] for r in rows]
    ax2.bar(x - width / 2, sops, width, color=_SNN_COLOR, label="SOPs (accumulates)")
    ax2.bar(x + width / 2, macs, width, color=_ANN_COLOR, label="MACs")
    ax2.scatter(x + width / 2, [r["dense_macs"] for r in rows], marker="_", s=400, color="black", zorder=3,
                label="MACs if dense (every weight, every step)")
    _log_scale(ax2, sops + macs + [r["dense_macs"] for r in rows])
    ax2.set_ylim(top=6 * max(v for r in rows for v in (r["sops"], r["macs"], r["dense_macs"])))  # room for the legend
    ax2.set_ylabel("operations per sample")
    ax2.set_title("operations: SNN SOPs against ANN MACs")
    ax2.legend(fontsize=8, loc="upper right")

    energies = [r["energy_pj"] for r in rows]
    ax3.bar(x, energies, color=colors)
    for xi, e in zip(x, energies):
        ratio = e / energies[0] if energies[0] else float("nan")
        ax3.annotate(f"{e:.3g} pJ\n{ratio:.3g}x", (xi, e), xytext=(0, 2), textcoords="offset points",
                     ha="center", va="bottom", fontsize=7)
    _log_scale(ax3, energies)
    ax3.margins(y=0.25)
    ax3.set_ylabel(f"energy per sample (pJ, {rows[0]['energy_table']} table)")
    ax3.set_title(f"energy (ratios to {labels[0]})")
    for ax in (ax2, ax3):
        ax.set_xticks(x, labels, rotation=25, ha="right", fontsize=7)
        ax.grid(axis="y", alpha=0.3)
    return _save(fig, out)


def _title(recipe, what: str) -> str:
    if recipe is None:
        return what
    from .summary import method_label

    model = recipe.model.name + (" (ANN twin)" if recipe.model.twin else "")
    return f"{recipe.name}: {model}, {method_label(recipe)} — {what}"


def write_run_plots(path: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """The training curves (from ``metrics.jsonl``) and the per-layer sparsity (of the model
    :func:`~snnprune.runs.load_run_model` reads at ``path``, a run folder or one of its
    files) written into ``out_dir`` (default: the run folder)."""
    from ..runs import load_run_model

    path = Path(path)
    run_dir = path if path.is_dir() else path.parent
    out_dir = Path(out_dir) if out_dir is not None else run_dir
    model, info = load_run_model(path)
    recipe = info["recipe"]
    written = []
    if info["history"]:
        written.append(plot_training(info["history"], out_dir / CURVES_PNG, _title(recipe, "training")))
    written.append(plot_layer_sparsity(layer_rows(model), out_dir / LAYERS_PNG,
                                       _title(recipe, f"per-layer sparsity ({Path(info['path']).name})")))
    return written


class PlotSink:
    """A sink for :func:`snnprune.engine.train`: ``training_curves.png`` redrawn from
    ``metrics.jsonl`` after every epoch, ``layer_sparsity.png`` from ``final_model.pt`` (from
    ``last.pt`` when the run was interrupted) at the end. A picture that cannot be drawn is a
    warning, never the end of the run."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None
        self.recipe = None
        self._drawn = False  # curves drawn since on_start

    def on_start(self, info: dict) -> None:
        self.run_dir, self.recipe = Path(info["run_dir"]), info["recipe"]

    def _guard(self, what: str, fn, *args) -> None:
        try:
            fn(*args)
        except Exception as exc:  # noqa: BLE001 - a picture must not cost the run
            warnings.warn(f"could not draw {what} in {self.run_dir}: {type(exc).__name__}: {exc}", stacklevel=2)

    def _curves(self) -> None:
        from ..runs import run_history

        plot_training(run_history(self.run_dir), self.run_dir / CURVES_PNG, _title(self.recipe, "training"))

    def _layers(self) -> None:
        from ..runs import FINAL, LAST, load_run_model

        source = next((self.run_dir / n for n in (FINAL, LAST) if (self.run_dir / n).is_file()), None)
        if source is None:
            return
        model, _ = load_run_model(source)
        plot_layer_sparsity(layer_rows(model), self.run_dir / LAYERS_PNG,
                            _title(self.recipe, f"per-layer sparsity ({source.name})"))

    def on_epoch_end(self, metrics: dict) -> None:
        if self.run_dir is not None:
            self._guard(CURVES_PNG, self._curves)
            self._drawn = True

    def on_end(self, result) -> None:
        # a call that finished no epoch (a complete run continued again: `make demo` a second time)
        # changed nothing drawn: pictures already there stay
        if self.run_dir is not None:
            if not self._drawn and not (self.run_dir / CURVES_PNG).is_file():
                self._guard(CURVES_PNG, self._curves)
            if self._drawn or not (self.run_dir / LAYERS_PNG).is_file():
                self._guard(LAYERS_PNG, self._layers)
