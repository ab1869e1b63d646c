"""Accuracy against sparsity: every pruning method of snnprune on the embedded digits, SNN and ANN twin.

The setting is chosen by options and is the same for every row of a net: the data (``--data digits``,
static scikit-learn digits 1x8x8 with direct coding, the default, or ``digits_dvs`` event frames
2x24x24), ``T``, the model's keyword arguments (``--kw width=4``: ``sew_digits``'s channel multiplier),
the optimizer and learning rate (per-step cosine to 0; ``--opt snn=adamw ann=sgd`` gives each net its
own), batch, epochs, and one protocol: **every pruned row reaches its target sparsity S at ``--reach``
of the run, then the mask is frozen** (``pruner.freeze()``) and the rest of the run fine-tunes the
surviving weights; **per-layer floors** (``--floor``, the Pruner's ``min_weights``) in every method
that takes them. The defaults are the protocol ``bench/snn99`` found best at 99% for each net: the SNN
with AdamW 1e-2 and floors of 40 weights, the ANN twin with SGD 0.1 + momentum 0.9 and the Pruner's
default floor (:func:`snnprune.pruner.default_floor` of the target, given to every row, the closed-form
shapes included), 20 epochs, the target at 75% of the run. A floor
of N weights is capped at what the target leaves per layer (``min(N, budget // layers)``, budget = the
weights S keeps): 40 weights in each of the SNN's 7 layers fit 99% (290 kept) but not 99.5% (145 kept,
so 20 there, every kept weight a floor); the floor used is ``min_weights`` in the JSON. The whole data
set is held in memory as tensors (no DataLoader); every row of a seed starts from the same weights and
sees the same batches. Sparsity counts every conv and linear weight (no layer kept dense), measured on
the finalized model (``pruner.finalize()``); accuracy is on the 360 test samples after the last epoch.

**Tuning: the same budget for every row.** Each row has ``--budget`` (default 4) settings of its own
knobs (:data:`GRIDS`, one list per row, its default first): the learning rate for LATS, GMP and
magnitude; D for the closed-form shapes; for STR, LTP and the smooth threshold the thresholds' own
optimizer (SGD, which lets the regulariser move them, against the net's AdamW), their learning rate,
and ``l0`` / ``threshold_reg`` / ``s_init`` with weight decay; PAT's λ. Every setting is trained once
(the first seed) on the ``fit`` part of the training split and scored on ``val``, the other
:data:`VAL_FRACTION` of it (stratified, fixed; the test set is never looked at); the setting with the
best validation accuracy among the runs on target (:func:`choose`) is trained again on the whole
training split with every seed, and that is the row's cell. ``--budget 1`` is the default of each row,
untuned. Each run also records the operations per test sample (:func:`snnprune.metrics.energy.ops_metrics`:
SOPs plus the MACs on analog input, the 45 nm energy) for the Pareto plot ``<name>_pareto.png``
(accuracy against non-zero weights and against operations; ``--pareto A.json B.json`` draws it over
several results, e.g. one per width).

How each row reaches S at the reach step R (``total_steps=R`` for every Pruner):

* ``dense`` -- no pruning (one run per seed, shown in every column);
* ``lats`` -- ``soft_threshold`` with ``TargetSparsity(S)`` (the LATS shape, λ set by the feedback
  controller, the last retarget lands on S);
* ``slats``, ``pgh`` (β=0.1), ``sine`` (STDS), ``linear`` -- ``soft_threshold`` with the closed-form
  shape ending at R on D = the threshold the ``lats`` row of the same net and S reached on the first
  seed (a calibration: the closed forms have no target of their own); whatever sparsity that D gives
  at R (``pre_projection`` in the JSON), an exact projection (``pruner.prune_to(S)``, floors kept)
  brings the run to S before the freeze;
* ``str``, ``ltp``, ``smooth_threshold`` -- ``target_sparsity=S``: a feedback on the regulariser's
  strength along a cubic ramp, and a projection onto S at R (floors kept; the sparsity before it and
  the gain are ``pre_projection`` and ``gain_at_reach`` in the JSON of runs made since they were
  added). They learn their own per-layer thresholds, so the floors act at that projection only; STR
  has no regulariser, so its row is training with STR's learned threshold and that projection
  (without weight decay, ``--wd``, its threshold does not grow and the row equals one-shot
  magnitude's);
* ``gmp`` -- ``target_sparsity=S``: the cubic schedule ending at R, masks every 1% of it, floors kept;
* ``magnitude`` -- one-shot: dense training up to R, global magnitude pruning to S (floors kept), then
  the same frozen-mask fine-tuning as every other row;
* ``pat`` -- torchao's PAT (``torchao.prototype.pat``) through its own API: ``PruneOptimizer`` over the
  net's SGD or AdamW, ``ProxLasso`` on every element of every conv and linear weight, no warm-up,
  ``healing_start_step=R`` (the mask frozen from R on). Its threshold is λ·Σ η, the LATS form; it has
  no target and no floors, so λ = ``lam`` × D / Σ_{t<R} η with D the threshold of the LATS row's chosen
  tuning run (``lam=1`` reaches LATS's threshold at R), and its measured sparsity is reported as it is
  ("(at x%)" where it is off the target);
* ``lats_erk``, ``lats_sens`` -- LATS with ``Pruner(allocation="erk")`` (RigL's ERK) or
  ``allocation="sensitivity:PATH"`` (``--sensitivity``, the JSON of ``snnprune sensitivity``): skipped,
  with the reason in the results, where this snnprune's Pruner has no ``allocation=``.

Run:   python bench/quality.py                  # the full grid (see --help), torch threads 1, 2 processes
       python bench/quality.py --plan           # time one SNN and one ANN run, project the grid's wall time
       python bench/quality.py --quick          # LATS, magnitude, PAT, budget 2, 90%, 1 seed, 1 epoch, 128 samples
       python bench/quality.py --name quality_tuned99 --sparsities 0.99 --procs 1 --models snn --methods dense
           lats slats sine str ltp smooth_threshold gmp magnitude pat lats_erk   # (one line) the tuned 99% column
       python bench/quality.py --name quality_pareto --pareto bench/results/quality.json
           bench/results/quality_width3.json   # (one line) the Pareto plot over these results
       python bench/quality.py --name quality_width3 --sparsities 0.99 --kw width=3 --opt adamw --lr 0.01
           --floor 40                           # (one line) the 99% column at width 3, the *_target99 setting
Writes bench/results/<name>.{json,md,png}, <name>_pareto.png and the run journal <name>_runs.jsonl (``--name``, default
``quality``; ``--quick`` writes
nothing unless ``--out`` is given); ``--resume`` skips the runs of the same setting already journaled.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import shlex
import statistics
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
METHODS = ["dense", "lats", "slats", "pgh", "sine", "linear", "str", "ltp", "smooth_threshold", "gmp", "magnitude",
           "pat", "lats_erk", "lats_sens"]
SHAPES = {"slats": "SLATS", "pgh": "PGH", "sine": "Sine", "linear": "Linear"}
#: the rows whose D (or λ) comes from the LATS row of the same net and target
FROM_LATS = [*SHAPES, "pat"]
#: the rows with a per-layer allocation (``Pruner(allocation=...)``): method -> (base method, allocation)
ALLOCATED = {"lats_erk": ("lats", "erk"), "lats_sens": ("lats", "sensitivity")}
LABELS = {
    "dense": "dense", "lats": "LATS (λ controller)", "slats": "S-LATS (D from LATS + projection)",
    "pgh": "PGH β=0.1 (D from LATS + projection)", "sine": "STDS sine (D from LATS + projection)",
    "linear": "linear (D from LATS + projection)", "str": "STR (+ projection)", "ltp": "LTP (target feedback)",
    "smooth_threshold": "smooth threshold (target feedback)", "gmp": "GMP (cubic)",
    "magnitude": "one-shot magnitude + fine-tune", "pat": "torchao PAT (ProxLasso, λ from LATS)",
    "lats_erk": "LATS, ERK allocation", "lats_sens": "LATS, sensitivity allocation",
}
#: The tuning budget: the settings of each method's own knobs, the first its default; ``--budget N``
#: tries the first N on the validation split. Knobs: ``lr`` multiplies the net's learning rate (every
#: parameter); ``thr`` trains the learned thresholds with their own optimizer (``"sgd"``, momentum as
#: the net's, or ``"adamw"``) at ``thr_lr`` times the net's learning rate and weight decay ``thr_wd``
#: (without ``thr`` they are a group of the net's optimizer); ``kwargs`` are the method's options;
#: ``d`` multiplies the D the closed forms take from LATS; ``lam`` is PAT's λ as a multiple of
#: D_LATS / (Σ η up to the reach step), so that ``lam=1`` reaches LATS's threshold at the reach step.
GRIDS = {
    "dense": [{}],
    "lats": [{}, {"lr": 2.0}, {"lr": 0.5}, {"lr": 3.0}],
    **{shape: [{"d": 1.0}, {"d": 0.7}, {"d": 1.4}, {"d": 1.0, "lr": 2.0}] for shape in SHAPES},
    "str": [{}, {"thr": "sgd", "thr_lr": 1.0, "thr_wd": 5e-4, "kwargs": {"s_init": -6.0}},
            {"thr": "sgd", "thr_lr": 10.0, "thr_wd": 5e-4, "kwargs": {"s_init": -6.0}},
            {"thr": "sgd", "thr_lr": 10.0, "thr_wd": 5e-3, "kwargs": {"s_init": -4.0}}],
    "ltp": [{}, {"thr": "sgd", "thr_lr": 1.0}, {"thr": "sgd", "thr_lr": 10.0}, {"thr": "sgd", "thr_lr": 10.0,
                                                                               "kwargs": {"l0": 1.0}}],
    "smooth_threshold": [{}, {"thr": "sgd", "thr_lr": 1.0}, {"thr": "sgd", "thr_lr": 10.0},
                         {"thr": "sgd", "thr_lr": 10.0, "kwargs": {"threshold_reg": 1.0}}],
    "gmp": [{}, {"lr": 2.0}, {"lr": 0.5}, {"lr": 3.0}],
    "magnitude": [{}, {"lr": 2.0}, {"lr": 0.5}, {"lr": 3.0}],
    "pat": [{"lam": 1.0}, {"lam": 0.5}, {"lam": 2.0}, {"lam": 1.0, "lr": 2.0}],
    "lats_erk": [{}, {"lr": 2.0}, {"lr": 0.5}, {"lr": 3.0}],
    "lats_sens": [{}, {"lr": 2.0}, {"lr": 0.5}, {"lr": 3.0}],
}
#: the validation split: this fraction of the training data, stratified, the same for every seed
VAL_FRACTION = 0.2
#: a tuning run counts as on target when its measured sparsity is at least the target minus this
ON_TARGET = 5e-4
MODELS = ("snn", "ann")
NAMES = {"snn": "SNN (IF neurons)", "ann": "ANN twin (ReLU)"}


# -- the setting ---------------------------------------------------------------------------------
def per_model(values: list[str], cast, option: str) -> dict:
    """``["0.01"]`` -> both nets; ``["snn=0.01", "ann=0.1"]`` -> one value per net."""
    out = {}
    for value in values:
        model, sep, rest = value.partition("=")
        if sep and model in MODELS:
            out[model] = cast(rest)
        elif not sep:
            out.update({m: cast(value) for m in MODELS if m not in out})
        else:
            raise SystemExit(f"error: {option} {value!r}: give a value or snn=VALUE / ann=VALUE")
    missing = [m for m in MODELS if m not in out]
    if missing:
        raise SystemExit(f"error: {option} has no value for {', '.join(missing)}: give a value or {missing[0]}=VALUE")
    return out


def keywords(pairs: list[str]) -> dict:
    """``["width=4", "neuron=lif"]`` -> ``{"width": 4, "neuron": "lif"}`` (values read as JSON where they parse)."""
    out = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise SystemExit(f"error: --kw {pair!r}: give key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def settings(args) -> dict:
    """net -> the setting every row of that net trains with (what a journaled run is matched on)."""
    opt = per_model(args.opt, str, "--opt")
    lr = per_model(args.lr, float, "--lr")
    floor = per_model(args.floor, lambda v: None if v == "default" else int(v), "--floor")
    for m in MODELS:
        if opt[m] not in ("sgd", "adamw"):
            raise SystemExit(f"error: --opt {opt[m]!r}: use sgd or adamw")
    return {m: {"data": args.data, "T": args.T, "kw": keywords(args.kw), "opt": opt[m], "lr": lr[m],
                "momentum": args.momentum, "wd": args.wd, "batch": args.batch, "epochs": args.epochs,
                "reach": args.reach, "floor": floor[m], "limit": args.limit} for m in MODELS}


_DATA: dict = {}


def load_data(name: str, T: int, limit: int | None) -> dict:
    """split -> (x, y) tensors of the whole split (event frames time-major: [T, N, C, H, W]):
    ``train``, ``test``, and ``fit`` / ``val``, the training data split once (stratified,
    :data:`VAL_FRACTION` to ``val``) for the tuning runs; ``limit`` keeps a fixed random subset of
    each split (the same for every seed)."""
    import torch

    from snnprune.data import create_dataset
    from snnprune.data.splits import stratified_split

    key = (name, T, limit)
    if key not in _DATA:
        out = {}
        for split in ("train", "test"):
            ds = create_dataset(name, None, split, **({"n_time_bins": T} if name == "digits_dvs" else {}))
            idx = range(len(ds))
            if limit is not None and limit < len(ds):
                idx = sorted(torch.randperm(len(ds), generator=torch.Generator().manual_seed(0))[:limit].tolist())
            xs, ys = zip(*[ds[i] for i in idx])
            x = torch.stack([torch.as_tensor(v) for v in xs]).float()
            out[split] = (x.transpose(0, 1).contiguous() if name == "digits_dvs" else x, torch.tensor(ys))
        events = name == "digits_dvs"
        x, y = out["train"]
        for split, idx in zip(("fit", "val"), stratified_split(y.tolist(), VAL_FRACTION)):
            idx = torch.as_tensor(idx)
            out[split] = (_take(x, idx, events), y[idx])
        _DATA[key] = out
    return _DATA[key]


def _take(x, idx, events: bool):
    return x[:, idx] if events else x[idx]




def _accuracy(model, x, y, events: bool) -> float:
    import torch

    model.eval()
    correct = 0
    with torch.no_grad():
        for idx in torch.arange(len(y)).split(512):
            correct += int((model(_take(x, idx, events)).argmax(1) == y[idx]).sum())
    return correct / len(y)


def floor_for(model, target: float, floor: int | None) -> int:
    """``floor`` capped at the weights ``target`` leaves per layer; None: the Pruner's default floor for
    ``target``, given to every row explicitly (a closed-form shape has no target, so the Pruner would
    give it no floor)."""
    from torch import nn

    from snnprune.pruner import default_floor

    sizes = [m.weight.numel() for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    if floor is None:
        return default_floor(target, sizes)
    return min(floor, int((1.0 - target) * sum(sizes)) // len(sizes))


def allocation_supported() -> bool:
    """Whether this snnprune's ``Pruner`` takes ``allocation=`` (the ERK and sensitivity rows need it)."""
    import inspect

    from snnprune import Pruner

    return "allocation" in inspect.signature(Pruner).parameters


