"""Operation counts, firing rates and energy, checked against counts made by hand."""

import doctest
import importlib

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn
from torch.nn.utils import parametrize

from snnprune.metrics.energy import ENERGY_TABLES, energy, ops_metrics
from snnprune.metrics.firing import firing_rates
from snnprune.metrics.ops import LayerOps, OpsReport, StepOps, count_ops
from snnprune.models import create_model


class Mask(nn.Module):
    """A plain mask parametrization: the effective weight is ``W * mask``."""

    def __init__(self, mask: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("mask", mask.float())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def conv(cin, cout, k, weight, **kw):
    c = nn.Conv2d(cin, cout, k, bias=False, **kw)
    with torch.no_grad():
        c.weight.copy_(torch.as_tensor(weight, dtype=torch.float32).reshape(c.weight.shape))
    return c


def image(h, w, events, c=1):
    """[1, c, h, w] map with ``events = {(ch, y, x): count}``."""
    x = torch.zeros(1, c, h, w)
    for (ch, y, xx), v in events.items():
        x[0, ch, y, xx] = v
    return x


# ---------------------------------------------------------------- SOPs counted by hand


def test_conv_sops_zero_weights_not_counted():
    # 1 -> 2 channels, k=2 on 3x3, 3 diagonal spikes; channel 0 has 2 of its 4 taps zero.
    c = conv(1, 2, 2, [[1, 0, 0, 1], [1, 1, 1, 1]])
    x = image(3, 3, {(0, 0, 0): 1, (0, 1, 1): 1, (0, 2, 2): 1})
    r = count_ops(c, x, spiking=True)
    # by hand: (0,0) -> 2 synapses, (1,1) -> 2+1+1+2 = 6 (dense 8), (2,2) -> 2
    assert (r.sops, r.dense_sops, r.macs) == (10, 12, 0)
    lo = r.layers[""]
    assert lo.kind == "sop" and lo.events == 3 and lo.positions == 4
    assert lo.dense_macs == 8 * 4 and lo.input_rate == pytest.approx(3 / 9)


def test_conv_sops_padding_and_sew_add_counts():
    # 3x3 kernel, padding 1, centre tap zero: a corner event drives 4 outputs, 3 through non-zero taps
    c = conv(1, 1, 3, [1, 1, 1, 1, 0, 1, 1, 1, 1], padding=1)
    assert count_ops(c, image(3, 3, {(0, 0, 0): 1}), spiking=True).sops == 3
    r = count_ops(c, image(3, 3, {(0, 1, 1): 1}), spiking=True)  # centre: all 9 outputs, 8 non-zero
    assert (r.sops, r.dense_sops) == (8, 9)
    # a SEW-ADD value 2 counts twice
    r = count_ops(c, image(3, 3, {(0, 0, 0): 2, (0, 1, 1): 1}), spiking=True)
    assert (r.sops, r.dense_sops, r.layers[""].events) == (2 * 3 + 8, 2 * 4 + 9, 3)


def test_conv_sops_stride_and_uncovered_inputs():
    # k=2, stride 2: each input reaches one output, through tap (y%2, x%2); weight diag(1, 1)
    c = conv(1, 1, 2, [1, 0, 0, 1], stride=2)
    x = image(5, 5, {(0, 0, 0): 1, (0, 0, 1): 1, (0, 3, 3): 1, (0, 2, 3): 1, (0, 4, 4): 1})
    r = count_ops(c, x, spiking=True)
    # (0,0) tap (0,0) -> 1; (0,1) tap (0,1) = 0; (3,3) tap (1,1) -> 1; (2,3) tap (0,1) = 0;
    # (4,4): row/column 4 is not covered by a 2x2 output -> no synapse at all
    assert (r.sops, r.dense_sops) == (2, 4)
    assert r.layers[""].positions == 4


def test_conv_sops_groups_and_depthwise():
    # groups=2, 1x1: channel 0 -> outputs 0, 1 (output 1 zero); channel 1 -> outputs 2, 3
    c = conv(2, 4, 1, [1, 0, 1, 1], groups=2)
    r = count_ops(c, image(2, 2, {(0, 0, 0): 1, (1, 0, 0): 1, (1, 1, 1): 2}, c=2), spiking=True)
    assert (r.sops, r.dense_sops) == (1 + 2 + 2 * 2, 2 + 2 + 2 * 2)
    # depthwise 3x3, padding 1, channel 1 all zero: its events cost nothing
    dw = conv(2, 2, 3, [1.0] * 9 + [0.0] * 9, padding=1, groups=2)
    r = count_ops(dw, image(3, 3, {(0, 1, 1): 1, (1, 1, 1): 1}, c=2), spiking=True)
    assert (r.sops, r.dense_sops) == (9, 18)
    assert r.layers[""].dense_macs == 18 * 9  # all weights x output positions


def test_conv_sops_match_brute_force():
    torch.manual_seed(1)
    for g, s, p, d in [(1, 1, 1, 1), (2, 2, 1, 1), (4, 1, 2, 2), (8, 2, 0, 1)]:
        c = nn.Conv2d(8, 8, 3, stride=s, padding=p, dilation=d, groups=g, bias=False)
        with torch.no_grad():
            c.weight[torch.rand_like(c.weight) < 0.5] = 0
        x = torch.randint(0, 3, (3, 8, 9, 9)).float()
        r = count_ops(c, x, spiking=True)
        conv2d = torch.nn.functional.conv2d
        assert r.sops == conv2d(x.double(), (c.weight != 0).double(), None, s, p, d, g).sum()
        assert r.dense_sops == conv2d(x.double(), torch.ones_like(c.weight).double(), None, s, p, d, g).sum()


def test_conv1d_sops():
    c = nn.Conv1d(1, 1, 2, bias=False)
    with torch.no_grad():
        c.weight.copy_(torch.tensor([[[1.0, 0.0]]]))
    x = torch.tensor([[[1.0, 1.0, 1.0]]])  # inputs 0, 1 reach tap 0 of outputs 0, 1; input 2 only tap 1
    assert count_ops(c, x, spiking=True).sops == 2


def test_linear_sops():
    # 4 -> 3, spikes on inputs 0, 1, 3; 6 of 12 weights zero; non-zero fan-out 2, 1, 3, 1
    fc = nn.Linear(4, 3)
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0, 1.0, 0.0], [1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 1.0, 1.0]]))
    r = count_ops(fc, torch.tensor([[1.0, 1.0, 0.0, 1.0]]), spiking=True)
    assert (r.sops, r.dense_sops) == (2 + 1 + 1, 9)
    r = count_ops(fc, torch.tensor([[2.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 0.0]]), spiking=True)
    assert (r.sops, r.layers[""].events, r.layers[""].positions) == (2 * 2 + 3 + 1, 4, 2)


