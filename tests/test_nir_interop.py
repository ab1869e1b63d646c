"""The NIR graph of a pruned net is read by importers written elsewhere: SpikingJelly's gives the
same spikes as the source net, snnTorch's and Norse's build modules that run (and, where their
executors can follow the graph, give the same outputs); the pruned zeros survive."""

from __future__ import annotations

import json
import logging

import nir
import numpy as np
import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from spikingjelly.activation_based.nir_exchange import import_from_nir
from torch import nn

from snnprune import Pruner
from snnprune.export import export_nir
from snnprune.export._common import plain_copy
from snnprune.models import create_model

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")  # nirtorch.load, used by Norse


@pytest.fixture(autouse=True)
def _quiet_importers():
    logging.disable(logging.WARNING)  # Norse logs a warning per IF node (r = 1/dt is not 1)
    yield
    logging.disable(logging.NOTSET)


def _firing_and_pruned(net: nn.Module, pruner: bool = True) -> nn.Module:
    """Trained-looking BN statistics (so that every layer fires), then half the weights pruned:
    by an attached Pruner, or (``pruner=False``, quicker for a large net) zeroed at random."""
    g = torch.Generator().manual_seed(0)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.rand(n, generator=g) * 0.2 - 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            with torch.no_grad():
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(torch.rand(n, generator=g) * 0.5)
    if pruner:
        Pruner(net, "magnitude").prune_to(0.5)
    else:
        with torch.no_grad():
            for m in net.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    m.weight.mul_(torch.rand(m.weight.shape, generator=g) < 0.5)
    return net.eval()


def _digits():
    torch.manual_seed(0)
    net = _firing_and_pruned(create_model("sew_digits", in_channels=2, input_size=24, T=4))  # digits_snn_*'s
    return net, torch.randint(0, 3, (4, 1, 2, 24, 24)).float()  # event frames [T, N, C, H, W] of counts


def _sew_resnet18():
    torch.manual_seed(0)
    net = _firing_and_pruned(create_model("sew_resnet18", num_classes=10, T=2), pruner=False)
    return net, torch.rand(1, 3, 32, 32)


def _source_run(net, x):
    """Per-step outputs of the exported body and the spikes of each of its neurons, by NIR node name."""
    body, frames = net.body, net.encode(x)
    spikes, handles = {}, []
    for name, m in body.named_modules():
        if isinstance(m, neuron.BaseNode):
            key = name.replace(".", "_")
            handles.append(m.register_forward_hook(lambda mod, i, o, key=key: spikes.__setitem__(key, o.clone())))
    functional.reset_net(body)
    with torch.no_grad():
        out = body(frames)
    functional.reset_net(body)
    for h in handles:
        h.remove()
    return frames, out, spikes


def _step_through(module, frames):
    """Run an imported graph module one time step a call, passing its state on."""
    outs, state = [], None
    with torch.no_grad():
        for x_t in frames:
            out, state = module(x_t, state)
            outs.append(out)
    return torch.stack(outs)


def _spikingjelly_run(path, frames, names):
    imported = import_from_nir(str(path))  # single-step: SumPool2d is read as torch's LPPool2d
    spikes = {k: [] for k in names}
    for k in names:
        imported.get_submodule(k).register_forward_hook(lambda m, i, o, k=k: spikes[k].append(o[0].clone()))
    out = _step_through(imported, frames)
    return out, {k: torch.stack(v) for k, v in spikes.items()}


def _assert_same_spikes_and_zeros(net, x, path):
    frames, want, source_spikes = _source_run(net, x)
    got, spikes = _spikingjelly_run(path, frames, source_spikes)
    assert source_spikes and all(s.sum() > 0 for s in source_spikes.values()), "a silent layer proves little"
    for name, s in source_spikes.items():
        assert torch.equal(spikes[name], s), name
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    # every pruned weight is a zero of the graph, and nothing else is (BN folding scales channels)
    graph, finalized = nir.read(str(path)), dict(plain_copy(net).body.named_modules())
    weighted = [k for k, n in graph.nodes.items() if isinstance(n, (nir.Conv2d, nir.Affine, nir.Linear))
                and k.replace("_", ".") in {n.replace("_", ".") for n in finalized}]
    assert len(weighted) >= 3
    for key in weighted:
        module = next(m for n, m in finalized.items() if n.replace(".", "_") == key)
        assert np.array_equal(graph.nodes[key].weight == 0, module.weight.detach().numpy() == 0), key
    return frames, want


