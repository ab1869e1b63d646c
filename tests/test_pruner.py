import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet
from torch import nn

from snnprune import LATS, STR, Constant, Linear, Pruner, SoftThreshold, prunable_layers, prune


def small_sew_resnet18(num_classes=10):
    net = sew_resnet.sew_resnet18(
        num_classes=num_classes,
        cnf="ADD",
        spiking_neuron=neuron.IFNode,
        surrogate_function=surrogate.ATan(),
        detach_reset=True,
    )
    functional.set_step_mode(net, "m")
    return net


def mlp():
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 32), nn.ReLU(), nn.Linear(32, 3))


def test_pruner_on_sew_resnet18_trains_sparsifies_and_finalizes():
    torch.manual_seed(0)
    net = small_sew_resnet18()
    optimizer = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)  # built before the pruner
    pruner = Pruner(net, "soft_threshold", Linear(final=0.02, total_steps=3))
    convs_and_fc = [n for n, m in net.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert pruner.layer_names == convs_and_fc
    assert "conv1" in pruner.layer_names and "fc" in pruner.layer_names
    assert len(pruner.layer_names) == 21  # stem + 16 block convs + 3 downsample convs + fc

    x = torch.rand(2, 2, 3, 32, 32)  # [T, N, C, H, W]
    target = torch.tensor([1, 7])
    sparsities = [pruner.sparsity().total]
    for _ in range(3):
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(net(x).mean(0), target)
        loss.backward()
        optimizer.step()
        pruner.step(optimizer)
        functional.reset_net(net)
        sparsities.append(pruner.sparsity().total)
    assert sparsities[0] == 0.0
    assert sparsities[-1] > 0.3 and sparsities == sorted(sparsities)

    net.eval()
    with torch.no_grad():
        pruned_out = net(x)
        functional.reset_net(net)
        report = pruner.sparsity()
        plain = pruner.finalize()
        plain_out = plain(x)
        functional.reset_net(plain)
    assert torch.equal(pruned_out, plain_out)
    assert not any("parametrizations" in k for k in plain.state_dict())
    fresh = small_sew_resnet18()
    fresh.load_state_dict(plain.state_dict(), strict=True)
    zeros = sum(int((m.weight == 0).sum()) for _, m in prunable_layers(fresh))
    assert zeros == report.zeros


def test_selects_layers_inside_seq_to_ann_container():
    net = nn.Sequential(
        layer.SeqToANNContainer(nn.Conv2d(2, 4, 3), nn.BatchNorm2d(4)),
        neuron.IFNode(step_mode="m"),
        layer.Flatten(step_mode="m"),
        layer.Linear(4 * 6 * 6, 5, step_mode="m"),
    )
    pruner = Pruner(net, "soft_threshold", Constant(0.01))
    assert pruner.layer_names == ["0.0", "3"]


def test_global_scope_uses_one_threshold_and_layer_scope_scales_per_layer():
    model = mlp()
    with torch.no_grad():
        model[2].weight.mul_(10)  # one layer lives on a larger scale
    glob = Pruner(model, "soft_threshold", Constant(0.05))
    assert set(glob.thresholds().values()) == {0.05}

    model = mlp()
    with torch.no_grad():
        model[2].weight.mul_(10)
    per_layer = Pruner(model, "soft_threshold", Constant(0.05), scope="layer")
    t = per_layer.thresholds()
    rms = {n: float(m.parametrizations.weight.original.detach().pow(2).mean().sqrt()) for n, m, _ in per_layer.layers()}
    for name in t:
        assert t[name] == pytest.approx(0.05 * rms[name])
    assert t["2"] > 5 * t["0"]


def test_prune_to_global_versus_layer_scope():
    model = mlp()
    with torch.no_grad():
        model[2].weight.mul_(10)
    pruner = Pruner(model, "soft_threshold", Constant(0.0), scope="global")
    pruner.prune_to(0.5)
    report = pruner.sparsity()
    assert report.total == pytest.approx(0.5, abs=1 / report.numel + 1e-9)
    # one cut for all: the small-scale layers go first, the large-scale layer keeps most weights
    assert report.layers["0"] > 0.9 and report.layers["4"] > 0.9 and report.layers["2"] < 0.4

    model = mlp()
    with torch.no_grad():
        model[2].weight.mul_(10)
    pruner = Pruner(model, "soft_threshold", Constant(0.0), scope="layer")
    pruner.prune_to(0.5)
    for fraction in pruner.sparsity().layers.values():
        assert fraction == pytest.approx(0.5, abs=0.02)


def test_prune_to_with_shift_keeps_surviving_weights_unchanged():
    model = mlp()
    before = {n: m.weight.detach().clone() for n, m in prunable_layers(model)}
    pruner = Pruner(model, "soft_threshold", Constant(0.0))
    pruner.prune_to(0.7, shift=True)
    for name, module, _ in pruner.layers():
        w = module.weight
        kept = w != 0
        assert torch.allclose(w[kept], before[name][kept], rtol=0, atol=1e-6)  # (θ + d) − d rounding
        assert torch.equal(kept, before[name].abs() > pruner.thresholds()[name])


def test_include_exclude_by_name_and_type():
    model = mlp()
    assert Pruner(model, "soft_threshold", Constant(0.1), include="2").layer_names == ["2"]
    model = mlp()
    assert Pruner(model, "soft_threshold", Constant(0.1), exclude=["0", "4"]).layer_names == ["2"]
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    assert Pruner(conv, "soft_threshold", Constant(0.1), include=nn.Conv2d).layer_names == ["0"]
    conv = nn.Sequential(nn.Conv2d(1, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    only_linear = Pruner(conv, "soft_threshold", Constant(0.1), include=lambda n, m: isinstance(m, nn.Linear))
    assert only_linear.layer_names == ["2"]


def test_first_and_last_layer_kept_dense_but_counted_in_total():
    model = mlp()
    pruner = Pruner(model, "soft_threshold", Constant(10.0), keep_first=True, keep_last=True)
    assert pruner.layer_names == ["2"]
    report = pruner.sparsity()
    assert report.layers["0"] == 0.0 and report.layers["4"] == 0.0 and report.layers["2"] == 1.0
    assert report.numel == 10 * 32 + 32 * 32 + 32 * 3
    assert report.total == pytest.approx(32 * 32 / report.numel)


def test_optimizer_built_after_the_pruner_works_too():
    model = mlp()
    pruner = Pruner(model, "soft_threshold", LATS(l1=1.0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model(torch.randn(4, 10)).sum().backward()
    optimizer.step()
    pruner.step(optimizer)
    assert pruner.threshold == pytest.approx(0.1)


def test_str_needs_its_thresholds_in_the_optimizer():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    pruner = Pruner(model, "str", method_kwargs={"s_init": -3.0})
    with pytest.raises(ValueError, match="pruner.parameters"):
        pruner.step(optimizer)
    optimizer.add_param_group({"params": list(pruner.parameters()), "weight_decay": 0.1})
    pruner.step(optimizer)
    assert all(isinstance(r, STR) for _, _, r in pruner.layers())


def test_pruner_state_dict_resumes_mid_training():
    def run(steps, resume_from=None):
        torch.manual_seed(1)
        model = mlp()
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
        sched = torch.optim.lr_scheduler.StepLR(optimizer, 3, 0.5)
        pruner = Pruner(model, "soft_threshold", LATS(l1=0.2))
        if resume_from is not None:
            model.load_state_dict(resume_from["model"])
            optimizer.load_state_dict(resume_from["optimizer"])
            sched.load_state_dict(resume_from["sched"])
            pruner.load_state_dict(resume_from["pruner"])
        data = torch.Generator().manual_seed(5)
        xs = [torch.randn(8, 10, generator=data) for _ in range(10)]
        for x in xs[pruner.steps : steps]:
            optimizer.zero_grad()
            model(x).pow(2).mean().backward()
            optimizer.step()
            pruner.step(optimizer)
            sched.step()
        return model, optimizer, sched, pruner

    full = run(10)[0]
    model, optimizer, sched, pruner = run(4)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "sched": sched.state_dict(),
        "pruner": pruner.state_dict(),
    }
    import io

    buffer = io.BytesIO()
    torch.save(state, buffer)
    buffer.seek(0)
    resumed = run(10, resume_from=torch.load(buffer, weights_only=True))[0]
    for a, b in zip(full.state_dict().values(), resumed.state_dict().values()):
        assert torch.equal(a, b)


def test_functional_front_and_custom_method():
    model = mlp()
    pruner = prune(model, SoftThreshold, Constant(0.2), method_kwargs={"threshold": 0.0})
    assert pruner.threshold == 0.2
    model = mlp()
    pruner = prune(model, SoftThreshold(), Constant(0.1))  # an instance is a prototype, copied per layer
    assert pruner.layer_names == ["0", "2", "4"]
    assert len({id(r) for _, _, r in pruner.layers()}) == 3
    with pytest.raises(TypeError, match="method must be a registered name"):
        prune(mlp(), lambda name, module: SoftThreshold(), Constant(0.1))


def test_freeze_fixes_mask_for_sparse_finetuning():
    model = mlp()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    pruner = Pruner(model, "soft_threshold", Constant(0.1))
    masks = pruner.masks()
    pruner.freeze()
    for _ in range(5):
        optimizer.zero_grad()
        model(torch.randn(8, 10)).pow(2).mean().backward()
        optimizer.step()
        pruner.step(optimizer)
    assert all(torch.equal(masks[n], m) for n, m in pruner.masks().items())


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"scope": "row"}, "scope"),
        ({"include": "nothing*"}, "no layer selected"),
        ({"method": "magic"}, "unknown pruning method"),
        ({"schedule": None}, "needs a threshold schedule"),
    ],
)
def test_bad_arguments_give_one_clear_error(kwargs, match):
    args = {"method": "soft_threshold", "schedule": Constant(0.1)}
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        Pruner(mlp(), args.pop("method"), args.pop("schedule"), **args)


def test_model_without_prunable_layer_is_rejected():
    with pytest.raises(ValueError, match="no prunable layer"):
        Pruner(nn.Sequential(nn.ReLU(), nn.BatchNorm1d(3)), "soft_threshold", Constant(0.1))


def test_str_with_a_schedule_is_rejected():
    with pytest.raises(ValueError, match="learns its threshold"):
        Pruner(mlp(), "str", Constant(0.1))