# ---------------------------------------------------------------- MACs


def test_macs_of_real_valued_inputs():
    c = nn.Conv2d(2, 3, 3, padding=1, stride=2)  # 5x5 -> 3x3
    with torch.no_grad():
        c.weight.view(-1)[:10] = 0
    r = count_ops(c, torch.rand(2, 2, 5, 5) + 0.1)  # no spiking neuron: MACs
    lo = r.layers[""]
    assert lo.kind == "mac" and lo.positions == 2 * 9
    assert (r.macs, r.dense_macs, r.sops) == ((54 - 10) * 18, 54 * 18, 0)
    fc = nn.Linear(4, 5)
    with torch.no_grad():
        fc.weight[0] = 0
    r = count_ops(fc, torch.rand(3, 7, 4))  # 21 rows
    assert (r.macs, r.dense_macs) == (16 * 21, 20 * 21)


def test_spiking_flag():
    fc = nn.Linear(2, 2, bias=False)
    x = torch.tensor([[1.0, 0.0]])
    with pytest.warns(UserWarning, match="spiking=True"):  # binary inputs, yet no neuron: said once
        assert count_ops(fc, x).layers[""].kind == "mac"  # no neuron in the model: an ANN
    assert count_ops(fc, x, spiking=True).layers[""].kind == "sop"
    net = nn.Sequential(fc, neuron.IFNode())
    assert count_ops(net, x).layers["0"].kind == "sop"
    assert count_ops(net, x + 0.5).layers["0"].kind == "mac"  # analog input
    assert count_ops(net, x, spiking=False).layers["0"].kind == "mac"


