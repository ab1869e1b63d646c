"""count_ops on the networks researchers bring: snnTorch and Norse neurons, the Spikformer-style
fold-T pattern, multi-head attention, the rules table; SOPs checked against a brute-force count."""

import warnings

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from snnprune import Pruner
from snnprune.metrics import count_ops, firing_rates, ops_metrics
from snnprune.metrics.firing import SPIKING_NEURONS, is_spiking
from snnprune.metrics.ops import RULES, Synapses
from snnprune.selection import prunable_tensors

snn = pytest.importorskip("snntorch")


# ---------------------------------------------------------------- brute force


def brute_conv_sops(conv: nn.Conv2d, x: torch.Tensor) -> int:
    """For every non-zero input element: its value times the kept synapses it drives into valid
    output positions (output channel, kernel tap), found by walking the taps."""
    kept = (conv.weight != 0).tolist()
    (sh, sw), (ph, pw), (dh, dw) = conv.stride, conv.padding, conv.dilation
    cout, cin_g, kh, kw = conv.weight.shape
    out_h = (x.shape[2] + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    out_w = (x.shape[3] + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    per_group = cout // conv.groups
    total = 0
    values = x.tolist()
    for n, c, i, j in x.nonzero().tolist():
        g, ci = divmod(c, cin_g)
        fan_out = 0
        for o in range(g * per_group, (g + 1) * per_group):
            for a in range(kh):
                for b in range(kw):
                    yy, xx = i + ph - a * dh, j + pw - b * dw  # this input sits at tap (a, b) of output (yy/sh, xx/sw)
                    if yy % sh or xx % sw or not (0 <= yy // sh < out_h and 0 <= xx // sw < out_w):
                        continue
                    fan_out += kept[o][ci][a][b]
        total += int(values[n][c][i][j]) * fan_out
    return total


def brute_linear_sops(fc: nn.Linear, x: torch.Tensor) -> int:
    """For every non-zero input element: its value times the kept weights of its input column."""
    kept = fc.weight != 0
    rows = x.reshape(-1, x.shape[-1])
    return sum(int(rows[r, i]) * int(kept[:, i].sum()) for r, i in rows.nonzero().tolist())


class Inputs:
    """Forward hooks keeping every input a layer received."""

    def __init__(self, *layers):
        self.seen = {id(m): [] for m in layers}
        self.handles = [m.register_forward_hook(self._keep) for m in layers]

    def _keep(self, module, args, out):
        self.seen[id(module)].append(args[0].detach().clone())

    def __call__(self, module):
        return self.seen[id(module)]

    def remove(self):
        for h in self.handles:
            h.remove()


# ---------------------------------------------------------------- snnTorch


class SnnTorchConvNet(nn.Module):
    """The snnTorch tutorial's shape: a Python loop over T, Leaky neurons returning (spk, mem)."""

    def __init__(self, T=4):
        super().__init__()
        self.T = T
        self.conv1, self.lif1 = nn.Conv2d(1, 4, 3, padding=1), snn.Leaky(beta=0.9, threshold=0.3)
        self.conv2, self.lif2 = nn.Conv2d(4, 8, 3, stride=2, padding=1), snn.Leaky(beta=0.9, threshold=0.3)
        self.fc, self.lif3 = nn.Linear(8 * 4 * 4, 5), snn.Leaky(beta=0.9, threshold=0.3)

    def forward(self, x):
        m1, m2, m3 = self.lif1.reset_mem(), self.lif2.reset_mem(), self.lif3.reset_mem()
        spikes = []
        for _ in range(self.T):
            s1, m1 = self.lif1(self.conv1(x), m1)
            s2, m2 = self.lif2(self.conv2(s1), m2)
            s3, m3 = self.lif3(self.fc(s2.flatten(1)), m3)
            spikes.append(s3)
        return torch.stack(spikes), m3


def test_snntorch_conv_net_sops_equal_a_brute_force_count():
    torch.manual_seed(0)
    net = SnnTorchConvNet(T=4)
    Pruner(net, "magnitude", include=["conv2", "fc"]).prune_to(0.5)
    x = torch.rand(3, 1, 8, 8)
    inputs = Inputs(net.conv2, net.fc)
    with torch.no_grad():
        net(x)
    inputs.remove()
    want = {"conv2": sum(brute_conv_sops(net.conv2, v) for v in inputs(net.conv2)),
            "fc": sum(brute_linear_sops(net.fc, v) for v in inputs(net.fc))}
    assert want["conv2"] > 0 and want["fc"] > 0

    r = count_ops(net, x)  # no spiking= needed
    assert r.layers["conv2"].sops == want["conv2"] and r.layers["fc"].sops == want["fc"]
    assert r.sops == want["conv2"] + want["fc"]
    assert r.layers["conv1"].kind == "mac" and r.layers["conv1"].macs == 4 * 3 * 64 * 4 * 9  # analog stem, 4 steps
    assert r.T == 4 and r.batch_size == 3 and r.to_dict()["sops_per_sample"] == r.sops / 3
    # per step: the inputs of step t, counted alone
    assert [s.sops for s in r.layers["conv2"].per_step] == [brute_conv_sops(net.conv2, v) for v in inputs(net.conv2)]
    # firing rates: the spikes each Leaky emitted, per neuron and step
    assert set(r.firing_rates) == {"lif1", "lif2", "lif3"}
    assert r.firing_rates["lif1"] == pytest.approx(float(torch.stack(inputs(net.conv2)).mean()))
    assert 0 < r.mean_firing_rate < 1


def test_snntorch_neurons_are_recognised_in_every_output_form():
    torch.manual_seed(1)
    for cls, kwargs in [(snn.Leaky, {"beta": 0.5}), (snn.Synaptic, {"alpha": 0.5, "beta": 0.5}),
                        (snn.Lapicque, {"beta": 0.5}), (snn.Alpha, {"alpha": 0.6, "beta": 0.5}),
                        (snn.RLeaky, {"beta": 0.5, "linear_features": 4}),
                        (snn.RSynaptic, {"alpha": 0.5, "beta": 0.5, "linear_features": 4})]:
        for init_hidden in (False, True):  # spk alone, or (spk, mem, ...) tuples
            net = _Loop(cls(**kwargs, threshold=0.1, init_hidden=init_hidden))
            assert is_spiking(net), cls.__name__
            r = count_ops(net, torch.rand(5, 3))  # no spiking= needed
            assert list(r.firing_rates) == ["lif"] and r.mean_firing_rate > 0, (cls.__name__, init_hidden)
            assert r.layers["fc2"].kind == "sop" and r.layers["fc2"].T == 3, (cls.__name__, init_hidden)
            assert r.T == 3 and r.batch_size == 5


class _Loop(nn.Module):
    def __init__(self, lif):
        super().__init__()
        self.fc1, self.lif, self.fc2 = nn.Linear(3, 4), lif, nn.Linear(4, 2)
        self.fc1.weight.data.abs_()

    def forward(self, x):
        out = []
        for _ in range(3):
            spk = self.lif(self.fc1(x) + 1.0)
            out.append(self.fc2(spk[0] if isinstance(spk, tuple) else spk))
        return torch.stack(out)


def test_snntorch_hidden_state_is_reset_around_the_count():
    net = nn.Sequential(nn.Linear(2, 2), snn.Leaky(beta=1.0, threshold=10.0, init_hidden=True))
    x = torch.ones(1, 2)
    first = count_ops(net, x).firing_rates["1"]
    assert count_ops(net, x).firing_rates["1"] == first  # the membrane left by the first count is gone


# ---------------------------------------------------------------- Norse


def test_norse_cells_and_sequences_are_neurons():
    norse = pytest.importorskip("norse.torch")

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1, self.lif = nn.Linear(4, 6), norse.LIF()  # [T, N, ...] per call
            self.fc2, self.cell = nn.Linear(6, 3), norse.LIFBoxCell()  # one step per call
            self.li = norse.LICell()  # a leaky integrator: voltages, not spikes

        def forward(self, x):
            z, _ = self.lif(self.fc1(x))
            state, li_state, out = None, None, []
            for t in range(x.shape[0]):
                o, state = self.cell(self.fc2(z[t]), state)
                v, li_state = self.li(o, li_state)
                out.append(v)
            return torch.stack(out)

    torch.manual_seed(0)
    net = Net()
    x = torch.rand(5, 2, 4) * 200  # [T=5, N=2, 4], strong enough to fire
    inputs = Inputs(net.fc2)
    with torch.no_grad():
        net(x)
    inputs.remove()
    r = count_ops(net, x)
    assert set(r.firing_rates) == {"lif", "cell"}  # not the leaky integrator
    assert r.T == 5 and r.batch_size == 2
    assert r.layers["fc1"].kind == "mac" and r.layers["fc1"].T == 5  # a [T, N, F] input: 5 steps
    assert r.layers["fc2"].kind == "sop" and r.layers["fc2"].sops == sum(brute_linear_sops(net.fc2, v)
                                                                         for v in inputs(net.fc2)) > 0


def test_the_neuron_table_names_importable_classes():
    import importlib

    for (path, name), rule in SPIKING_NEURONS.items():
        assert rule in ("s", "m", "step_mode", None)
        root = path.partition(".")[0]
        if importlib.util.find_spec(root) is None:
            continue
        assert isinstance(getattr(importlib.import_module(path), name), type), (path, name)


def test_the_table_works_without_snntorch_and_norse(monkeypatch):
    import sys

    for name in [n for n in sys.modules if n == "snntorch" or n.startswith(("snntorch.", "norse"))]:
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed: importing them fails
    monkeypatch.setitem(sys.modules, "norse", None)
    sj = nn.Sequential(nn.Linear(2, 2), neuron.IFNode(v_threshold=0.5))
    assert is_spiking(sj) and count_ops(sj, torch.ones(1, 2)).mean_firing_rate is not None
    assert count_ops(nn.Linear(2, 2), torch.rand(1, 2)).mean_firing_rate is None


# ---------------------------------------------------------------- the fold-T pattern


class FoldT(nn.Module):
    """Spikformer-style: plain layers on ``x.flatten(0, 1)`` between multi-step neurons."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(2, 4, 3, padding=1, bias=False)
        self.lif1 = neuron.LIFNode(step_mode="m", v_threshold=0.05)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1, bias=False)
        self.lif2 = neuron.LIFNode(step_mode="m", v_threshold=0.05)
        self.fc = nn.Linear(4 * 6 * 6, 4)

    def forward(self, x):  # [T, N, 2, 6, 6]
        T, N = x.shape[:2]
        s = self.lif1(self.conv1(x.flatten(0, 1)).reshape(T, N, 4, 6, 6))
        s = self.lif2(self.conv2(s.flatten(0, 1)).reshape(T, N, 4, 6, 6))
        return self.fc(s.flatten(0, 1).flatten(1)).reshape(T, N, 4).mean(0)


def _events(T=4, N=2):
    torch.manual_seed(3)
    return (torch.rand(T, N, 2, 6, 6) < 0.3).float()


def test_fold_t_net_sops_equal_a_brute_force_count_per_sample():
    torch.manual_seed(0)
    net = FoldT()
    Pruner(net, "magnitude").prune_to(0.6)
    x = _events()
    inputs = Inputs(net.conv1, net.conv2, net.fc)
    with torch.no_grad():
        net(x)
    functional.reset_net(net)
    inputs.remove()
    want = {"conv1": brute_conv_sops(net.conv1, inputs(net.conv1)[0]),
            "conv2": brute_conv_sops(net.conv2, inputs(net.conv2)[0]),
            "fc": brute_linear_sops(net.fc, inputs(net.fc)[0])}
    r = count_ops(net, x)
    assert {n: r.layers[n].sops for n in want} == want and all(want.values())
    assert r.T == 4 and r.batch_size == 2  # from the neurons: not T*N = 8 samples of one step
    assert r.to_dict()["sops_per_sample"] == sum(want.values()) / 2
    # step t is rows t*N .. t*N + N-1 of the folded input
    folded = inputs(net.conv2)[0]
    assert [s.sops for s in r.layers["conv2"].per_step] == [brute_conv_sops(net.conv2, folded[2 * t:2 * t + 2])
                                                          for t in range(4)]
    assert all(lo.T == 4 for lo in r.layers.values())


def test_fold_t_counts_equal_the_same_net_in_spikingjelly_layers():
    torch.manual_seed(0)
    net = FoldT()
    sj = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1, bias=False), neuron.LIFNode(v_threshold=0.05),
                       layer.Conv2d(4, 4, 3, padding=1, bias=False), neuron.LIFNode(v_threshold=0.05),
                       layer.Flatten(), layer.Linear(4 * 6 * 6, 4))
    functional.set_step_mode(sj, "m")
    sj[0].weight.data.copy_(net.conv1.weight)
    sj[2].weight.data.copy_(net.conv2.weight)
    sj[5].load_state_dict(net.fc.state_dict())
    x = _events()
    a, b = ops_metrics(net, x), ops_metrics(sj, x)
    for key in ("sops", "sops_per_sample", "macs_per_sample", "energy_pj_per_sample", "T", "batch_size",
                "firing_rate"):
        assert a[key] == b[key], key


def test_t_and_batch_size_for_neurons_outside_the_table():
    class MyNeuron(nn.Module):  # a neuron of no known library: Heaviside of the input
        def forward(self, x):
            return (x > 0.2).float()

    net = FoldT()
    net.lif1, net.lif2 = MyNeuron(), MyNeuron()
    x = _events()
    with pytest.warns(UserWarning, match="spiking=True"):
        guessed = count_ops(net, x)  # no neuron: an ANN, but its layers get binary inputs
    assert guessed.sops == 0 and guessed.mean_firing_rate is None
    told = count_ops(net, x, spiking=True, T=4, batch_size=2)
    assert told.T == 4 and told.batch_size == 2 and told.layers["conv2"].kind == "sop"
    reference = FoldT()
    reference.load_state_dict(net.state_dict())
    reference.lif1, reference.lif2 = MyNeuron(), MyNeuron()
    inputs = Inputs(reference.conv2)
    with torch.no_grad():
        reference(x)
    assert told.layers["conv2"].sops == brute_conv_sops(reference.conv2, inputs(reference.conv2)[0])


def test_t_and_batch_size_that_disagree_with_the_neurons_warn():
    net, x = FoldT(), _events()
    with pytest.warns(UserWarning, match=r"T=8, batch_size=1 given, but the spiking neurons saw T=4 steps of batch 2"):
        r = count_ops(net, x, T=8, batch_size=1)
    assert r.batch_size == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        count_ops(net, x, T=4, batch_size=2)  # agreeing values: silent


# ---------------------------------------------------------------- firing rate None, the ANN warning


def test_firing_rate_is_none_without_neurons_and_zero_only_for_silent_neurons():
    ann = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    r = count_ops(ann, torch.rand(2, 3))
    assert r.mean_firing_rate is None and r.firing_rates == {} and "no spiking neuron" in str(r)
    assert ops_metrics(ann, torch.rand(2, 3))["firing_rate"] is None
    assert firing_rates(ann, torch.rand(2, 3)).mean is None
    silent = nn.Sequential(nn.Linear(3, 4), neuron.IFNode(v_threshold=100.0))
    assert count_ops(silent, torch.rand(2, 3)).mean_firing_rate == 0.0


def test_binary_inputs_to_an_ann_warn_once_and_spiking_false_silences_it():
    net = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        count_ops(net, x)
    assert len(caught) == 1 and "'0'" in str(caught[0].message) and "spiking=True" in str(caught[0].message)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        count_ops(net, x, spiking=False)
        count_ops(net, x + 0.5)  # real-valued: nothing to say


# ---------------------------------------------------------------- attention, rules, skipped


def test_attention_projections_are_counted_mask_aware():
    torch.manual_seed(0)
    model = nn.TransformerEncoder(nn.TransformerEncoderLayer(8, 2, 16, batch_first=True, dropout=0.0), 2)
    pruner = Pruner(model, "magnitude")
    pruner.prune_to(0.5)
    x = torch.rand(3, 5, 8)
    r = count_ops(model, x)
    assert set(r.skipped) == set()
    assert {name for name, _, _ in prunable_tensors(model)} == set(r.layers)
    masks = pruner.masks()
    rows = 3 * 5
    for i in range(2):
        attn = f"layers.{i}.self_attn"
        assert r.layers[f"{attn}.in_proj_weight"].macs == int(masks[f"{attn}.in_proj_weight"].sum()) * rows
        assert r.layers[f"{attn}.in_proj_weight"].dense_macs == 3 * 8 * 8 * rows
        assert r.layers[f"{attn}.out_proj"].macs == int(masks[f"{attn}.out_proj"].sum()) * rows
    assert r.batch_size == 3


def test_attention_on_spikes_counts_sops_per_projection():
    torch.manual_seed(0)
    attn = nn.MultiheadAttention(6, 2)  # sequence first: [L, N, E]
    with torch.no_grad():
        attn.in_proj_weight[torch.rand_like(attn.in_proj_weight) < 0.5] = 0
    q = (torch.rand(4, 2, 6) < 0.4).float()
    kv = (torch.rand(7, 2, 6) < 0.4).float()
    r = count_ops(attn, (q, kv, kv), spiking=True)
    w = attn.in_proj_weight
    want = sum(brute_linear_sops(_linear(w[i * 6:(i + 1) * 6]), t) for i, t in enumerate((q, kv, kv)))
    assert r.layers["in_proj_weight"].kind == "sop" and r.layers["in_proj_weight"].sops == want
    assert r.layers["out_proj"].kind == "mac" and r.layers["out_proj"].macs == 36 * 4 * 2
    assert r.batch_size == 2


def _linear(weight):
    fc = nn.Linear(weight.shape[1], weight.shape[0], bias=False)
    fc.weight.data.copy_(weight)
    return fc


def test_rules_table_extends_and_replaces():
    class Dense(nn.Module):  # a layer of the user's own: not an nn.Linear
        def __init__(self):
            super().__init__()
            self.weight = nn.Parameter(torch.tensor([[1.0, 0.0], [1.0, 1.0], [0.0, 0.0]]))

        def forward(self, x):
            return x @ self.weight.T

    net = nn.Sequential(Dense(), neuron.IFNode(v_threshold=0.5), nn.Linear(3, 1))
    x = torch.tensor([[1.0, 1.0]])
    assert "0" not in count_ops(net, x).layers
    r = count_ops(net, x, rules={Dense: lambda m, args, kwargs, out: [Synapses(args[0], m)]})
    assert r.layers["0"].kind == "sop" and r.layers["0"].sops == 3 and r.layers["0"].nnz == 3
    assert nn.Linear in RULES and Dense not in RULES  # the built-in table is left as it was
    r = count_ops(net, x, rules={nn.Linear: None})
    assert "2" not in r.layers and r.skipped == {"2": "no counting rule for Linear"}


def test_every_prunable_layer_is_counted_or_skipped_with_a_reason():
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 2, 3, padding=1)
            self.up = nn.ConvTranspose2d(2, 1, 2, stride=2)
            self.unused = nn.Linear(4, 4)

        def forward(self, x):
            return self.up(self.conv(x))

    r = count_ops(Net(), torch.rand(1, 1, 4, 4))
    assert set(r.layers) == {"conv"}
    assert r.skipped == {"up": "no counting rule for ConvTranspose2d", "unused": "not called in the forward"}
    assert "not counted up" in r.summary()


def test_conv_padding_modes_and_same_padding():
    torch.manual_seed(0)
    for kwargs in [dict(padding="same"), dict(padding=1, padding_mode="reflect"),
                   dict(padding=1, padding_mode="circular"), dict(padding="valid", stride=2)]:
        c = nn.Conv2d(2, 3, 3, bias=False, **kwargs)
        x = (torch.rand(2, 2, 6, 6) < 0.3).float()
        r = count_ops(c, x, spiking=True)
        padded = x
        if kwargs.get("padding_mode", "zeros") != "zeros":
            padded = nn.functional.pad(x, (1, 1, 1, 1), mode=kwargs["padding_mode"])
        stride = kwargs.get("stride", 1)
        pad = 1 if kwargs.get("padding") == "same" else 0
        want = nn.functional.conv2d(padded, torch.ones_like(c.weight), None, stride, pad).sum()
        assert r.dense_sops == want, kwargs
        out = c(x)
        assert r.layers[""].positions == out.shape[0] * out.shape[2] * out.shape[3], kwargs


def test_the_console_and_the_tables_take_a_firing_rate_of_none():
    import io

    from rich.console import Console

    from snnprune.report.console import ConsoleSink
    from snnprune.report.runs import to_markdown

    ann_epoch = {"epoch": 1, "train_loss": 0.5, "macs_per_sample": 1e6, "firing_rate": None}
    sink = ConsoleSink(Console(file=io.StringIO(), width=120))
    sink.on_epoch_end(ann_epoch)
    sink.on_epoch_end({**ann_epoch, "epoch": 2})
    assert "firing" not in sink.console.file.getvalue() and "1e+06" in sink.console.file.getvalue()
    assert "—" in to_markdown([{"recipe": "r", "firing_rate": None}], [("recipe", ""), ("firing_rate", "")])
