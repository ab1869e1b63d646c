# ruff: noqa  (research script, kept as it was measured)
"""Soft-threshold (LATS) pruning lab for the sew_digits SNN and its ANN twin.

Self-contained loop: snnprune is imported only for the model and data (the numbers in the README
were measured with snnprune at commit 6ab4e93).
The soft threshold is the LATS one: w = sign(θ)·max(|θ|-d_l, 0), straight-through gradient,
d_l = s_l·d(t), d(t) from a schedule (D-form over the real cosine LR, λ-form, or a controller).

Usage: python lab.py --data digits --D 0.05 [--twin] [...]; prints one JSON line (also --out).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn.utils import parametrize  # noqa: E402

torch.set_num_threads(1)

from spikingjelly.activation_based import neuron, surrogate  # noqa: E402

from snnprune.data import create_dataset  # noqa: E402
from snnprune.models import create_model  # noqa: E402

DATA_ROOT = os.environ.get("SNN99_DATA", os.path.join(os.path.dirname(os.path.abspath(__file__)), "data"))


# ----------------------------------------------------------------------------- data
def load_data(name: str, T: int):
    path = os.path.join(DATA_ROOT, f"{name}_T{T if name == 'digits_dvs' else 0}.pt")
    if os.path.exists(path):
        return torch.load(path)
    out = {}
    for split in ("train", "test"):
        kw = {"n_time_bins": T} if name == "digits_dvs" else {}
        ds = create_dataset(name, DATA_ROOT, split, **kw)
        xs, ys = zip(*[ds[i] for i in range(len(ds))])
        x = torch.stack(xs)
        if name == "digits_dvs":
            x = x.transpose(0, 1).contiguous()  # [T, N, C, H, W]
        out[split] = (x, torch.tensor(ys))
    os.makedirs(DATA_ROOT, exist_ok=True)
    torch.save(out, path)
    return out


def batches(x, y, bs, gen, shuffle, time_major):
    n = y.shape[0]
    idx = torch.randperm(n, generator=gen) if shuffle else torch.arange(n)
    for i in range(0, n, bs):
        j = idx[i:i + bs]
        yield (x[:, j] if time_major else x[j]), y[j]


# ----------------------------------------------------------------------------- soft threshold
class SoftThreshold(nn.Module):
    """w = θ - clamp(θ, -d, d): value sign(θ)max(|θ|-d,0); gradient 1 (ste) or the true one."""

    def __init__(self, ste=True):
        super().__init__()
        self.d = 0.0
        self.ste = ste
        self.mask = None

    def forward(self, theta):
        if self.mask is not None:
            return theta * self.mask
        if self.ste:
            return theta - theta.clamp(-self.d, self.d).detach()
        return F.softshrink(theta, self.d) if self.d > 0 else theta


def prunable(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


# ----------------------------------------------------------------------------- firing rates
class RateMeter:
    """Mean output of every spiking neuron layer (ANN: fraction of positive ReLU outputs)."""

    def __init__(self, model):
        self.names, self.sums, self.counts, self.chan_max = [], {}, {}, {}
        self.hooks = []
        for name, m in model.named_modules():
            if isinstance(m, (neuron.BaseNode, nn.ReLU)):
                self.names.append(name)
                self.hooks.append(m.register_forward_hook(self._hook(name)))
        self.on = False

    def _hook(self, name):
        def f(mod, inp, out):
            if not self.on:
                return
            o = (out > 0).float() if isinstance(mod, nn.ReLU) else out.detach()
            self.sums[name] = self.sums.get(name, 0.0) + float(o.sum())
            self.counts[name] = self.counts.get(name, 0) + o.numel()
            # per channel activity (any spike of that channel over the whole test set)
            ch = o.transpose(0, -3).reshape(o.shape[-3], -1).amax(1) if o.dim() >= 4 else o.reshape(-1, o.shape[-1]).amax(0)
            prev = self.chan_max.get(name)
            self.chan_max[name] = ch if prev is None else torch.maximum(prev, ch)
        return f

    def reset(self):
        self.sums, self.counts, self.chan_max = {}, {}, {}

    def rates(self):
        return {n: self.sums[n] / self.counts[n] for n in self.names if n in self.counts}

    def live_channels(self):
        return {n: float((self.chan_max[n] > 0).float().mean()) for n in self.names if n in self.chan_max}


# ----------------------------------------------------------------------------- helpers
@torch.no_grad()
def sparsity(model):
    layers, z, t = {}, 0, 0
    for n, m in prunable(model):
        w = m.weight
        zz = int((w == 0).sum())
        layers[n] = zz / w.numel()
        z += zz
        t += w.numel()
    return z / t, layers, t - z


@torch.no_grad()
def evaluate(model, data, bs, time_major, meter=None, scale=None):
    model.eval()
    x, y = data
    correct = 0
    if meter is not None:
        meter.reset()
        meter.on = True
    for xb, yb in batches(x, y, 256, None, False, time_major):
        o = model(xb)
        if scale is not None:
            o = o * scale
        correct += int((o.argmax(1) == yb).sum())
    if meter is not None:
        meter.on = False
    return correct / y.shape[0]


@torch.no_grad()
def recalibrate_bn(model, data, time_major, gen):
    """Recompute BN running stats with the final weights (cumulative average over one epoch)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m.momentum,) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
    model.train()
    x, y = data
    for xb, _ in batches(x, y, 64, gen, True, time_major):
        model(xb)
    for m, (mom,) in zip(bns, saved):
        m.momentum = mom