def test_ann_twin_macs_by_hand():
    twin = create_model("sew_digits", twin=True)  # c16-{SEW-MP}-c32-{SEW-MP}-FC10 on 1x8x8
    r = count_ops(twin, torch.rand(3, 1, 8, 8))
    per_sample = 16 * 9 * 64 + 2 * 16 * 16 * 9 * 64 + 32 * 16 * 9 * 16 + 2 * 32 * 32 * 9 * 16 + 128 * 10
    assert r.sops == 0 and r.macs == r.dense_macs == 3 * per_sample
    assert all(lo.kind == "mac" and lo.T == 1 for lo in r.layers.values())
    assert r.T == 1 and r.batch_size == 3 and r.firing_rates == {}
    with torch.no_grad():
        twin.body.fc.weight[:5] = 0
    assert count_ops(twin, torch.rand(3, 1, 8, 8)).macs == 3 * (per_sample - 5 * 128)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "sew_resnet18_ann"])
def test_ann_dense_macs_equal_torch_flop_counter(name):
    from torch.utils.flop_counter import FlopCounterMode

    model = create_model(name, num_classes=10).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad(), FlopCounterMode(display=False) as flops:
        model(x)
    r = count_ops(model, x)
    assert 2 * r.dense_macs == flops.get_total_flops()  # conv + addmm FLOPs are 2 x MACs
    assert r.macs == r.dense_macs and r.sops == 0
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        convs[-1].weight.view(-1)[::2] = 0
    name_ = next(n for n, m in model.named_modules() if m is convs[-1])
    pruned = count_ops(model, x).layers[name_]
    assert pruned.macs == pruned.dense_macs - (convs[-1].weight.numel() + 1) // 2 * pruned.positions


# ---------------------------------------------------------------- pruned, parametrized layers


def test_parametrized_mask_is_counted_through_the_effective_weight():
    torch.manual_seed(0)
    plain = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 25, 3))
    masked = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1, bias=False), nn.Flatten(), nn.Linear(4 * 25, 3))
    masked.load_state_dict(plain.state_dict())
    masks = [torch.rand_like(masked[0].weight) < 0.5, torch.rand_like(masked[2].weight) < 0.3]
    parametrize.register_parametrization(masked[0], "weight", Mask(masks[0]))
    parametrize.register_parametrization(masked[2], "weight", Mask(masks[1]))
    with torch.no_grad():
        plain[0].weight.mul_(masks[0])
        plain[2].weight.mul_(masks[1])
    x = (torch.rand(2, 2, 5, 5) < 0.4).float()
    got, want = count_ops(masked, x, spiking=True), count_ops(plain, x, spiking=True)
    assert got.layers["0"].sops == want.layers["0"].sops < got.layers["0"].dense_sops
    assert got.layers["0"].nnz == int(masks[0].sum())
    assert got.layers["2"].kind == want.layers["2"].kind == "mac"  # conv output is real-valued
    assert got.layers["2"].macs == int(masks[1].sum()) * 2 < got.layers["2"].dense_macs
    assert parametrize.is_parametrized(masked[0], "weight")  # left as it was


def test_pruned_sew_resnet18_counts_fewer_sops():
    net = create_model("sew_resnet18", num_classes=10, T=2)
    _fire(net)
    x = torch.rand(2, 3, 32, 32)
    dense = count_ops(net, x)
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m is not net.body.conv1:
            parametrize.register_parametrization(m, "weight", Mask(torch.rand_like(m.weight) < 0.5))
    pruned = count_ops(net, x)
    assert pruned.layers["body.conv1"].macs == dense.layers["body.conv1"].macs  # stem: MACs, unpruned
    assert dense.sops > 0 and pruned.sops < 0.75 * dense.sops and pruned.dense_macs == dense.dense_macs
    assert pruned.T == 2 and sum(s.sops for s in pruned.per_step) == pruned.sops


# ---------------------------------------------------------------- time steps