def test_the_digits_snn_goes_to_nir_and_spikingjelly_gives_the_same_spikes(tmp_path):
    net, x = _digits()
    pooled = []
    net.body.features[2].register_forward_hook(lambda m, i, o: pooled.append(i[0].max()))
    graph = export_nir(net, x, tmp_path / "digits.nir")
    _assert_same_spikes_and_zeros(net, x, tmp_path / "digits.nir")
    assert max(pooled) == 2  # the max pool saw SEW sums of 2: the second threshold level was used
    kinds = {type(n).__name__ for n in graph.nodes.values()}
    assert {"SumPool2d", "IF", "Conv2d", "Flatten", "Affine"} <= kinds and "BatchNorm2d" not in kinds
    assert list(graph.nodes)[0] == "input" and list(graph.nodes)[-1] == "output"


def _snntorch_outputs(path, frames):
    from snntorch.import_nir import import_from_nir as snntorch_import

    return _step_through(snntorch_import(nir.read(str(path))), frames)  # batch 1: see docs/export.md


def _norse_outputs(path, frames):
    import norse.torch

    return _step_through(norse.torch.from_nir(nir.read(str(path)), dt=1e-4), frames)


@pytest.mark.slow
def test_snntorch_and_norse_run_the_digits_snn(tmp_path, capsys):
    net, x = _digits()
    frames, want, _ = _source_run(net, x)
    export_nir(net, x, tmp_path / "lif.nir", if_node="LIF")
    got = _snntorch_outputs(tmp_path / "lif.nir", frames)
    torch.testing.assert_close(got.reshape(want.shape), want, atol=1e-5, rtol=1e-5)
    export_nir(net, x, tmp_path / "if.nir")
    assert torch.isfinite(_norse_outputs(tmp_path / "if.nir", frames)).all()
    capsys.readouterr()  # snnTorch prints its weight-scaling notes


@pytest.mark.slow
def test_sew_resnet18_goes_to_nir_and_three_importers_read_it(tmp_path, capsys):
    net, x = _sew_resnet18()
    graph = export_nir(net, x, tmp_path / "r18.nir")
    # the padded stem max pool is a channel-wise summing convolution; the 1x1 average pool vanishes
    assert isinstance(graph.nodes["maxpool_sum"], nir.Conv2d) and "avgpool" not in graph.nodes
    frames, want = _assert_same_spikes_and_zeros(net, x, tmp_path / "r18.nir")
    assert torch.isfinite(_norse_outputs(tmp_path / "r18.nir", frames)).all()
    export_nir(net, x, tmp_path / "lif.nir", if_node="LIF")
    got = _snntorch_outputs(tmp_path / "lif.nir", frames)
    torch.testing.assert_close(got.reshape(want.shape), want, atol=1e-5, rtol=1e-5)
    capsys.readouterr()


def _chain_with_identity_residual():
    """conv-IF, a SEW ADD block without downsample, max pooling of spikes, conv-IF, linear-IF."""
    from snnprune.models.sew_small import SEWBlock

    torch.manual_seed(0)
    net = nn.Sequential(layer.Conv2d(2, 8, 3, padding=1), neuron.IFNode(), SEWBlock(8, "if"),
                        layer.Conv2d(8, 8, 3, padding=1), layer.BatchNorm2d(8), neuron.IFNode(), layer.MaxPool2d(2),
                        layer.Flatten(), layer.Linear(8 * 4 * 4, 5), neuron.IFNode())
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            with torch.no_grad():
                m.bias.fill_(0.3)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                m.weight.abs_()
    functional.set_step_mode(net, "m")
    Pruner(net, "magnitude").prune_to(0.3)
    return net.eval(), (torch.rand(6, 1, 2, 8, 8) > 0.6).float()


def test_norse_gives_the_source_spikes_on_a_graph_without_branches_that_rejoin(tmp_path):
    import norse.torch

    net, x = _chain_with_identity_residual()
    functional.reset_net(net)
    with torch.no_grad():
        want = net(x)
    functional.reset_net(net)
    assert want.sum() > 0
    export_nir(net, x, tmp_path / "chain.nir")
    module = norse.torch.from_nir(nir.read(str(tmp_path / "chain.nir")), dt=1e-4)
    got = _step_through(module, x)
    assert torch.equal(got.reshape(want.shape), want)