def build_pruner(model, method: str, target: float, reach: int, floor, lrs: list[float], knobs: dict):
    """The row's Pruner, every one reaching ``target`` at step ``reach`` (None for dense and PAT)."""
    from snnprune import Pruner
    from snnprune import schedules as S

    if method in ("dense", "pat"):
        return None
    floor = floor_for(model, target, floor)
    extra = {"method_kwargs": knobs["kwargs"]} if knobs.get("kwargs") else {}
    if method in ALLOCATED:
        method, allocation = ALLOCATED[method]
        extra["allocation"] = knobs["allocation"] if allocation == "sensitivity" else allocation
    if method == "lats":
        return Pruner(model, "soft_threshold", S.TargetSparsity(target, lr=lrs[:reach]), target_sparsity=target,
                      total_steps=reach, min_weights=floor, reach=1.0, **extra)  # total_steps is this protocol's reach
    if method in SHAPES:
        shape = {"beta": 0.1} if method == "pgh" else {}
        final = knobs["d"] * knobs["lats_threshold"]
        return Pruner(model, "soft_threshold", getattr(S, SHAPES[method])(final=final, **shape),
                      total_steps=reach, min_weights=floor, **extra)
    if method == "magnitude":
        return Pruner(model, "magnitude", S.OneShot(target, at=reach), min_weights=floor, **extra)
    return Pruner(model, method, target_sparsity=target, total_steps=reach, min_weights=floor, reach=1.0, **extra)