def test_multi_step_layers_count_per_step():
    c = layer.Conv2d(1, 1, 2, bias=False, step_mode="m")
    with torch.no_grad():
        c.weight.copy_(torch.tensor([[[[1.0, 0.0], [1.0, 1.0]]]]))
    x = torch.zeros(2, 1, 1, 3, 3)  # [T=2, N=1, C, H, W]
    x[0, 0, 0, 1, 1] = 1  # t=0: centre event -> 3 non-zero taps (dense 4)
    x[1, 0, 0, 0, 0] = 2  # t=1: corner, count 2, reaches out(0,0) through tap (0,0) -> 2
    r = count_ops(c, x, spiking=True)
    steps = r.layers[""].per_step
    assert [s.sops for s in steps] == [3, 2] and [s.dense_sops for s in steps] == [4, 2]
    assert [s.events for s in steps] == [1, 2] and r.T == 2 and r.sops == 5
    assert [s.sops for s in r.per_step] == [3, 2]
    # the same counts through a SeqToANNContainer and through a single-step loop
    seq = layer.SeqToANNContainer(conv(1, 1, 2, [1, 0, 1, 1]))
    assert [s.sops for s in count_ops(seq, x, spiking=True).layers["0"].per_step] == [3, 2]
    single = layer.Conv2d(1, 1, 2, bias=False, step_mode="s")
    single.load_state_dict(c.state_dict())
    loop = _Loop(single)
    assert [s.sops for s in count_ops(loop, x, spiking=True).layers["layer"].per_step] == [3, 2]
    # a multi-step linear layer: [T, N, F]
    fc = layer.Linear(2, 2, bias=False, step_mode="m")
    with torch.no_grad():
        fc.weight.copy_(torch.tensor([[1.0, 0.0], [1.0, 1.0]]))
    r = count_ops(fc, torch.tensor([[[1.0, 1.0]], [[0.0, 1.0]]]), spiking=True)
    assert [s.sops for s in r.layers[""].per_step] == [3, 1]


class _Loop(nn.Module):
    def __init__(self, layer_):
        super().__init__()
        self.layer = layer_

    def forward(self, x):
        return torch.stack([self.layer(xt) for xt in x])


def test_spiking_net_counts_stem_macs_every_step():
    net = create_model("sew_digits", T=4)
    _fire(net)
    r = count_ops(net, torch.rand(3, 1, 8, 8))
    stem = r.layers["body.features.0.conv"]
    assert stem.kind == "mac" and stem.T == 4 and stem.macs == 4 * 3 * 64 * 16 * 9
    assert all(lo.kind == "sop" for name, lo in r.layers.items() if name != "body.features.0.conv")
    assert r.T == 4 and len(r.per_step) == 4 and r.batch_size == 3
    assert set(r.firing_rates) == {n for n, m in net.named_modules() if isinstance(m, neuron.BaseNode)}
    assert r.to_dict()["sops"] == r.sops and "layers" in r.to_dict(layers=True)
    assert "body.fc" in r.summary()


def test_dense_sops_equal_spikingjelly_synop_counter():
    from spikingjelly.activation_based.op_counter import (
        DispatchCounterMode,
        SynOpCounter,
    )

    torch.manual_seed(0)
    net = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1, stride=2), neuron.IFNode(v_threshold=0.2),
                        layer.Flatten(), layer.Linear(4 * 16, 5))
    functional.set_step_mode(net, "m")
    x = (torch.rand(3, 2, 2, 8, 8) < 0.3).float()
    mine = count_ops(net, x)
    counter = SynOpCounter()
    with torch.no_grad(), DispatchCounterMode([counter]):
        net(x)
    functional.reset_net(net)
    assert mine.layers["3"].events > 0
    assert mine.dense_sops == counter.get_total()


# ---------------------------------------------------------------- firing rates, side effects


def test_firing_rates_on_a_known_input():
    net = nn.Sequential(layer.Flatten(step_mode="m"), neuron.IFNode(v_threshold=1.0, step_mode="m"))
    x = torch.tensor([[[1.0, 0.5, 0.0, 2.0]], [[0.0, 0.5, 0.0, 0.0]], [[1.0, 0.0, 0.0, 0.0]]])  # [T=3, N=1, 4]
    # spikes: t0 neurons 0, 3; t1 neuron 1 (0.5 + 0.5); t2 neuron 0 -> 4 spikes / (4 neurons x 3 steps)
    rates = firing_rates(net, x)
    assert rates["1"] == pytest.approx(4 / 12)
    assert rates.layers["1"].per_step == pytest.approx([0.5, 0.25, 0.25])
    assert count_ops(net, x).firing_rates == {"1": pytest.approx(4 / 12)}


