"""Export: plain weights, compressed sparse weights, ONNX and NIR; each format is read back and
compared with the model, or passes the format's own checker."""

from __future__ import annotations

import pytest
import torch
from spikingjelly.activation_based import functional, layer, neuron
from torch import nn

from snnprune import Pruner
from snnprune.export import (
    ExportError,
    export_nir,
    export_onnx,
    export_sparse,
    export_state_dict,
    first_unmapped,
    fuse_conv_bn,
    load_sparse,
)
from snnprune.models import create_model
from snnprune.schedules import Constant


def _tiny_ann():
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 3)
    )


def _pruned(model, threshold=0.05):
    pruner = Pruner(model, "soft_threshold", Constant(threshold))
    assert pruner.sparsity().total > 0
    return pruner


def _digits(n=2):
    torch.manual_seed(1)
    return torch.rand(n, 1, 8, 8)


# -- plain state_dict ---------------------------------------------------------------------------


def test_state_dict_export_of_a_model_under_pruning_loads_strictly_and_leaves_the_live_model_working(tmp_path):
    model = _tiny_ann()
    _pruned(model)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    x = _digits()
    expected = model.eval()(x)
    path = export_state_dict(model, tmp_path / "plain.pt")
    fresh = _tiny_ann()
    fresh.load_state_dict(torch.load(path, weights_only=True))  # strict: the original keys only
    assert torch.equal(fresh.eval()(x), expected)
    # the live model still trains and forwards after the export
    model.train()
    model(x).sum().backward()
    optimizer.step()
    assert model.eval()(x).shape == (2, 3)


def test_state_dict_export_of_an_snn_matches_the_snn(tmp_path):
    snn = create_model("sew_digits", T=2).eval()
    path = export_state_dict(snn, tmp_path / "snn.pt")
    fresh = create_model("sew_digits", T=2).eval()
    fresh.load_state_dict(torch.load(path, weights_only=True))
    assert torch.equal(fresh(_digits()), snn(_digits()))


# -- compressed sparse --------------------------------------------------------------------------


def _at_sparsity(sparsity):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(256, 256), nn.Linear(256, 64))
    with torch.no_grad():
        for m in model:
            k = int(m.weight.numel() * sparsity)
            m.weight.view(-1)[torch.randperm(m.weight.numel())[:k]] = 0
    return model


def test_sparse_file_shrinks_monotonically_with_sparsity_and_round_trips_exactly(tmp_path):
    ratios = []
    for s in (0.0, 0.5, 0.7, 0.9, 0.95, 0.99):
        model = _at_sparsity(s)
        info = export_sparse(model, tmp_path / f"s{s}.pt")
        assert info.size_bytes == (tmp_path / f"s{s}.pt").stat().st_size
        ratios.append(info.ratio)
        state = load_sparse(tmp_path / f"s{s}.pt")
        assert state.keys() == model.state_dict().keys()
        assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    assert ratios == sorted(ratios, reverse=True) and len(set(ratios)) == len(ratios)
    # dense: a few header bytes more; sparse: a 1/32 mask plus the kept values
    assert ratios[0] < 1.01 and ratios[3] < 0.15 and ratios[-1] < 0.06


def test_sparse_file_is_plain_torch_save_data(tmp_path):
    export_sparse(_at_sparsity(0.8), tmp_path / "m.pt")
    blob = torch.load(tmp_path / "m.pt", weights_only=True)
    assert blob["format"] == "snnprune.sparse" and blob["masks"].dtype == torch.uint8


def test_sparse_export_of_a_pruned_snn_reproduces_its_outputs(tmp_path):
    snn = create_model("sew_digits", T=2)
    _pruned(snn)
    expected = snn.eval()(_digits())
    info = export_sparse(snn, tmp_path / "snn.pt")
    assert info.ratio < 1
    fresh = create_model("sew_digits", T=2).eval()
    fresh.load_state_dict(load_sparse(tmp_path / "snn.pt"))
    assert torch.equal(fresh(_digits()), expected)


def test_load_sparse_rejects_other_files(tmp_path):
    torch.save({"weight": torch.zeros(2)}, tmp_path / "plain.pt")
    with pytest.raises(ValueError, match="not an snnprune sparse file"):
        load_sparse(tmp_path / "plain.pt")


# -- ONNX -----------------------------------------------------------------------------------------


def _onnx_outputs(path, x):
    import onnx
    import onnxruntime as ort

    onnx.checker.check_model(str(path))
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {session.get_inputs()[0].name: x.numpy()})[0])


def test_onnx_export_of_a_pruned_ann_twin_runs_in_onnxruntime(tmp_path):
    twin = create_model("sew_digits_ann")
    _pruned(twin)
    path = export_onnx(twin, _digits(), tmp_path / "ann.onnx")
    expected = twin.eval()(_digits())
    assert torch.allclose(_onnx_outputs(path, _digits()), expected, atol=1e-4)


def test_onnx_export_of_the_multistep_snn_runs_in_onnxruntime(tmp_path):
    snn = create_model("sew_digits", T=2)
    path = export_onnx(snn, _digits(), tmp_path / "snn.onnx")
    assert torch.allclose(_onnx_outputs(path, _digits()), snn.eval()(_digits()), atol=1e-4)