def _optimizer(kind: str, groups: list[dict], lr: float, momentum: float, wd: float):
    import torch

    if kind == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, weight_decay=wd)
    return torch.optim.AdamW(groups, lr=lr, weight_decay=wd)


def pat_optimizer(model, base_kind: str, lr: float, momentum: float, wd: float, reg_lambda: float, reach: int):
    """torchao's PAT through its own API: ``PruneOptimizer`` over the net's optimizer, ``ProxLasso`` on
    every element of every conv and linear weight (one param group carrying the prox settings, the other
    parameters in a plain group), no warm-up, the mask frozen from ``reach`` on (``healing_start_step``).
    Its threshold is ``reg_lambda`` times the sum of the learning rates so far (the group's ``gamma``)."""
    from torch import nn
    from torchao.prototype.pat import PruneOptimizer

    weights = [m.weight for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    ids = {id(w) for w in weights}
    groups = [{"params": [p for p in model.parameters() if id(p) not in ids]},
              {"params": weights, "group_type": "ElemGrouper", "prox_type": "ProxLasso", "reg_lambda": reg_lambda}]
    return PruneOptimizer(_optimizer(base_kind, groups, lr, momentum, wd), warmup_steps=0,
                          healing_start_step=reach)


def run_one(task: dict) -> dict:
    """Train one (net, method, sparsity, seed, knobs) in its setting and return its record. A ``tune``
    run trains on the ``fit`` split and is scored on ``val`` (and on the test set, never used to
    choose); a ``final`` run trains on the whole training split."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from snnprune import sparsity
    from snnprune.metrics.energy import ops_metrics
    from snnprune.models import create_model

    torch.set_num_threads(task["threads"])
    started = time.perf_counter()
    st, method, target, seed = task["setting"], task["method"], task["sparsity"], task["seed"]
    knobs, phase = task.get("knobs", {}), task.get("phase", "final")
    data = load_data(st["data"], st["T"], st["limit"])
    events = st["data"] == "digits_dvs"
    (x, y), (xt, yt) = data["fit" if phase == "tune" else "train"], data["test"]
    torch.manual_seed(seed)
    geometry = {"in_channels": 2, "input_size": 24} if events else {}
    model = create_model("sew_digits", twin=task["model"] == "ann", T=st["T"], **geometry, **st["kw"])
    spe = math.ceil(len(y) / st["batch"])
    total = spe * st["epochs"]
    reach = min(total, max(1, round(total * st["reach"])))
    lr0 = st["lr"] * knobs.get("lr", 1.0)
    lrs = [lr0 * 0.5 * (1 + math.cos(math.pi * t / total)) for t in range(total)]
    pruner = build_pruner(model, method, target, reach, st["floor"], lrs, knobs)

    own = {id(p) for p in pruner.parameters()} if pruner is not None else set()
    groups = [{"params": [p for p in model.parameters() if id(p) not in own], "scale": 1.0}]
    thresholds = None  # the learned thresholds' own optimizer (knob "thr")
    if own and "thr" in knobs:
        thresholds = _optimizer(knobs["thr"], [{"params": list(pruner.parameters()), "scale": knobs["thr_lr"]}],
                                lr0 * knobs["thr_lr"], st["momentum"], knobs.get("thr_wd", 0.0))
    elif own:
        groups.append({"params": list(pruner.parameters()), "scale": 1.0})
    if method == "pat":
        reg_lambda = knobs["lam"] * knobs["lats_threshold"] / math.fsum(lrs[:reach])
        optimizer = pat_optimizer(model, st["opt"], lr0, st["momentum"], st["wd"], reg_lambda, reach)
        for g in optimizer.param_groups:
            g["scale"] = 1.0
    else:
        optimizer = _optimizer(st["opt"], groups, lr0, st["momentum"], st["wd"])
    optimizers = [optimizer] + ([thresholds] if thresholds is not None else [])
    record = {k: task[k] for k in ("model", "method", "sparsity", "seed")}
    record.update(setting=st, knobs=knobs, phase=phase)
    gen = torch.Generator().manual_seed(seed)
    step = 0
    for _ in range(st["epochs"]):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(st["batch"]):
            for opt in optimizers:
                for g in opt.param_groups:
                    g["lr"] = lrs[step] * g["scale"]
            loss = F.cross_entropy(model(_take(x, idx, events)), y[idx])
            if pruner is not None and not pruner.frozen and pruner.has_regularization:
                loss = loss + pruner.regularization()
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            for opt in optimizers:
                opt.step()
            step += 1
            if pruner is not None and not pruner.frozen:
                # a second optimizer for the thresholds: the Pruner reads the learning rate, not one optimizer
                if thresholds is None:
                    pruner.step(optimizer)
                else:
                    pruner.step(lr=lrs[step - 1])
                if pruner.steps == reach:
                    _reach(pruner, method, target, record)
            elif method == "pat" and step == reach:
                record["at_reach"] = sparsity(model).total

    if pruner is not None:
        record["threshold"] = pruner.threshold
        record["min_weights"] = pruner.min_weights
        if method in SHAPES:
            record["final_threshold"] = knobs["d"] * knobs["lats_threshold"]
        model = pruner.finalize()
    if method == "pat":
        record["reg_lambda"] = reg_lambda
    report = sparsity(model)
    layers = [(n, m.weight) for n, m in model.named_modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))]
    model.eval()
    with torch.no_grad():
        ops = ops_metrics(model, xt)
    record.update(
        accuracy=_accuracy(model, xt, yt, events),
        train_accuracy=_accuracy(model, x, y, events),
        measured=report.total,
        nonzero=report.numel - report.zeros,
        weights=report.numel,
        nnz_per_layer={n: int((w != 0).sum()) for n, w in layers},
        ops_per_sample=ops["sops_per_sample"] + ops["macs_per_sample"],
        sops_per_sample=ops["sops_per_sample"], macs_per_sample=ops["macs_per_sample"],
        energy_pj_per_sample=ops["energy_pj_per_sample"], firing_rate=ops["firing_rate"],
        reach_step=reach, total_steps=total,
    )
    if phase == "tune":
        record["val_accuracy"] = _accuracy(model, *data["val"], events)
    if task.get("probe"):  # the dense net's per-layer sensitivity on the validation split
        from snnprune.report.sensitivity import write_sensitivity
        from snnprune.sensitivity import sensitivity

        result = sensitivity(model, lambda m: _accuracy(m, *data["val"], events))
        record["sensitivity_json"] = str(write_sensitivity(result, task["probe"], title=task["model"])[0])
    record["seconds"] = time.perf_counter() - started
    return record


def _reach(pruner, method: str, target: float, record: dict) -> None:
    """The reach step: the closed-form shapes are projected onto the target, then every mask is frozen."""
    record["at_reach"] = pruner.sparsity().total
    controller = pruner.controller  # the learned thresholds' regulariser feedback (None for the others)
    if controller is not None and controller.history:
        # learned thresholds: where their regulariser got them before the projection (and its gain)
        record["pre_projection"], record["gain_at_reach"] = controller.history[-1][2], controller.history[-1][3]
    if method in SHAPES:
        record["pre_projection"] = record["at_reach"]
        if abs(record["pre_projection"] - target) > 1e-4:
            pruner.prune_to(target)
    pruner.freeze()


# -- the grid ----------------------------------------------------------------------------------
class _Inline:
    """``procs=1``: the pool's interface, run in this process when the result is asked for."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def apply_async(self, fn, args):
        return type("Later", (), {"get": lambda _: fn(*args)})()


def _init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _key(t: dict) -> tuple:
    return (t["model"], t["method"], round(t["sparsity"], 6), t["seed"], t.get("phase", "final"),
            json.dumps(t.get("knobs", {}), sort_keys=True), json.dumps(t["setting"], sort_keys=True))


def choose(records: list[dict], target: float) -> dict:
    """The tuning run a row is reported at: the best validation accuracy among the runs on target
    (measured sparsity at least ``target - ON_TARGET``), or, when none is, among the sparsest runs
    (within ``ON_TARGET`` of the sparsest); ties go to the earlier setting of the grid."""
    on = [r for r in records if r["measured"] >= target - ON_TARGET]
    if not on:
        top = max(r["measured"] for r in records)
        on = [r for r in records if r["measured"] >= top - ON_TARGET]
    return max(on, key=lambda r: r["val_accuracy"])  # max keeps the first of equals


def unavailable(method: str, model: str, args) -> str | None:
    """Why ``method`` cannot run here (None when it can)."""
    if method == "pat":
        try:
            import torchao.prototype.pat  # noqa: F401
        except ImportError:
            return "torchao >= 0.18 is not installed (pip install 'torchao>=0.18')"
    if method in ALLOCATED:
        if not allocation_supported():
            return "this snnprune's Pruner has no allocation= keyword"
        if ALLOCATED[method][1] == "sensitivity":
            try:
                import snnprune.sensitivity  # noqa: F401
            except ImportError:
                return "this snnprune has no snnprune.sensitivity"
    return None


def run_grid(args, journal: Path | None = None) -> tuple[list[dict], dict]:
    """Every run of the grid and the rows skipped (row -> why). First each method's tuning budget
    (``--budget`` settings of :data:`GRIDS`, seed ``--seeds[0]``, trained on the ``fit`` split and
    chosen on ``val`` by :func:`choose`; the rows of :data:`FROM_LATS` after LATS, whose chosen run gives
    their D), then every row at its chosen setting on every seed, trained on the whole training split.
    Each record is appended to ``journal`` (JSON lines) as it arrives, and with ``args.resume`` the
    runs already there are not run again."""
    sets = settings(args)
    seeds, models, sparsities = args.seeds, args.models, args.sparsities
    skipped = {}
    methods = []
    for method in args.methods:
        why = next((w for w in (unavailable(method, m, args) for m in models) if w), None)
        if why:
            skipped[method] = why
            print(f"skipped {method}: {why}", flush=True)
        else:
            methods.append(method)
    grids = {m: GRIDS[m][:args.budget] for m in methods}
    if any(m in FROM_LATS for m in methods):
        grids.setdefault("lats", GRIDS["lats"][:args.budget])
    records: list[dict] = []
    started = time.perf_counter()
    journaled = {}
    if journal is not None and args.resume and journal.exists():
        for line in journal.read_text().splitlines():
            rec = json.loads(line)
            journaled[_key(rec)] = rec

    def task(model, method, s, seed, knobs, phase):
        knobs = dict(knobs)
        if method in ALLOCATED and ALLOCATED[method][1] == "sensitivity" and "allocation" not in knobs:
            knobs["allocation"] = f"sensitivity:{args.sensitivity[model]}"
        return {"model": model, "method": method, "sparsity": s, "seed": seed, "knobs": knobs, "phase": phase,
                "threads": args.threads, "setting": sets[model]}

    def run_all(pool, tasks):
        """Run ``tasks`` (the journaled ones read back) and return their records in order."""
        pending = []
        for t in tasks:
            rec = journaled.get(_key(t))
            pending.append(pool.apply_async(run_one, (t,)) if rec is None else dict(rec, journaled=True))
        out = []
        for res in pending:
            rec = res if isinstance(res, dict) else res.get()
            reused = rec.pop("journaled", False)
            rec["reused"] = reused  # read back from the journal (--resume), not run now
            if journal is not None and not reused:
                with journal.open("a") as f:
                    f.write(json.dumps(rec) + "\n")
            records.append(rec)
            out.append(rec)
            val = f" val={rec['val_accuracy']:.3f}" if "val_accuracy" in rec else ""
            print(f"[{len(records)} {time.perf_counter() - started:6.0f}s] {rec['phase']:5s} {rec['model']} "
                  f"{rec['method']:16s} S={rec['sparsity']:.3f} seed={rec['seed']} {json.dumps(rec['knobs'])}"
                  f"{val} acc={rec['accuracy']:.3f} measured={rec['measured']:.4f} ({rec['seconds']:.0f}s)", flush=True)
        return out

    for model in models:  # loaded once here, inherited by the forked workers
        load_data(sets[model]["data"], sets[model]["T"], sets[model]["limit"])
    cells = [(mo, s) for mo in models for s in sparsities]
    chosen: dict = {}  # (model, method, sparsity) -> the chosen knobs
    ctx = mp.get_context("fork" if sys.platform != "win32" else "spawn")
    with (ctx.Pool(args.procs, initializer=_init, initargs=(args.threads,)) if args.procs > 1 else _Inline()) as pool:
        if "lats_sens" in methods:  # each net's sensitivity file where --sensitivity gives none
            folder = (journal.parent if journal is not None else Path(tempfile.mkdtemp()))
            probes = [dict(task(mo, "dense", 0.0, seeds[0], {"probe": "sensitivity"}, "tune"),
                           probe=str(folder / f"{journal.stem[:-5] if journal else 'quality'}_sensitivity_{mo}"))
                      for mo in models if mo not in (args.sensitivity or {})]
            for rec in run_all(pool, probes):
                args.sensitivity = {**(args.sensitivity or {}), rec["model"]: rec["sensitivity_json"]}
        for stage in ([m for m in grids if m not in FROM_LATS and m != "dense"], [m for m in grids if m in FROM_LATS]):
            tune = []
            for mo, s in cells:
                for me in stage:
                    extra = {"lats_threshold": chosen[mo, "lats", s]["threshold"]} if me in FROM_LATS else {}
                    if len(grids[me]) == 1 and not (me == "lats" and any(m in FROM_LATS for m in grids)):
                        chosen[mo, me, s] = {"knobs": {**grids[me][0], **extra}}
                        continue
                    tune += [task(mo, me, s, seeds[0], {**k, **extra}, "tune") for k in grids[me]]
            done = run_all(pool, tune)
            for mo, s in cells:
                for me in stage:
                    runs = [r for r in done if (r["model"], r["method"], r["sparsity"]) == (mo, me, s)]
                    if runs:
                        best = choose(runs, s)
                        chosen[mo, me, s] = {"knobs": best["knobs"], "threshold": best.get("threshold")}
        final = [task(mo, me, s, sd, chosen[mo, me, s]["knobs"], "final") for sd in seeds for mo, s in cells
                 for me in methods if me != "dense"]
        final += [task(mo, "dense", 0.0, sd, {}, "final") for sd in seeds for mo in models if "dense" in methods]
        final.sort(key=lambda t: (t["model"] != "snn", t["seed"]))  # the heavy SNN runs first
        run_all(pool, final)
    return records, skipped


# -- results -----------------------------------------------------------------------------------
def summarise(records: list[dict], sparsities: list[float]) -> dict:
    """(model, method) -> sparsity -> mean/std of accuracy and measured sparsity."""
    cells: dict = {}
    for r in records:
        if r.get("phase", "final") != "final":
            continue
        cols = sparsities if r["method"] == "dense" else [r["sparsity"]]
        for s in cols:
            cells.setdefault(r["model"], {}).setdefault(r["method"], {}).setdefault(f"{s:g}", []).append(r)
    out: dict = {}
    for model, methods in cells.items():
        for method, cols in methods.items():
            for s, rs in cols.items():
                acc = [r["accuracy"] for r in rs]
                meas = [r["measured"] for r in rs]
                cell = {"acc_mean": statistics.fmean(acc), "acc_std": statistics.stdev(acc) if len(acc) > 1 else 0.0,
                        "train_acc_mean": statistics.fmean(r["train_accuracy"] for r in rs),
                        "measured_mean": statistics.fmean(meas), "measured_min": min(meas),
                        "measured_max": max(meas), "n": len(rs)}
                cell["nonzero_mean"] = statistics.fmean(r["nonzero"] for r in rs)
                if all("ops_per_sample" in r for r in rs):
                    cell["ops_mean"] = statistics.fmean(r["ops_per_sample"] for r in rs)
                    cell["energy_mean"] = statistics.fmean(r["energy_pj_per_sample"] for r in rs)
                cell["knobs"] = rs[0].get("knobs", {})
                pre = [r["pre_projection"] for r in rs if "pre_projection" in r]
                if pre:
                    cell["pre_projection_mean"] = statistics.fmean(pre)
                out.setdefault(model, {}).setdefault(method, {})[s] = cell
    return out


def machine() -> dict:
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "python": platform.python_version()}