@torch.no_grad()
def project_to(model, reps, scales, target, floors=None):
    """Move the thresholds (one global value in the scope's units, up or down) so that the TOTAL
    sparsity over all conv/linear weights (dense layers included) is exactly ``target``: rank the
    latent |θ|/s_l (the soft threshold keeps their order), keep the top ``budget``; then the caller
    freezes the mask. Weights pruned earlier can come back if the run overshot the target."""
    total = sum(m.weight.numel() for _, m in prunable(model))
    dense_nnz = sum(int((m.weight != 0).sum()) for n, m in prunable(model) if n not in reps)
    budget = int(round(total * (1 - target))) - dense_nnz
    if budget <= 0:
        raise ValueError("the layers kept dense already exceed the budget")
    lat = {n: m.parametrizations.weight.original for n, (m, _) in reps.items()}
    def layer_scores(n):
        sc = (lat[n].abs() / scales[n]).flatten().clone()
        k = (floors or {}).get(n, 0)
        if k:
            sc[torch.topk(sc, min(k, sc.numel())).indices] = float("inf")
        return sc
    per = {n: layer_scores(n) for n in reps}
    scores = torch.cat(list(per.values()))
    top = torch.topk(scores, budget + 1).values
    kth, d_new = top[-2], top[-1]
    for n, (m, st) in reps.items():
        theta = lat[n]
        sc = per[n].view_as(theta)
        keep = sc >= kth
        w = torch.sign(theta) * (theta.abs() - d_new * scales[n]).clamp_min(0)
        # floor-forced weights that the global cut would zero keep their current effective value
        w = torch.where(keep & (w == 0), m.weight.detach(), w) * keep
        st.mask = keep.float()
        theta.copy_(w)
    return float(d_new)


def make_model(a, time_major_input):
    kw = dict(T=a.T, neuron=a.neuron)
    if a.data == "digits_dvs":
        kw.update(in_channels=2, input_size=24)
    model = create_model("sew_digits", twin=a.twin, **kw)
    if not a.twin:
        for m in model.modules():
            if isinstance(m, neuron.BaseNode):
                m.v_threshold = a.vth
                if a.surrogate == "atan":
                    m.surrogate_function = surrogate.ATan(alpha=a.alpha)
                elif a.surrogate == "sigmoid":
                    m.surrogate_function = surrogate.Sigmoid(alpha=a.alpha)
                elif a.surrogate == "tri":
                    m.surrogate_function = surrogate.PiecewiseQuadratic(alpha=a.alpha)
    if a.no_bn_affine_decay:
        pass
    return model


def cosine_lrs(lr, total, warmup=0):
    out = []
    for t in range(total):
        if t < warmup:
            out.append(lr * (t + 1) / warmup)
        else:
            x = (t - warmup) / max(total - warmup, 1)
            out.append(lr * 0.5 * (1 + math.cos(math.pi * x)))
    return out


