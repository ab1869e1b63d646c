"""Channel pruning: the Optimal-Thresholding cut, BN sparsity, and surgery that shrinks the network
without changing what it computes when the removed channels were dead in their whole group."""

from __future__ import annotations

import json

import pytest
import torch
import torchvision
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet as sj_sew
from torch import nn

from snnprune.channels import (
    BNSparsity,
    ChannelSpec,
    channel_groups,
    channels_to_keep,
    optimal_threshold,
    prune_channels,
    prune_channels_by_mask,
    slimming_threshold,
)
from snnprune.models import create_model


@pytest.fixture(autouse=True)
def _one_thread():
    # one thread: on a shared, loaded machine two OpenMP threads spin against each other (10-50x slower)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- the cut ---------------------------------------------------------------------------------------
def test_optimal_threshold_removes_nothing_when_all_scales_are_equal():
    for n in (4, 5000):  # 5000 * 1e-3 > 1: ties must not straddle the cut
        gamma = torch.full((n,), 0.7)
        assert channels_to_keep(gamma, optimal_threshold(gamma)).all()


def test_optimal_threshold_removes_the_tiny_channels_next_to_a_dominant_one():
    gamma = torch.tensor([1e-4, -2e-4, 3e-4, 1.0, 1e-4])
    keep = channels_to_keep(gamma, optimal_threshold(gamma))
    assert keep.tolist() == [False, False, False, True, False]


def test_optimal_threshold_is_the_midpoint_of_the_largest_admissible_gap():
    # squares 1e-4, 4e-4, 0.25, 1: the two smallest carry 5e-4 <= 1e-3 * 1.2505, the third does not
    assert optimal_threshold(torch.tensor([0.5, 0.01, 1.0, -0.02])) == pytest.approx((0.02 + 0.5) / 2)


def test_a_layer_always_keeps_a_channel():
    gamma = torch.tensor([1e-8, 1.0])
    assert channels_to_keep(gamma, optimal_threshold(gamma, delta=0.999)).tolist() == [False, True]  # k <= n - 1
    assert channels_to_keep(torch.zeros(3), optimal_threshold(torch.zeros(3))).sum() == 1  # dead layer


def test_slimming_threshold_is_one_global_percentile():
    gammas = [torch.tensor([0.1, 0.4]), torch.tensor([0.2, 0.3, 0.5, 0.6])]
    t = slimming_threshold(gammas, 0.5)
    assert [channels_to_keep(g, t).tolist() for g in gammas] == [[False, True], [False, False, True, True]]


def test_a_channel_goes_only_when_every_bn_of_its_group_says_so():
    keep = channels_to_keep([torch.tensor([0.0, 0.0, 1.0]), torch.tensor([0.0, 1.0, 0.0])], [0.5, 0.5])
    assert keep.tolist() == [False, True, True]


# -- BN sparsity -----------------------------------------------------------------------------------
def _bn_net():
    net = nn.Sequential(nn.Conv2d(1, 4, 1), nn.BatchNorm2d(4), nn.Conv2d(4, 2, 1), nn.BatchNorm2d(2))
    with torch.no_grad():
        net[1].weight.copy_(torch.tensor([0.5, -0.3, 1e-5, -1e-5]))
        net[3].weight.copy_(torch.tensor([0.2, -0.2]))
    return net


def test_bn_sparsity_proximal_step_soft_thresholds_gamma_by_l1_times_its_groups_lr():
    net = _bn_net()
    opt = torch.optim.SGD([{"params": [net[1].weight], "lr": 0.1}, {"params": [net[3].weight], "lr": 0.5}], lr=0.1)
    bn = BNSparsity(net, l1=1e-3)
    bn.step(opt)
    assert net[1].weight.tolist() == pytest.approx([0.5 - 1e-4, -0.3 + 1e-4, 0.0, 0.0], abs=1e-7)
    assert net[3].weight.tolist() == pytest.approx([0.2 - 5e-4, -0.2 + 5e-4], abs=1e-7)
    assert (net[1].weight[2:] == 0).all()
    assert bn.state_dict() == {"l1": 1e-3, "proximal": True, "steps": 1, "names": ["1", "3"]}