def describe(st: dict) -> str:
    """One line of a net's setting."""
    kw = ", ".join(f"{k}={v}" for k, v in st["kw"].items())
    data = ("static digits 1x8x8, direct coding" if st["data"] == "digits" else "digits_dvs event frames 2x24x24")
    opt = f"SGD lr {st['lr']:g} momentum {st['momentum']:g}" if st["opt"] == "sgd" else f"AdamW lr {st['lr']:g}"
    floor = ("the Pruner's default floor" if st["floor"] is None
             else f"floor {st['floor']} weights per layer (at most the weights the target leaves per layer)")
    return (f"`sew_digits({kw})` on {data}, T={st['T']}; {opt}, weight decay {st['wd']:g}, per-step cosine to 0, "
            f"batch {st['batch']}, {st['epochs']} epochs; target reached at {st['reach']:.0%} of the run, then the "
            f"mask frozen; {floor}" + ("" if st["limit"] is None else f"; {st['limit']} samples per split"))


def timing(records: list[dict]) -> dict:
    """net -> median and total seconds of every run of the grid (those read back from the journal included)."""
    out = {}
    for model in MODELS:
        secs = [r["seconds"] for r in records if r["model"] == model]
        if secs:
            out[model] = {"median": statistics.median(secs), "total": math.fsum(secs), "runs": len(secs)}
    return out