def test_counting_leaves_the_model_as_it_was():
    net = nn.Sequential(layer.Conv2d(1, 2, 3), layer.BatchNorm2d(2), neuron.IFNode())
    functional.set_step_mode(net, "m")
    net.train()
    before = net[1].running_mean.clone()
    count_ops(net, torch.rand(2, 4, 1, 5, 5))
    assert net.training and torch.equal(net[1].running_mean, before)
    assert not torch.is_tensor(net[2].v) or net[2].v.numel() == 1  # state reset after the count
    assert not net[0]._forward_hooks and not net[2]._forward_hooks


# ---------------------------------------------------------------- energy


def test_energy_arithmetic():
    report = OpsReport(layers={
        "stem": LayerOps("stem", "Conv2d", "mac", 9, 9, [StepOps(macs=1000, dense_macs=1000)] * 2),
        "fc": LayerOps("fc", "Linear", "sop", 4, 8, [StepOps(sops=500, dense_sops=900, dense_macs=700)]),
    })
    e = energy(report)
    assert e.breakdown_pj["mac"] == pytest.approx(2000 * 4.6)
    assert e.breakdown_pj["ac"] == pytest.approx(500 * 0.9)
    assert e.total_pj == pytest.approx(2000 * 4.6 + 500 * 0.9) and e.total_j == pytest.approx(e.total_pj * 1e-12)
    assert e.layers_pj == {"stem": pytest.approx(9200), "fc": pytest.approx(450)}
    assert e.dense_pj == pytest.approx(2700 * 4.6)
    assert energy(report, "45nm_int8").total_pj == pytest.approx(2000 * 0.23 + 500 * 0.03)
    assert energy(report, "lemaire_int32").total_pj == pytest.approx(2000 * 3.2 + 500 * 0.1)
    assert energy(report, {"mac": 1.0, "ac": 0.0}).total_pj == 2000
    with pytest.raises(ValueError, match="unknown energy table"):
        energy(report, "7nm")


def test_energy_tables_follow_spikingjelly_presets():
    from spikingjelly.activation_based.op_counter.simple_energy import (
        SimpleEnergyCostConfig,
    )

    assert (ENERGY_TABLES["45nm"].mac_pj, ENERGY_TABLES["45nm"].ac_pj) == (4.6, 0.9)
    for key in ("fp32", "fp16", "int8"):
        preset = getattr(SimpleEnergyCostConfig, key)()
        assert (ENERGY_TABLES[f"45nm_{key}"].mac_pj, ENERGY_TABLES[f"45nm_{key}"].ac_pj) == (
            preset.e_mac_pj, preset.e_ac_pj)


def test_ops_metrics_for_a_log_line():
    net = create_model("sew_digits", T=4)
    _fire(net)
    x = torch.rand(3, 1, 8, 8)
    m, r = ops_metrics(net, x), count_ops(net, x)
    assert (m["sops"], m["macs"], m["T"], m["batch_size"]) == (r.sops, r.macs, 4, 3)
    assert m["energy_pj"] == pytest.approx(r.sops * 0.9 + r.macs * 4.6)
    assert m["energy_pj_per_sample"] == pytest.approx(m["energy_pj"] / 3)
    assert 0 < m["firing_rate"] < 1


@pytest.mark.parametrize("name", ["snnprune.metrics.ops", "snnprune.metrics.firing", "snnprune.metrics.energy"])
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


def _fire(net: nn.Module) -> None:
    """Batch-norm shifts that make a freshly initialised SNN fire (eval mode)."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.bias.uniform_(0.2, 0.6)
                m.running_var.fill_(0.5)


def test_bench_quick_runs(tmp_path, load_bench):
    bench = load_bench("ops")
    result = bench.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "ops.md").exists() and (tmp_path / "ops.json").exists()
    assert result["ratio_to_forward"]["count_ops"] > 0 and result["counts"]["sops"] > 0


def test_a_soft_mask_is_counted_by_what_the_method_keeps():
    from snnprune import Pruner
    from snnprune.metrics import count_ops, sparsity

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
    pruner = Pruner(model, "ltp", method_kwargs={"tau_init": 1.0})  # τ = mean(w²): about 2/3 pruned
    assert (model[0].weight != 0).all()  # the sigmoid never reaches 0
    report = count_ops(model, torch.randn(3, 16))
    kept = 1 - sparsity(model).layers["0"]
    assert 0 < kept < 1
    assert report.layers["0"].macs == pytest.approx(kept * report.layers["0"].dense_macs)
    assert pruner.masks()["0"].sum() == report.layers["0"].nnz