def test_bn_sparsity_subgradient_mode_adds_l1_sign_gamma_to_the_gradient():
    net = _bn_net()
    bn = BNSparsity(net, l1=1e-2, include="1", proximal=False)
    net[1].weight.grad = torch.ones(4)
    bn.apply_subgradient()
    assert net[1].weight.grad.tolist() == pytest.approx([1.01, 0.99, 1.01, 0.99])
    assert bn.regularization().item() == pytest.approx(1e-2 * (0.5 + 0.3 + 2e-5))
    other = BNSparsity(_bn_net(), l1=5.0, include="1", proximal=False)
    other.load_state_dict(bn.state_dict())
    assert other.l1 == 1e-2


# -- surgery: dead channels go, outputs stay -------------------------------------------------------
def _randomise_bn(model: nn.Module, seed: int, gain: float = 1.0) -> None:
    """Random running statistics and affine parameters with beta > 0 (times ``gain``), so that neurons fire."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.5)
            with torch.no_grad():
                m.weight.copy_((torch.rand(n, generator=g) * 0.5 + 0.75) * gain)
                m.bias.copy_((torch.rand(n, generator=g) * 0.3 + 0.1) * gain)


def _kill_channels(model: nn.Module, example: torch.Tensor, frac: float, seed: int) -> dict[str, torch.Tensor]:
    """Zero gamma and beta of a ``frac`` of every group's channels in all of the group's BNs."""
    g = torch.Generator().manual_seed(seed)
    modules = dict(model.named_modules())
    dead = {}
    for group in channel_groups(model, example):
        chosen = set(torch.randperm(group.size, generator=g)[: int(frac * group.size)].tolist())
        for bn, (local, pos) in group.bns.items():
            idx = [loc for loc, p in zip(local, pos) if p in chosen]
            with torch.no_grad():
                modules[bn].weight[idx] = 0
                modules[bn].bias[idx] = 0
            dead[bn] = idx
    return dead


def _n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _run(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        functional.reset_net(model)
        out = model(x)
        functional.reset_net(model)
    return out


def _check_prune_is_exact(model, build, x, tmp_path, *, seed=0, frac=0.25, gain=1.0, fired=None):
    """Kill channels, prune by OT, compare outputs, then rebuild from a saved spec and compare again."""
    model.eval()
    _randomise_bn(model, seed, gain)
    dead = _kill_channels(model, x, frac, seed)
    before, ref = _n_params(model), _run(model, x)
    if fired is not None:
        assert fired() > 0, "no spike reached the last block: the comparison would prove little"
    model, spec = prune_channels(model, x, "optimal", delta=1e-6)
    assert _n_params(model) < before
    assert all(len(spec.removed(bn)) == len(idx) for bn, idx in dead.items() if idx)
    torch.testing.assert_close(_run(model, x), ref, atol=1e-5, rtol=1e-5)

    torch.save({"model": model.state_dict(), "channels": spec.to_state()}, tmp_path / "pruned.pt")
    ckpt = torch.load(tmp_path / "pruned.pt", weights_only=True)
    torch.manual_seed(seed + 1)
    fresh = ChannelSpec.from_state(ckpt["channels"]).apply(build())
    fresh.load_state_dict(ckpt["model"], strict=True)
    fresh.eval()
    torch.testing.assert_close(_run(fresh, x), ref, atol=1e-5, rtol=1e-5)
    return model, spec


def _spike_counter(module: nn.Module):
    counts = []
    module.register_forward_hook(lambda m, i, o: counts.append(float(o.sum())))
    return lambda: sum(counts)


@pytest.mark.parametrize("cnf", ["ADD", "AND", "IAND"])
def test_spikingjelly_sew_resnet18_multistep_prunes_dead_channels_exactly(cnf, tmp_path):
    def build():
        net = sj_sew.sew_resnet18(cnf=cnf, num_classes=10, spiking_neuron=neuron.IFNode,
                                  surrogate_function=surrogate.ATan(), detach_reset=True)
        functional.set_step_mode(net, "m")
        return net

    torch.manual_seed(0)
    net = build()
    x = torch.rand(2, 2, 3, 32, 32)  # [T, N, C, H, W]
    fired = _spike_counter(net.layer4[-1].sn2)
    net, _ = _check_prune_is_exact(net, build, x, tmp_path, fired=fired)
    assert net.layer1[0].conv1.out_channels == 48 and net.fc.in_features == 384
    assert net.conv1.step_mode == "m" and isinstance(net.sn1, neuron.IFNode) and not net.training


def test_torchvision_resnet18_prunes_dead_channels_exactly(tmp_path):
    torch.manual_seed(0)
    net, _ = _check_prune_is_exact(torchvision.models.resnet18(num_classes=10),
                                   lambda: torchvision.models.resnet18(num_classes=10),
                                   torch.rand(2, 3, 32, 32), tmp_path)
    assert net.layer4[1].bn2.num_features == 384


def test_option_a_resnet_streams_are_cut_on_both_sides_of_the_zero_padding_shortcut(tmp_path):
    """The option-A shortcut zero-pads 16 channels to 32: it is no element-wise op, so the 16- and
    32-channel streams are separate groups, and a 32-channel stream channel that carries a live
    16-channel one through the shortcut stays even when the BNs after the shortcut are dead."""
    torch.manual_seed(0)
    net, x = create_model("cifar_resnet20").eval(), torch.rand(2, 3, 32, 32)
    _randomise_bn(net, 0)
    dead = {"bn1": [3], "layer2.0.bn1": [5]}  # stage-1 stream channel 3 (fed to 8 + 3 = 11 by the pad)
    dead.update({f"layer1.{i}.bn2": [3] for i in range(3)})
    dead.update({f"layer2.{i}.bn2": [2, 11, 12] for i in range(3)})  # 2: a padded zero; 12 carries live 4
    modules = dict(net.named_modules())
    for bn, idx in dead.items():
        with torch.no_grad():
            modules[bn].weight[idx] = 0
            modules[bn].bias[idx] = 0
    ref = _run(net, x)
    keep = {bn: ~torch.isin(torch.arange(modules[bn].num_features), torch.tensor(idx)) for bn, idx in dead.items()}
    net, spec = prune_channels_by_mask(net, x, keep)
    torch.testing.assert_close(_run(net, x), ref, atol=1e-5, rtol=1e-5)
    assert net.layer1[0].conv1.in_channels == 15 and net.layer2[0].bn1.num_features == 31
    assert spec.removed("layer2.0.bn2") == [2, 11]  # 12 stays: its shortcut brings stage-1 channel 4
    assert net.layer3[0].shortcut.in_channels == 30 and len(net.layer3[0].shortcut.sources) == 64

    torch.save({"model": net.state_dict(), "channels": spec.to_state()}, tmp_path / "pruned.pt")
    ckpt = torch.load(tmp_path / "pruned.pt", weights_only=True)
    fresh = ChannelSpec.from_state(ckpt["channels"]).apply(create_model("cifar_resnet20"))
    fresh.load_state_dict(ckpt["model"], strict=True)
    torch.testing.assert_close(_run(fresh.eval(), x), ref, atol=1e-5, rtol=1e-5)


def test_torchvision_mobilenet_v2_prunes_dead_channels_exactly_depthwise_included(tmp_path):
    torch.manual_seed(0)
    net, spec = _check_prune_is_exact(torchvision.models.mobilenet_v2(num_classes=10),
                                      lambda: torchvision.models.mobilenet_v2(num_classes=10),
                                      torch.rand(2, 3, 32, 32), tmp_path)
    dw = net.features[2].conv[1][0]
    assert dw.groups == dw.in_channels == dw.out_channels < 96
    assert spec.kept("features.2.conv.1.0") == spec.kept("features.2.conv.0.0")


@pytest.mark.parametrize("twin", [False, True])
def test_snnprune_sew_digits_and_its_twin_prune_dead_channels_exactly(twin, tmp_path):
    kwargs = dict(in_channels=2, input_size=16, T=2, neuron="plif", twin=twin)
    torch.manual_seed(0)
    # float64: removing channels changes the order of a conv's sums, which moves a membrane potential
    # by an ulp; in float32 a neuron sitting on its threshold then flips a spike (seen: 0.05 on one CPU)
    net = create_model("sew_digits", **kwargs).double()
    x = torch.rand(2, 3, 2, 16, 16, dtype=torch.float64)  # event frames [T, N, C, H, W]
    fired = None if twin else _spike_counter(net.body.features[4].conv[1].sn)
    net, spec = _check_prune_is_exact(net, lambda: create_model("sew_digits", **kwargs).double(), x, tmp_path,
                                      frac=0.5, gain=3.0, fired=fired)  # PLIF halves its input
    assert net.body.fc.in_features == 16 * 4 * 4  # 32 -> 16 channels of the 4x4 map feed the classifier
    assert "body.fc" in spec.layers and spec.sizes["body.fc"]["in"] == 32 * 4 * 4


def test_a_dead_residual_branch_alone_does_not_remove_its_channel():
    torch.manual_seed(0)
    net = create_model("sew_digits", T=2, cnf="AND")
    block = net.body.features[1]
    with torch.no_grad():
        block.conv[1].bn.weight[:8] = 0  # the branch output, but not the stem BN of the same group
        block.conv[0].bn.weight[:8] = 0  # the block's inner BN: its own group
    net, spec = prune_channels(net, torch.rand(1, 1, 8, 8), delta=1e-6)
    assert net.body.features[0].conv.out_channels == 16
    assert block.conv[0].conv.out_channels == 8 and block.conv[1].conv.in_channels == 8
    assert spec.removed("body.features.1.conv.0.bn") == list(range(8))


def test_prune_by_mask_rounds_widths_and_respects_ignored_layers():
    net = torchvision.models.resnet18(num_classes=10)
    keep = {"layer1.0.bn1": torch.arange(64) < 13, "layer1.1.bn1": torch.arange(64) < 13}
    net, spec = prune_channels_by_mask(net, torch.rand(1, 3, 32, 32), keep, round_to=8,
                                       ignored_layers=["layer1.1.conv1"])
    assert net.layer1[0].conv1.out_channels == 16 and net.layer1[1].conv1.out_channels == 64
    assert len(spec.kept("layer1.0.conv1")) == 16


def test_slimming_criterion_cuts_about_percent_of_the_channels():
    torch.manual_seed(0)
    net = torchvision.models.resnet18(num_classes=10)
    _randomise_bn(net, 0)
    widths = sum(m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    net, spec = prune_channels(net, torch.rand(1, 3, 32, 32), "slimming", percent=0.3)
    left = sum(m.num_features for m in net.modules() if isinstance(m, nn.BatchNorm2d))
    assert 0.6 * widths < left < 0.95 * widths  # coupled groups veto part of the 30 %


# -- the benchmark's quick path --------------------------------------------------------------------
def test_channel_bench_quick_path_runs(tmp_path, load_bench):
    bench = load_bench("channels")
    bench.main(["--quick", "--threads", "1", "--models", "resnet18", "--profile", "--out", str(tmp_path)])
    rows = json.loads((tmp_path / "channels.json").read_text())["rows"]
    assert {r["variant"] for r in rows} >= {"dense", "pruned", "tp_plain"}
    assert [r["same_as_tp"] for r in rows if r["variant"] == "pruned"] == [True]  # Torch-Pruning's own cut
    assert all(0 < r["mac_ratio"] <= 1 for r in rows)
    assert (tmp_path / "channels.md").exists()
    ops = json.loads((tmp_path / "channels_profile.json").read_text())["rows"]
    conv = {r["variant"]: r["ms"] for r in ops if "convolution" in r["op"] and r["op"].startswith("aten::mkldnn")}
    assert set(conv) == {"dense", "pruned"} and all(v > 0 for v in conv.values())


# -- all or nothing --------------------------------------------------------------------------------
def _snapshot(model: nn.Module):
    """What a user sees of a model: its structure, attributes and every tensor's value and identity."""
    return (repr(model), {k: v.clone() for k, v in model.state_dict().items()},
            [id(p) for p in model.parameters()])