def _cell(cell: dict | None, target: float, with_measured: bool) -> str:
    if cell is None:
        return "–"
    text = f"{100 * cell['acc_mean']:.1f} ± {100 * cell['acc_std']:.1f}"
    if with_measured:
        return text + f" / {100 * cell['measured_mean']:.2f}"
    off = target > 0 and abs(cell["measured_mean"] - target) > 5e-4
    return text + (f" (at {100 * cell['measured_mean']:.2f}%)" if off else "")


def readme_table(summary: dict, sparsities: list[float]) -> str:
    """SNN and ANN side by side, accuracy only, "(at x%)" where the target was not landed."""
    models = [m for m in MODELS if m in summary]
    head = [f"{m.upper()} {100 * s:g}%" for m in models for s in sparsities]
    lines = ["| method | " + " | ".join(head) + " |", "|---|" + "---|" * len(head)]
    for method in METHODS:
        if not any(method in summary[m] for m in models):
            continue
        cells = [_cell(summary[m].get(method, {}).get(f"{s:g}"), 0.0 if method == "dense" else s, False)
                 for m in models for s in sparsities]
        lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def markdown(summary: dict, args, info: dict, wall: float) -> str:
    cols = [f"{s:g}" for s in args.sparsities]
    sets = info["settings"]
    made = info["timing"]
    lines = [
        "# Accuracy against sparsity on the embedded digits (`python bench/quality.py`)",
        "",
        f"Command: `{info['command']}`",
        "",
        f"Machine: {info['machine']['cpu']}, {info['machine']['cores']} cores (shared), torch "
        f"{info['machine']['torch']}, Python {info['machine']['python']}; torch threads {args.threads} per process, "
        f"{args.procs} processes; wall time {wall / 60:.1f} min"
        + (f" for the {info['made']} runs made now (--resume: {info['reused']} read back from {args.name}_runs.jsonl, "
           "made by earlier invocations)." if info.get("reused") else ".")
        + (f" {args.note}" if args.note else ""),
        "",
        "Time per run (median over every run of the grid): "
        + "; ".join(f"{NAMES[m]} {t['median']:.1f} s ({t['runs']} runs, {t['total'] / 60:.1f} process-min)"
                    for m, t in made.items())
        + f"; the whole grid {sum(t['total'] for t in made.values()) / 60:.1f} process-min, "
        f"{sum(t['total'] for t in made.values()) / 120:.1f} min on 2 processes (`--plan` measures one run per "
        "net and projects the wall time).",
        "",
    ]
    if info.get("skipped"):
        lines += ["Rows not run here: " + "; ".join(f"{LABELS[m]}: {why}" for m, why in info["skipped"].items())
                  + ".", ""]
    for model in MODELS:
        if model in sets and model in summary:
            lines.append(f"Setting, {NAMES[model]}: {describe(sets[model])}.")
            lines.append("")
    lines += [
        f"Tuning: every row gets the same budget of {args.budget} settings of its own knobs (`GRIDS` in "
        f"`bench/quality.py`; the table at the end), each trained once (seed {args.seeds[0]}) on "
        f"{100 * (1 - VAL_FRACTION):g}% of the training split and scored on the other {100 * VAL_FRACTION:g}% "
        "(stratified, never the test set); the setting with the best validation accuracy among those on target "
        "is then trained on the whole training split with every seed and reported on the test set.",
        "",
        "The same setting, epochs, initial weights and batches for every row of a net. Cell: test accuracy mean ± "
        "std over the seeds (%) / measured sparsity (mean over the seeds, %, zeros over every conv and linear weight "
        "of the finalized model). How each row reaches the target: the docstring of `bench/quality.py`; in short "
        "LATS = the λ controller (`target_sparsity`), the closed-form shapes = D from the LATS run of the first seed "
        "and an exact projection onto the target at the reach step (their sparsity before it: `pre_projection` in "
        "the JSON), STR/LTP/smooth threshold = `target_sparsity` (regulariser feedback + projection at the reach "
        "step; they learn their own thresholds, so the floors act at the projection only; STR has no regulariser), "
        "GMP = cubic to the reach step, magnitude = one-shot at the reach step; then every mask is frozen for the "
        "rest of the run.",
    ]
    for model in MODELS:
        if model not in summary:
            continue
        lines += ["", f"## {NAMES[model]}", "",
                  "| method | " + " | ".join(f"{float(c) * 100:g}%" for c in cols) + " | train acc. at "
                  f"{float(cols[-1]) * 100:g}% |", "|---|" + "---|" * (len(cols) + 1)]
        for method in METHODS:
            row = summary[model].get(method)
            if row is None:
                continue
            cells = [_cell(row.get(c), float(c), True) for c in cols]
            last = row.get(cols[-1])
            cells.append("–" if last is None else f"{100 * last['train_acc_mean']:.1f}")
            lines.append(f"| {LABELS[method]} | " + " | ".join(cells) + " |")
    lines += tuning_table(info.get("tuning", []))
    lines += ["", "Raw records (per run: phase, knobs, accuracy, validation and train accuracy, measured sparsity, "
              "sparsity at the reach step, non-zeros per layer, operations and energy per test sample, final "
              f"threshold, seconds): `{args.name}.json`. Plots: `{args.name}.png`, `{args.name}_pareto.png`.", ""]
    return "\n".join(lines)