def shape_fn(name, beta):
    if name == "linear":
        return lambda x: x
    if name == "sine":
        return lambda x: (1 - math.cos(math.pi * x)) / 2
    if name == "pgh":
        n = 2000
        grid = [beta ** (i / n) * (1 + math.cos(math.pi * i / n)) for i in range(n + 1)]
        cum = [0.0]
        for i in range(n):
            cum.append(cum[-1] + 0.5 * (grid[i] + grid[i + 1]) / n)
        return lambda x: cum[min(int(round(x * n)), n)] / cum[-1]
    raise ValueError(name)


# ----------------------------------------------------------------------------- main
def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="digits", choices=["digits", "digits_dvs"])
    p.add_argument("--twin", action="store_true")
    p.add_argument("--T", type=int, default=4)
    p.add_argument("--neuron", default="if")
    p.add_argument("--vth", type=float, default=1.0)
    p.add_argument("--surrogate", default="atan")
    p.add_argument("--alpha", type=float, default=2.0)
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--bs", type=int, default=64)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--opt", default="sgd")
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--wd", type=float, default=0.0)
    p.add_argument("--warmup", type=int, default=0, help="warmup epochs")
    p.add_argument("--schedule", default="lats", help="lats (D-form over real LR) | l1 (λ-form) | linear | sine | pgh | ctrl | none")
    p.add_argument("--D", type=float, default=0.0)
    p.add_argument("--l1", type=float, default=0.0)
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--target", type=float, default=0.99, help="controller target sparsity")
    p.add_argument("--ctrl_gain", type=float, default=0.05)
    p.add_argument("--ctrl_end", type=float, default=0.6, help="fraction of training where the controller reaches the target")
    p.add_argument("--scope", default="global", choices=["global", "layer", "layer_numel"])
    p.add_argument("--keep_first", action="store_true")
    p.add_argument("--keep_last", action="store_true")
    p.add_argument("--true_grad", action="store_true", help="no straight-through: pruned weights get no gradient")
    p.add_argument("--freeze_epoch", type=int, default=0, help="freeze the mask here (sparse fine-tuning after)")
    p.add_argument("--fc_scale", type=float, default=1.0, help="threshold multiplier of the last layer")
    p.add_argument("--logit_scale", action="store_true", help="learnable scalar on the logits (not pruned)")
    p.add_argument("--logit_scale_init", type=float, default=1.0)
    p.add_argument("--save", default="", help="save the final plain state dict (zeros baked in)")
    p.add_argument("--init_from", default="", help="load a state dict (e.g. a pruned ANN twin) first")
    p.add_argument("--fixed_mask", action="store_true", help="freeze the mask of the loaded weights at step 0")
    p.add_argument("--floor_first", type=int, default=0, help="min non-zero weights kept in the first layer")
    p.add_argument("--floor_last", type=int, default=0, help="min non-zero weights kept in the last layer")
    p.add_argument("--project", action="store_true", help="at freeze_epoch prune exactly to --target")
    p.add_argument("--recal", action="store_true", help="report accuracy after BN recalibration too")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no_bn_affine_decay", action="store_true")
    p.add_argument("--tag", default="")
    p.add_argument("--out", default="")
    p.add_argument("--trace", action="store_true", help="per-epoch log to stderr")
    a = p.parse_args(argv)

    t0 = time.time()
    torch.manual_seed(a.seed)
    data = load_data(a.data, a.T)
    time_major = a.data == "digits_dvs"
    model = make_model(a, time_major)
    if a.init_from:
        sd = torch.load(a.init_from)
        missing, unexpected = model.load_state_dict(sd, strict=False)
        assert not unexpected, unexpected
    layers = prunable(model)
    numel = {n: m.weight.numel() for n, m in layers}
    keep = set()
    if a.keep_first:
        keep.add(layers[0][0])
    if a.keep_last:
        keep.add(layers[-1][0])
    reps = {}
    for n, m in layers:
        if n in keep:
            continue
        st = SoftThreshold(ste=not a.true_grad)
        parametrize.register_parametrization(m, "weight", st)
        reps[n] = (m, st)
    if a.scope == "layer":
        scales = {n: float(m.parametrizations.weight.original.detach().pow(2).mean().sqrt()) for n, (m, _) in reps.items()}
    else:
        scales = {n: 1.0 for n in reps}
    last = layers[-1][0]
    floors = {}
    if a.floor_first and layers[0][0] in reps:
        floors[layers[0][0]] = a.floor_first
    if a.floor_last and last in reps:
        floors[last] = a.floor_last
    if last in scales:
        scales[last] *= a.fc_scale  # threshold multiplier of the readout layer
    logit_scale = nn.Parameter(torch.tensor(a.logit_scale_init)) if a.logit_scale else None

    params = list(model.parameters()) + ([logit_scale] if logit_scale is not None else [])
    if a.opt == "sgd":
        opt = torch.optim.SGD(params, lr=a.lr, momentum=a.momentum, weight_decay=a.wd)
    elif a.opt == "adam":
        opt = torch.optim.Adam(params, lr=a.lr, weight_decay=a.wd)
    else:
        raise ValueError(a.opt)
    spe = math.ceil(data["train"][1].shape[0] / a.bs)
    total = spe * a.epochs
    lrs = cosine_lrs(a.lr, total, a.warmup * spe)
    lr_total = sum(lrs)
    prune_steps = total if not a.freeze_epoch else a.freeze_epoch * spe
    lr_prune = sum(lrs[:prune_steps])
    shape = shape_fn(a.schedule, a.beta) if a.schedule in ("linear", "sine", "pgh") else None

    if a.fixed_mask:  # sparse training with the mask of the loaded weights, from step 0
        for n, (m, st) in reps.items():
            with torch.no_grad():
                st.mask = (m.parametrizations.weight.original != 0).float()
        frozen = True
    else:
        frozen = False
    meter = RateMeter(model)
    gen = torch.Generator().manual_seed(a.seed)
    d, lam, lr_sum, step = 0.0, a.l1, 0.0, 0
    ctrl_lam = None
    history = []

    def set_d(value):
        for n, (m, st) in reps.items():
            dl = value * scales[n]
            k = floors.get(n, 0)
            if k:  # per-layer floor: never let this layer fall below k non-zero weights
                lat = m.parametrizations.weight.original.detach().abs().flatten()
                if k < lat.numel():
                    dl = min(dl, float(torch.topk(lat, k + 1).values[-1]))
            st.d = dl

    for epoch in range(a.epochs):
        model.train()
        tl, tc, tn = 0.0, 0, 0
        gsum, gcount = {}, 0
        prev_masks = {n: (m.weight != 0).clone() for n, (m, _) in reps.items()} if reps else {}
        for xb, yb in batches(*data["train"], a.bs, gen, True, time_major):
            for g in opt.param_groups:
                g["lr"] = lrs[step]
            out = model(xb)
            if logit_scale is not None:
                out = out * logit_scale
            loss = F.cross_entropy(out, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            with torch.no_grad():
                for n, m in layers:
                    g = (m.parametrizations.weight.original.grad if n in reps else m.weight.grad)
                    gsum[n] = gsum.get(n, 0.0) + float(g.abs().mean())
                gcount += 1
            opt.step()
            tl += float(loss.detach()) * yb.shape[0]
            tc += int((out.argmax(1) == yb).sum())
            tn += yb.shape[0]
            lr_sum += lrs[step]
            step += 1
            if frozen or not reps:
                continue
            # --- move the threshold
            if a.schedule == "lats":
                d = a.D * min(lr_sum / lr_prune, 1.0)
            elif a.schedule == "l1":
                d += lam * lrs[step - 1]
            elif shape is not None:
                d = a.D * shape(min(step / prune_steps, 1.0))
            elif a.schedule == "ctrl":
                # feedback on λ (LATS λ-form d += λ·η, d never decreases): track a cubic sparsity
                # ramp (Zhu & Gupta) that reaches the target at x = ctrl_end, then holds it.
                # The error is measured in log-density (scale free near 99%); λ is multiplied by
                # exp(gain·err) each step, so it falls to ~0 when sparsity overshoots and the
                # straight-through weights regrow back to the target.
                x = min(step / prune_steps, 1.0)
                xe = min(x / a.ctrl_end, 1.0)
                s_ref = a.target * (1 - (1 - xe) ** 3)
                s_now = sparsity(model)[0]
                err = math.log(max(1 - s_now, 1e-9)) - math.log(max(1 - s_ref, 1e-9))  # >0: too dense
                if ctrl_lam is None:
                    ctrl_lam = a.l1 if a.l1 > 0 else 1e-2
                ctrl_lam *= math.exp(a.ctrl_gain * max(min(err, 1.0), -1.0))
                ctrl_lam = min(max(ctrl_lam, 1e-8), 1e3)
                d += ctrl_lam * lrs[step - 1]
            set_d(d)
            if a.freeze_epoch and step == prune_steps:
                if a.project:
                    d = project_to(model, reps, scales, a.target, floors)
                for n, (m, st) in reps.items():
                    with torch.no_grad():
                        w = m.weight.detach().clone()
                        st.mask = (w != 0).float()
                        m.parametrizations.weight.original.copy_(w)
                        st.d = 0.0
                frozen = True
        s_tot, s_layers, nnz = sparsity(model)
        regrown = 0
        if reps:
            for n, (m, _) in reps.items():
                now = m.weight != 0
                regrown += int((now & ~prev_masks[n]).sum())
        rec = dict(lnnz=[round((1 - s_layers[n]) * numel[n]) for n in numel], grad={n: round(v / gcount, 6) for n, v in gsum.items()}, epoch=epoch + 1, loss=tl / tn, train_acc=tc / tn, sparsity=s_tot, d=d, regrown=regrown, nnz=nnz)
        if a.trace:
            rec["test_acc"] = evaluate(model, data["test"], a.bs, time_major, scale=logit_scale)
            print(json.dumps(rec), file=sys.stderr, flush=True)
        history.append(rec)

    fc_mod = layers[-1][1]
    fc_in = []
    hk = fc_mod.register_forward_hook(lambda m, i, o: fc_in.append((float(i[0].abs().mean()), float(i[0].abs().max()), float(o.abs().mean()))))
    acc = evaluate(model, data["test"], a.bs, time_major, meter, scale=logit_scale)
    hk.remove()
    with torch.no_grad():
        wfc = fc_mod.weight.detach()
        nzw = wfc[wfc != 0]
        fc_stats = dict(in_mean=sum(x[0] for x in fc_in) / len(fc_in), in_max=max(x[1] for x in fc_in),
                        out_mean=sum(x[2] for x in fc_in) / len(fc_in),
                        w_nz_absmean=float(nzw.abs().mean()) if nzw.numel() else 0.0,
                        bn_gamma_last=[float(m.weight.abs().mean()) for m in model.modules()
                                       if isinstance(m, nn.modules.batchnorm._BatchNorm)])
    rates = meter.rates()
    live = meter.live_channels()
    s_tot, s_layers, nnz = sparsity(model)
    res = dict(
        tag=a.tag, args=vars(a), test_acc=acc, sparsity=s_tot, nnz=nnz, total_weights=sum(numel.values()),
        layer_sparsity=s_layers, layer_numel=numel, rates=rates, live_channels=live,
        dead_layers=[n for n, r in rates.items() if r == 0.0],
        fc_stats=fc_stats, final_d=d, logit_scale=None if logit_scale is None else float(logit_scale), train_acc=history[-1]["train_acc"], final_loss=history[-1]["loss"],
        sparsity_curve=[round(h["sparsity"], 4) for h in history],
        regrown=[h["regrown"] for h in history], grad_curve=[h["grad"] for h in history],
        acc_curve=[h.get("test_acc") for h in history], lnnz_curve=[h["lnnz"] for h in history], seconds=time.time() - t0,
    )
    if a.recal:
        recalibrate_bn(model, data["train"], time_major, torch.Generator().manual_seed(123))
        res["test_acc_recal"] = evaluate(model, data["test"], a.bs, time_major, scale=logit_scale)
    if a.save:
        for n, (m, st) in reps.items():
            parametrize.remove_parametrizations(m, "weight", leave_parametrized=True)
        torch.save(model.state_dict(), a.save)
    line = json.dumps(res)
    print(line)
    if a.out:
        with open(a.out, "a") as f:
            f.write(line + "\n")
    return res


if __name__ == "__main__":
    main()