# -- messages ----------------------------------------------------------------------------------------
def test_an_ann_twin_is_named_as_such_first(tmp_path):
    with pytest.raises(ValueError, match=r"an ANN twin is not a spiking net.*ONNX"):
        export_nir(create_model("sew_digits_ann"), torch.rand(1, 1, 8, 8), tmp_path / "x.nir")
    assert not (tmp_path / "x.nir").exists()


def test_max_pooling_of_analog_values_is_refused_by_layer_name(tmp_path):
    net = nn.Sequential(layer.Conv2d(1, 2, 3, padding=1), layer.MaxPool2d(2), neuron.IFNode())
    functional.set_step_mode(net, "m")
    with pytest.raises(ValueError, match=r"layer '1': MaxPool2d of analog values"):
        export_nir(net, torch.rand(2, 1, 1, 4, 4), tmp_path / "x.nir")


# -- the command line ----------------------------------------------------------------------------
def _run_folder(path, model_name: str, recipe_name: str, overrides=(), twin=False, **kwargs):
    """A run folder as training leaves it: its recipe and the plain final model."""
    from snnprune.recipe import load_recipe

    path.mkdir()
    (path / "recipe.json").write_text(load_recipe(recipe_name, overrides=list(overrides)).model_dump_json(indent=2))
    net = create_model(model_name, twin=twin, **kwargs)
    torch.save({"model": net.state_dict(), "model_name": model_name, "twin": twin, "model_kwargs": kwargs,
                "sparsity": 0.0, "channel_spec": None}, path / "final_model.pt")
    return net


def test_cli_names_an_ann_twin_run_as_such_in_one_line(tmp_path, capsys):
    from snnprune.cli import main

    _run_folder(tmp_path / "twin", "sew_digits", "digits_ann_lats", twin=True, in_channels=2, input_size=24)
    code = main(["export", str(tmp_path / "twin"), "--format", "nir", "--out", str(tmp_path / "t.nir")])
    err = capsys.readouterr().err
    assert code == 2 and "an ANN twin is not a spiking net" in err and len(err.strip().splitlines()) == 1
    assert "fuse_bn" not in err and "BatchNorm" not in err


@pytest.mark.slow
def test_cli_exports_a_sew_resnet18_run_folder_to_nir(tmp_path, capsys):
    from snnprune.cli import main

    run = tmp_path / "run"
    net = _run_folder(run, "sew_resnet18", "imagenet_sew_resnet18_lats", ["data.name=cifar10", "data.T=2"],
                      num_classes=10, cnf="ADD", T=2)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.Conv2d):
                m.weight.mul_(torch.rand_like(m.weight) < 0.5)  # half the weights pruned
    state = torch.load(run / "final_model.pt", weights_only=True)
    torch.save({**state, "model": net.state_dict()}, run / "final_model.pt")
    code = main(["export", str(run), "--format", "nir", "--out", str(tmp_path / "r18.nir")])
    assert code == 0, capsys.readouterr().err
    graph = nir.read(str(tmp_path / "r18.nir"))
    assert json.dumps(sorted(graph.nodes)[:1]) and "layer4_1_sn2" in graph.nodes
    zeros = sum(int((n.weight == 0).sum()) for n in graph.nodes.values() if isinstance(n, nir.Conv2d))
    assert zeros > 0.45 * sum(n.weight.size for n in graph.nodes.values() if isinstance(n, nir.Conv2d))


# -- the docs page -------------------------------------------------------------------------------
@pytest.mark.slow
def test_the_export_page_takes_the_digits_snn_from_training_to_nir_to_other_frameworks(
        tmp_path, monkeypatch, data_home, capsys):
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parent.parent / "docs" / "export.md").read_text()
    start = page.index("From training to a NIR file")
    code = re.search(r"```python\n(.*?)```", page[start:], re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(code, "docs/export.md", "exec"), {"__name__": "docs_export"})  # asserts inside
    assert (tmp_path / "digits.nir").is_file() and (tmp_path / "digits_lif.nir").is_file()