class _SpikesAndMembrane(nn.Module):
    """snnTorch's usual output: the spike and membrane records over the time steps."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.fc.weight.abs_()

    def forward(self, x):
        mem, spikes, mems = torch.zeros(x.shape[1], 3), [], []
        for x_t in x:
            mem = 0.5 * mem + self.fc(x_t)
            spike = (mem > 0.2).float()
            mem = mem - spike * 0.2
            spikes.append(spike)
            mems.append(mem)
        return torch.stack(spikes), torch.stack(mems)


def test_onnx_export_checks_every_output_of_a_model_with_two(tmp_path):
    import onnxruntime as ort

    torch.manual_seed(0)
    net = _SpikesAndMembrane()
    x = torch.rand(4, 2, 4)
    path = export_onnx(net, x, tmp_path / "two.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    spikes, mems = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    want_spikes, want_mems = net(x)
    assert want_spikes.sum() > 0 and [o.name for o in session.get_outputs()] == ["output_0", "output_1"]
    assert torch.equal(torch.from_numpy(spikes), want_spikes)
    assert torch.allclose(torch.from_numpy(mems), want_mems, atol=1e-6)


def test_onnx_check_names_the_output_that_differs(tmp_path):
    from snnprune.export.onnx_export import _verify

    net, x = _SpikesAndMembrane(), torch.rand(3, 2, 4)
    path = export_onnx(net, x, tmp_path / "off.onnx", check=False)
    spikes, mems = net(x)
    _verify(path, x, [spikes, mems], atol=1e-6)
    with pytest.raises(ExportError, match=r"output 1 differs from the model's by up to 1 "):
        _verify(path, x, [spikes, mems + 1.0], atol=1e-6)


def test_onnx_export_names_the_cause_when_it_cannot_export(tmp_path):
    with pytest.raises(ExportError, match="Poisson encoder"):
        export_onnx(create_model("sew_digits", encoder="poisson"), _digits(), tmp_path / "p.onnx")

    class Bad(nn.Module):
        def forward(self, x):
            return torch.linalg.eigvals(x).real  # no ONNX operator

    with pytest.raises(ExportError, match="ONNX export of Bad failed: .*eig"):
        export_onnx(Bad(), torch.rand(3, 3), tmp_path / "bad.onnx")


# -- NIR ------------------------------------------------------------------------------------------


def _tiny_snn():
    torch.manual_seed(0)
    net = nn.Sequential(layer.Conv2d(2, 4, 3, padding=1), neuron.IFNode(), layer.Flatten(),
                        layer.Linear(4 * 6 * 6, 3), neuron.IFNode())
    with torch.no_grad():
        net[0].weight.abs_()
        net[3].weight.abs_()
    functional.set_step_mode(net, "m")
    return net


def test_nir_round_trip_of_a_mapped_multistep_snn_is_exact(tmp_path):
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    net = _tiny_snn()
    _pruned(net, threshold=0.02)
    torch.manual_seed(2)
    x = (torch.rand(4, 2, 2, 6, 6) > 0.5).float()
    export_nir(net, x, tmp_path / "tiny.nir")
    imported = import_from_nir(str(tmp_path / "tiny.nir"), dt=1e-4, step_mode="m")
    functional.reset_net(net)
    with torch.no_grad():
        expected = net(x)
        got = imported(x)
    got = got[0] if isinstance(got, tuple) else got
    assert expected.sum() > 0  # the comparison is not between two silent nets
    assert (got - expected).abs().max().item() == 0
    functional.reset_net(net)
    assert net(x).shape == expected.shape  # the live (parametrized) net still works


def test_nir_export_names_the_first_layer_that_does_not_map_and_what_to_do(tmp_path):
    net = nn.Sequential(layer.BatchNorm2d(2), layer.Conv2d(2, 4, 3), neuron.IFNode())
    functional.set_step_mode(net, "m")
    with pytest.raises(ValueError, match=r"layer '0' is a BatchNorm2d: .*does not directly follow a convolution"):
        export_nir(net, torch.rand(2, 1, 2, 5, 5), tmp_path / "x.nir")
    snn = create_model("sew_digits", T=2, neuron="lif", cnf="IAND")
    with pytest.raises(ValueError, match=r"'body\.features\.1' is a SEWBlock with cnf='IAND'.*ADD"):
        export_nir(snn, _digits(), tmp_path / "x.nir")
    assert not (tmp_path / "x.nir").exists()


def test_nir_check_covers_soft_reset_products_and_relu():
    soft = nn.Sequential(layer.Linear(2, 2), neuron.IFNode(v_reset=None))
    assert "soft reset" in first_unmapped(soft)[1]
    name, why = first_unmapped(fuse_conv_bn(create_model("sew_digits", cnf="AND").body.eval()))
    assert name == "features.1" and "cnf='AND'" in why and "ADD" in why
    assert "ANN twin" in first_unmapped(nn.Sequential(nn.Linear(2, 2), nn.ReLU()))[1]
    assert first_unmapped(_tiny_snn()) is None


@pytest.mark.parametrize("kind", ["lif", "plif"])
def test_nir_lif_and_plif_nets_read_back_by_spikingjelly_give_the_same_outputs(kind, tmp_path):
    from spikingjelly.activation_based.nir_exchange import import_from_nir

    torch.manual_seed(0)
    snn = create_model("sew_digits", T=3, neuron=kind).eval()
    with torch.no_grad():
        for m in snn.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(2.0)
                m.bias.fill_(1.2)
    export_nir(snn, _digits(1), tmp_path / "lif.nir")
    imported = import_from_nir(str(tmp_path / "lif.nir"))  # dt = 1e-4 on both sides
    frames = snn.encode(_digits(1))
    fired = []
    snn.body.features[4].conv[1].sn.register_forward_hook(lambda m, i, o: fired.append(o.sum()))
    functional.reset_net(snn.body)
    with torch.no_grad():
        want = snn.body(frames)
        got, state = [], None
        for x_t in frames:
            out, state = imported(x_t, state)
            got.append(out)
    assert fired[0] > 0  # the last neurons fire: their time constant matters to the outputs
    torch.testing.assert_close(torch.stack(got), want, atol=1e-5, rtol=1e-5)