def _assert_unchanged(model: nn.Module, before) -> None:
    text, state, ids = before
    assert repr(model) == text and [id(p) for p in model.parameters()] == ids
    now = model.state_dict()
    assert now.keys() == state.keys() and all(torch.equal(now[k], v) for k, v in state.items())


def test_a_model_under_a_pruner_is_refused_before_anything_changes():
    from snnprune import Pruner

    torch.manual_seed(0)
    net = create_model("sew_digits", T=2)
    Pruner(net, "magnitude").prune_to(0.5)
    with torch.no_grad():
        net.body.features[0].bn.weight[8:] = 0
        net.body.features[1].conv[1].bn.weight[8:] = 0
    before = _snapshot(net)
    with pytest.raises(ValueError, match=r"a Pruner is attached.*pruner\.finalize\(\) first"):
        prune_channels(net, torch.rand(1, 1, 8, 8))
    _assert_unchanged(net, before)


class _FragileBN(nn.BatchNorm2d):
    """A batch norm the surgery cannot shrink: setting its width fails (as an unsupported layer would)."""

    def __setattr__(self, name, value):
        if name == "num_features" and hasattr(self, "num_features"):
            raise RuntimeError("this layer cannot change its width")
        super().__setattr__(name, value)


def test_a_cut_that_fails_midway_leaves_the_model_exactly_as_it_was():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),
                        nn.Conv2d(8, 8, 3), _FragileBN(8), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 2))
    keep = {"1": torch.arange(8) < 4, "4": torch.arange(8) < 4}  # the first group is cut, then the second fails
    before = _snapshot(net)
    with pytest.raises(RuntimeError, match="cannot change its width"):
        prune_channels_by_mask(net, torch.rand(1, 3, 8, 8), keep)
    _assert_unchanged(net, before)
    assert net[0].out_channels == 8 and net[1].num_features == 8 and net[3].in_channels == 8
    assert net(torch.rand(2, 3, 8, 8)).shape == (2, 2)