def knobs_text(knobs: dict) -> str:
    """One setting of a grid in words (the D and λ taken from LATS left out: they follow from it)."""
    shown = {k: v for k, v in knobs.items() if k not in ("lats_threshold", "allocation")}
    return ", ".join(f"{k}={json.dumps(v, sort_keys=True)}" for k, v in shown.items()) or "default"


def tuning(records: list[dict]) -> list[dict]:
    """Per (net, row, target): every setting tried with its validation accuracy and measured sparsity,
    and the one chosen (what the final runs used)."""
    out = []
    tuned = [r for r in records if r.get("phase") == "tune" and r["method"] != "dense"]
    for key in dict.fromkeys((r["model"], r["method"], r["sparsity"]) for r in tuned):
        runs = [r for r in tuned if (r["model"], r["method"], r["sparsity"]) == key]
        best = choose(runs, key[2])
        out.append({"model": key[0], "method": key[1], "sparsity": key[2], "chosen": best["knobs"],
                    "tried": [{"knobs": r["knobs"], "val_accuracy": r["val_accuracy"], "measured": r["measured"],
                               "accuracy": r["accuracy"]} for r in runs]})
    return out


def tuning_table(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    lines = ["", "## Tuning (validation split, seed of the first column; chosen setting in bold)", "",
             "| net | row | target | setting: validation accuracy % / measured sparsity % |", "|---|---|---|---|"]
    for row in rows:
        tried = [(f"**{knobs_text(t['knobs'])}**" if t["knobs"] == row["chosen"] else knobs_text(t["knobs"]))
                 + f": {100 * t['val_accuracy']:.1f} / {100 * t['measured']:.2f}" for t in row["tried"]]
        lines.append(f"| {row['model'].upper()} | {LABELS[row['method']]} | {100 * row['sparsity']:g}% | "
                     + "; ".join(tried) + " |")
    return lines


def plot(summary: dict, args, path: Path, sets: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [m for m in MODELS if m in summary]
    fig, axes = plt.subplots(1, len(models), figsize=(6.5 * len(models), 6.2), sharey=True, squeeze=False)
    cmap = plt.get_cmap("tab20")
    x = list(range(len(args.sparsities)))
    single = len(x) == 1
    for ax, model in zip(axes[0], models):
        for i, method in enumerate(METHODS):
            row = summary[model].get(method)
            if row is None:
                continue
            ys = [100 * row[f"{s:g}"]["acc_mean"] if f"{s:g}" in row else math.nan for s in args.sparsities]
            es = [100 * row[f"{s:g}"]["acc_std"] if f"{s:g}" in row else math.nan for s in args.sparsities]
            style = dict(lw=2.6, color="black") if method == "lats" else dict(lw=1.4, color=cmap(i))
            if method == "dense":
                style = dict(lw=1.2, color="grey", ls="--")
            if single:  # one target: a bar per method
                ax.bar(i, ys[0], yerr=es[0], capsize=3, color=style["color"], label=LABELS[method])
                ax.text(i, max(ys[0] - 6, 1), f"{ys[0]:.1f}", ha="center", fontsize=7,
                        color="white" if ys[0] > 12 else "black")
            else:
                ax.errorbar(x, ys, yerr=es, marker="o", ms=4, capsize=3, label=LABELS[method], **style)
        st = sets[model]
        kw = ", ".join(f"{k}={v}" for k, v in st["kw"].items())
        if single:
            ax.set_xticks([])
            ax.set_xlabel(f"target sparsity {100 * args.sparsities[0]:g}% (conv + linear weights)")
        else:
            ax.set_xticks(x, [f"{100 * s:g}%" for s in args.sparsities])
            ax.set_xlabel("target sparsity (conv + linear weights)")
        ax.set_title(f"{NAMES[model]}, sew_digits({kw}) on {st['data']}\n{st['opt']} {st['lr']:g}, "
                     f"{st['epochs']} epochs, mask frozen at {st['reach']:.0%}, {len(args.seeds)} seeds", fontsize=10)
        ax.grid(alpha=0.3)
        ax.set_ylim(0, 100)
    axes[0][0].set_ylabel("test accuracy (%)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def pareto(results: list[dict], path: Path) -> None:
    """Test accuracy against non-zero weights and against operations per test sample (SNN: SOPs plus
    the first layer's MACs on analog input; ANN: MACs), one point per row, target and width (the
    ``width`` of ``--kw``) of ``results`` (saved ``<name>.json`` files), the non-dominated points of each
    net joined."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points: dict = {m: [] for m in MODELS}
    for res in results:  # from the runs, so that results written before the counts were added still plot
        for model, rows in summarise(res["runs"], res["config"]["sparsities"]).items():
            width = res["settings"][model]["kw"].get("width", 1)
            for method, cols in rows.items():
                for s, cell in cols.items():
                    if method != "dense" or s == next(iter(cols)):
                        points[model].append((method, width, cell))
    models = [m for m in MODELS if points[m]]
    fig, axes = plt.subplots(len(models), 2, figsize=(13, 5.2 * len(models)), squeeze=False)
    cmap = plt.get_cmap("tab20")
    markers = {1: "o", 2: "s", 3: "^", 4: "D"}
    for row, model in zip(axes, models):
        for ax, key, label in ((row[0], "nonzero_mean", "non-zero conv + linear weights"),
                               (row[1], "ops_mean", "operations per test sample (SOPs + MACs)")):
            shown = [(me, w, c) for me, w, c in points[model] if key in c]
            for method, width, cell in shown:
                ax.errorbar(cell[key], 100 * cell["acc_mean"], yerr=100 * cell["acc_std"], capsize=2,
                            marker=markers.get(width, "x"), ms=6, ls="none",
                            color="grey" if method == "dense" else cmap(METHODS.index(method)))
            front, best = [], -1.0  # the non-dominated points: fewer weights (operations) and more accuracy
            for x, acc in sorted((c[key], c["acc_mean"]) for _, _, c in shown):
                if acc > best:
                    front.append((x, 100 * acc))
                    best = acc
            if front:
                ax.step(*zip(*front), where="post", color="black", lw=0.8, alpha=0.6)
            else:
                ax.text(0.5, 0.5, "no operation counts in these results", ha="center", transform=ax.transAxes)
            ax.set_xscale("log")
            ax.set_xlabel(label)
            ax.set_ylabel("test accuracy (%)")
            ax.set_title(f"{NAMES[model]} (marker: width 1 circle, 2 square, 3 triangle)", fontsize=10)
            ax.grid(alpha=0.3, which="both")
    handles = [plt.Line2D([], [], color="grey" if m == "dense" else cmap(METHODS.index(m)), marker="o", ls="none",
                          label=LABELS[m]) for m in METHODS if any(m == p[0] for ps in points.values() for p in ps)]
    fig.legend(handles=handles, fontsize=8, loc="lower center", ncol=4, frameon=False)
    fig.tight_layout(rect=(0, 0.9 / fig.get_figheight(), 1, 1))  # the legend's 0.9 inch below the axes
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plan(args) -> int:
    """Time one LATS run per net at the highest target and project the grid's wall time."""
    sets = settings(args)
    s = max(args.sparsities)
    pruned = [m for m in args.methods if m != "dense"]
    tune = sum(min(args.budget, len(GRIDS[m])) for m in pruned)
    tune += min(args.budget, len(GRIDS["lats"])) if "lats" not in pruned and set(pruned) & set(FROM_LATS) else 0
    n_pruned = (len(pruned) * len(args.seeds) + tune) * len(args.sparsities)
    n_dense = len(args.seeds) if "dense" in args.methods else 0
    work = 0.0
    for model in args.models:
        rec = run_one({"model": model, "method": "lats", "sparsity": s, "seed": args.seeds[0],
                       "threads": args.threads, "setting": sets[model]})
        work += rec["seconds"] * (n_pruned + n_dense)
        print(f"{NAMES[model]}: {rec['seconds']:.1f} s per run ({sets[model]['epochs']} epochs), "
              f"{n_pruned + n_dense} runs ({tune * len(args.sparsities)} of them tuning, budget {args.budget}); "
              f"LATS at {s:g}: {100 * rec['accuracy']:.1f}% at {100 * rec['measured']:.2f}%")
    print(f"grid: about {work / 60 / args.procs:.0f} min on {args.procs} processes")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    p.add_argument("--sparsities", nargs="+", type=float, default=[0.9, 0.95, 0.99, 0.995])
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--data", default="digits", choices=["digits", "digits_dvs"])
    p.add_argument("--T", type=int, default=4, help="time steps (event frames: bins)")
    p.add_argument("--kw", nargs="*", default=[], metavar="KEY=VALUE", help="sew_digits keywords, e.g. width=4")
    p.add_argument("--opt", nargs="+", default=["snn=adamw", "ann=sgd"], metavar="[NET=]sgd|adamw")
    p.add_argument("--lr", nargs="+", default=["snn=0.01", "ann=0.1"], metavar="[NET=]LR")
    p.add_argument("--momentum", type=float, default=0.9, help="SGD momentum")
    p.add_argument("--wd", type=float, default=0.0, help="weight decay (every parameter, thresholds included)")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--reach", type=float, default=0.75, help="fraction of the run where the target is reached")
    p.add_argument("--floor", nargs="+", default=["snn=40", "ann=default"], metavar="[NET=]N|default",
                   help="min_weights per pruned layer (default: the Pruner's default_floor)")
    p.add_argument("--limit", type=int, default=None, help="samples per split (a fixed random subset)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--procs", type=int, default=2, help="processes over the grid")
    p.add_argument("--budget", type=int, default=4, help="settings of each row's knobs tried (GRIDS; 1: no tuning)")
    p.add_argument("--sensitivity", nargs="+", default=None, metavar="[NET=]PATH",
                   help="the `snnprune sensitivity` JSON of each net, for the sensitivity-allocation row")
    p.add_argument("--quick", action="store_true",
                   help="lats, magnitude and PAT, budget 2, 90%%, seed 0, 1 epoch, 128 samples, SNN")
    p.add_argument("--pareto", nargs="+", type=Path, default=None, metavar="JSON",
                   help="only draw <name>_pareto.png from these results (e.g. one per width)")
    p.add_argument("--plan", action="store_true", help="time one run per net and project the grid's wall time")
    p.add_argument("--resume", action="store_true", help="skip the runs already in <out>/<name>_runs.jsonl")
    p.add_argument("--note", default="", help="a sentence added to the machine line (how the journal was made)")
    p.add_argument("--name", default="quality", help="file names of the results: <name>.md, .json, .png")
    p.add_argument("--replot", type=Path, default=None, help="only redraw the plot from this quality.json")
    p.add_argument("--readme", type=Path, default=None, help="only print the README table of this quality.json")
    p.add_argument("--out", type=Path, default=None, help="results folder (default bench/results; --quick: none)")
    args = p.parse_args(argv)
    if args.quick:
        args.methods, args.sparsities, args.seeds, args.epochs = ["lats", "magnitude", "pat"], [0.9], [0], 1
        args.limit, args.procs, args.models, args.budget = args.limit or 128, 1, ["snn"], 2
    if args.budget < 1:
        raise SystemExit(f"error: --budget {args.budget}: give at least 1 setting per row")
    if args.sensitivity is not None:
        nets = [v.partition("=") for v in args.sensitivity]
        args.sensitivity = {m: v for net, sep, v in nets for m in ([net] if sep else MODELS)}
    out = args.out if args.out is not None else (None if args.quick else RESULTS)
    if args.pareto is not None:
        pareto([json.loads(f.read_text()) for f in args.pareto], (out or RESULTS) / f"{args.name}_pareto.png")
        return 0
    if args.replot is not None or args.readme is not None:
        saved = json.loads((args.replot or args.readme).read_text())
        for key in ("sparsities", "seeds"):
            setattr(args, key, saved["config"][key])
        if args.readme is not None:
            print(readme_table(saved["summary"], args.sparsities))
        else:
            plot(saved["summary"], args, (out or RESULTS) / f"{args.name}.png", saved["settings"])
        return 0
    if args.plan:
        return plan(args)
    started = time.perf_counter()
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        if not args.resume:
            (out / f"{args.name}_runs.jsonl").unlink(missing_ok=True)
    records, skipped = run_grid(args, None if out is None else out / f"{args.name}_runs.jsonl")
    wall = time.perf_counter() - started
    summary = summarise(records, args.sparsities)
    info = {"command": "python bench/quality.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
            "machine": machine(), "wall_seconds": wall, "reused": sum(r["reused"] for r in records),
            "made": sum(not r["reused"] for r in records), "timing": timing(records), "skipped": skipped,
            "tuning": tuning(records),
            "settings": {m: s for m, s in settings(args).items() if m in args.models},
            "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}}
    print(markdown(summary, args, info, wall))
    if out is not None:
        (out / f"{args.name}.json").write_text(json.dumps({**info, "summary": summary, "runs": records}, indent=1))
        (out / f"{args.name}.md").write_text(markdown(summary, args, info, wall))
        plot(summary, args, out / f"{args.name}.png", info["settings"])
        pareto([{"runs": records, "settings": info["settings"], "config": info["config"]}],
               out / f"{args.name}_pareto.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