class _RepeatsItself(nn.Module):
    """The usual SpikingJelly net for static images: its forward makes the time axis itself."""

    def __init__(self, head: nn.Module, T: int = 3):
        super().__init__()
        self.T = T
        self.features = nn.Sequential(layer.Conv2d(3, 8, 3, padding=1), layer.BatchNorm2d(8), neuron.IFNode(),
                                      layer.Conv2d(8, 16, 3, padding=1), layer.BatchNorm2d(16), neuron.IFNode())
        self.head = head
        functional.set_step_mode(self, "m")

    def forward(self, x):
        return self.head(self.features(x.unsqueeze(0).repeat(self.T, 1, 1, 1, 1))).mean(0)


def _half_dead(net: _RepeatsItself) -> None:
    _randomise_bn(net, 0, gain=2.0)
    with torch.no_grad():
        for bn, n in ((net.features[1], 3), (net.features[4], 5)):
            bn.weight[:n] = 0
            bn.bias[:n] = 0


def test_a_multistep_net_that_makes_its_own_time_axis_is_traced_multistep():
    torch.manual_seed(0)
    head = nn.Sequential(layer.AdaptiveAvgPool2d(1), layer.Flatten(), layer.Linear(16, 10))
    net = _RepeatsItself(head).eval()
    _half_dead(net)
    x = torch.rand(2, 3, 8, 8)
    ref = _run(net, x)
    net, spec = prune_channels(net, x, "optimal", delta=1e-6)
    assert net.features[0].out_channels == 5 and net.head[2].in_features == 11
    assert net.features[0].step_mode == "m" and isinstance(net.features[2], neuron.IFNode)
    torch.testing.assert_close(_run(net, x), ref)


def test_a_time_axis_making_net_with_a_flatten_into_its_classifier_is_refused_in_one_line_and_kept():
    torch.manual_seed(0)
    net = _RepeatsItself(nn.Sequential(layer.Flatten(), layer.Linear(16 * 8 * 8, 10))).eval()
    _half_dead(net)
    before = _snapshot(net)
    with pytest.raises(RuntimeError) as info:
        prune_channels(net, torch.rand(2, 3, 8, 8), "optimal", delta=1e-6)
    assert "makes the time axis itself" in str(info.value) and "[T, N, C, H, W]" in str(info.value)
    assert len(str(info.value).splitlines()) == 1
    _assert_unchanged(net, before)
    # the workaround the message names: the part that takes [T, N, C, H, W]
    body = nn.Sequential(net.features, net.head)
    xs = torch.rand(3, 2, 3, 8, 8)
    ref = _run(body, xs)
    prune_channels(body, xs, "optimal", delta=1e-6)
    assert net.features[0].out_channels == 5 and net.head[1].in_features == 11 * 8 * 8
    torch.testing.assert_close(_run(body, xs), ref)
