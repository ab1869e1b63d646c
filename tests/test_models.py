"""The model zoo: every registered model builds and trains, SNNs forget their state between
batches, ANN twins match their SNNs parameter for parameter, encoders encode, counts match papers."""

import doctest
import functools
import importlib

import pytest
import torch
from spikingjelly.activation_based import base, layer, neuron, surrogate
from spikingjelly.activation_based.model import sew_resnet as sj_sew
from torch import nn

from snnprune.models import (
    ANNTwin,
    DirectEncoder,
    PoissonEncoder,
    SpikingNet,
    ann_twin,
    create_model,
    list_models,
    model_entry,
    register_model,
)
from snnprune.models.cifar_resnet import CifarResNet
from snnprune.models.sew_small import ConvBNNeuron, SEWBlock

ALL = list_models()
SNNS = list_models(spiking=True)
#: the models that take seconds even at the tiniest input; they run, marked slow
HEAVY = {"resnet50", "sew_resnet34", "sew_resnet50", "sew_resnet34_dvs", "sew_resnet50_dvs",
         "sew_cifar10dvs", "spiking_vgg11_bn"}
WEIGHTED = (nn.Conv2d, nn.Linear, nn.BatchNorm2d)
NUM_CLASSES = 3


def _base(name):
    return model_entry(name).twin_of or name


def _params(names):
    return [pytest.param(n, marks=pytest.mark.slow) if _base(n) in HEAVY else n for n in names]


def _build(name, **kwargs):
    kwargs.setdefault("num_classes", NUM_CLASSES)
    if model_entry(_base(name)).spiking:
        kwargs.setdefault("T", 2)
    return create_model(name, **kwargs)


@functools.cache
def _shared_snn(name):
    """One SNN per name, built once for the tests that only read it (the big ones take seconds)."""
    return _build(name)


@functools.cache
def _shared_twin(name):
    return ann_twin(_shared_snn(name))


def _batch(name, n=None, t=2):
    """The smallest input the model takes: 128x128 for the 7-pooling DVS nets, 8x8 digits, else 32x32.

    The 128x128 nets get one sample (their BN layers still see T*H*W values per channel); the others
    two, as training-mode BN at 1x1 resolution (ImageNet nets at 32x32) needs more than one value.
    """
    entry = model_entry(name)
    channels = entry.input_shape[0]
    size = {"sew_gesture": 128, "sew_cifar10dvs": 128, "sew_digits": 8}.get(_base(name), 32)
    n = n or (1 if size == 128 else 2)
    shape = (t, n, channels, size, size) if entry.events else (n, channels, size, size)
    return torch.rand(shape)


def _count(model, types=None):
    modules = [m for m in model.modules() if types is None or isinstance(m, types)]
    return sum(p.numel() for m in modules for p in m.parameters(recurse=False))


# -- every model ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _params(ALL))
def test_every_model_runs_forward_and_backward_to_n_by_classes_logits(name):
    model, x = _build(name), _batch(name)
    logits = model(x)
    assert logits.shape == (x.shape[-4], NUM_CLASSES)
    logits.square().sum().backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None for g in grads[:1] + grads[-1:])


@pytest.mark.parametrize("name", _params(SNNS))
def test_snn_gives_identical_outputs_for_the_same_batch_twice(name):
    model = _shared_snn(name).eval()
    x = _batch(name, n=1)
    with torch.no_grad():
        assert torch.equal(model(x), model(x))


def test_the_reset_is_what_keeps_batches_independent(monkeypatch):
    model = _build("sew_digits", T=4).eval()
    x = 3 * _batch("sew_digits", n=4)
    with torch.no_grad():
        first = model(x)
        monkeypatch.setattr(SpikingNet, "reset", lambda self: None)
        second = model(x)  # starts from the membrane potentials the first batch left behind
    assert not torch.equal(first, second)


@pytest.mark.parametrize("name", _params(SNNS))
def test_snns_are_multistep_spikingjelly_nets_with_atan_and_detached_reset(name):
    model = _shared_snn(name)
    assert isinstance(model, SpikingNet) and model.T == 2
    neurons = [m for m in model.body.modules() if isinstance(m, neuron.BaseNode)]
    assert neurons
    for sn in neurons:
        assert sn.step_mode == "m" and sn.detach_reset
        assert isinstance(sn.surrogate_function, surrogate.ATan)
    expected = neuron.ParametricLIFNode if name in ("sew_gesture", "sew_cifar10dvs") else neuron.IFNode
    assert all(type(sn) is expected for sn in neurons)
    # every weighted layer is a SpikingJelly layer, i.e. a subclass of the torch layer pruners select
    assert all(isinstance(m, base.StepModule) for m in model.body.modules() if isinstance(m, WEIGHTED))


@pytest.mark.parametrize(
    "kind, cls", [("if", neuron.IFNode), ("lif", neuron.LIFNode), ("plif", neuron.ParametricLIFNode)]
)
def test_neuron_keyword_selects_the_neuron_model(kind, cls):
    for name in ("sew_digits", "sew_resnet18"):
        model = _build(name, neuron=kind)
        assert {type(m) for m in model.body.modules() if isinstance(m, neuron.BaseNode)} == {cls}


# -- SpikingNet and encoders ------------------------------------------------------------------


def test_static_images_are_encoded_into_T_steps_and_event_frames_pass_as_they_are():
    model = _build("sew_digits", T=3)
    seen = []
    model.body.register_forward_pre_hook(lambda module, args: seen.append(args[0]))
    image = torch.rand(2, 1, 8, 8)
    model(image)
    assert seen[-1].shape == (3, 2, 1, 8, 8) and torch.equal(seen[-1][2], image)
    frames = torch.rand(5, 2, 1, 8, 8)  # event T=5 differs from the encoder's T=3
    model(frames)
    assert seen[-1] is frames


def test_spiking_net_without_encoder_rejects_static_images():
    model = _build("sew_digits", encoder=None)
    assert model(torch.rand(2, 2, 1, 8, 8)).shape == (2, NUM_CLASSES)
    with pytest.raises(ValueError, match="no encoder"):
        model(torch.rand(2, 1, 8, 8))
    with pytest.raises(ValueError, match="expected"):
        model(torch.rand(2, 64))


def test_logits_are_the_time_average_of_the_body_output():
    model = _build("sew_digits").eval()
    x = _batch("sew_digits")
    with torch.no_grad():
        logits = model(x)
        model.reset()
        per_step = model.body(model.encode(x))
    assert per_step.shape == (2, 2, NUM_CLASSES)
    torch.testing.assert_close(logits, per_step.mean(0))


def test_direct_encoder_repeats_the_image_at_every_step():
    x = torch.randn(4, 3, 5, 5)
    spikes = DirectEncoder(T=6)(x)
    assert spikes.shape == (6, 4, 3, 5, 5)
    assert all(torch.equal(spikes[t], x) for t in range(6))


def test_poisson_encoder_fires_at_the_pixel_intensity():
    x = torch.rand(2, 1, 8, 8)
    spikes = PoissonEncoder(T=2000)(x)
    assert spikes.shape == (2000, 2, 1, 8, 8)
    assert set(spikes.unique().tolist()) <= {0.0, 1.0}
    rate = spikes.mean(0)
    assert (rate - x).abs().max() < 0.05  # 4.5 sigma of a Bernoulli(0.5) mean over 2000 steps
    assert abs((rate - x).mean()) < 0.005


def test_poisson_encoder_clamps_intensities_to_probabilities():
    spikes = PoissonEncoder(T=10)(torch.tensor([[-1.0, 2.0]]))
    assert torch.equal(spikes, torch.tensor([[0.0, 1.0]]).expand(10, 1, 2))


def test_encoders_need_at_least_one_step():
    with pytest.raises(ValueError):
        DirectEncoder(T=0)


def test_poisson_encoding_is_selectable_by_name():
    model = _build("sew_digits", encoder="poisson")
    assert isinstance(model.encoder, PoissonEncoder) and model.encoder.T == 2
    with pytest.raises(ValueError, match="unknown encoder"):
        _build("sew_digits", encoder="latency")


# -- ANN twins --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", _params(SNNS))
def test_twin_has_exactly_the_conv_linear_bn_parameters_of_its_snn(name):
    snn, twin = _shared_snn(name), _shared_twin(name)
    assert isinstance(twin, ANNTwin)
    assert _count(twin, WEIGHTED) == _count(snn, WEIGHTED) > 0
    weighted = {  # parameter name -> shape, over conv/linear/BN modules
        f"{mod_name}.{p_name}": p.shape
        for mod_name, m in snn.named_modules() if isinstance(m, WEIGHTED)
        for p_name, p in m.named_parameters(recurse=False)
    }
    assert {k: p.shape for k, p in twin.named_parameters()} == weighted
    # the only parameters the twin drops are the PLIF neurons' learnable time constants
    plif = sum(m.w.numel() for m in snn.modules() if isinstance(m, neuron.ParametricLIFNode))
    assert _count(snn) - _count(twin) == plif


@pytest.mark.parametrize("name", _params(SNNS))
def test_twin_is_single_step_with_relus_and_no_state(name):
    twin = _shared_twin(name)
    assert not any(isinstance(m, base.MemoryModule) for m in twin.modules())
    assert any(isinstance(m, nn.ReLU) for m in twin.modules())
    assert all(m.step_mode == "s" for m in twin.modules() if isinstance(m, base.StepModule))


def test_every_snn_lists_its_twin_alias():
    anns = set(list_models(spiking=False))
    assert {name + "_ann" for name in SNNS} <= anns
    assert all(model_entry(name + "_ann").twin_of == name for name in SNNS)


def test_twin_alias_and_twin_flag_build_the_same_network():
    torch.manual_seed(1)
    by_flag = _build("sew_digits", twin=True, neuron="plif")
    torch.manual_seed(1)
    by_alias = _build("sew_digits_ann", neuron="plif")
    assert by_flag.state_dict().keys() == by_alias.state_dict().keys()
    assert all(torch.equal(a, b) for a, b in zip(by_flag.state_dict().values(), by_alias.state_dict().values()))


def test_twin_is_a_copy_that_loads_the_snn_state_dict():
    snn = _build("sew_digits", neuron="plif")
    snn(_batch("sew_digits"))  # leaves state in the neurons: the copy must cope
    twin = ann_twin(snn)
    assert any(isinstance(m, neuron.BaseNode) for m in snn.modules())  # the SNN is untouched
    assert torch.equal(twin.body.fc.weight, snn.body.fc.weight)
    assert twin.body.fc.weight is not snn.body.fc.weight
    result = twin.load_state_dict(snn.state_dict(), strict=False)
    assert result.missing_keys == []
    assert result.unexpected_keys and all(k.endswith(".sn.w") for k in result.unexpected_keys)


def test_twin_averages_event_frames_over_time():
    twin = _build("sew_digits", twin=True).eval()
    frames = torch.rand(4, 2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(twin(frames), twin(frames.mean(0)))


@pytest.mark.slow
def test_twin_replaces_spikingjelly_dropout_with_ordinary_dropout():
    twin = _shared_twin("spiking_vgg11_bn")
    drops = [m for m in twin.modules() if isinstance(m, nn.Dropout)]
    assert len(drops) == 2 and all(d.p == 0.5 for d in drops)


# -- architectures ----------------------------------------------------------------------------


def test_state_dict_keeps_spikingjelly_key_names_under_body():
    model = _build("sew_resnet18")
    reference = sj_sew.sew_resnet18(cnf="ADD", spiking_neuron=neuron.IFNode, num_classes=NUM_CLASSES)
    assert list(model.state_dict()) == ["body." + k for k in reference.state_dict()]
    model.body.load_state_dict(reference.state_dict())


@pytest.mark.parametrize("name", ["sew_resnet18_dvs", "sew_resnet34_dvs", "sew_resnet50_dvs"])
def test_dvs_variants_replace_the_stem_with_a_two_channel_spikingjelly_conv(name):
    stem = _build(name).body.conv1
    assert type(stem) is layer.Conv2d
    assert (stem.in_channels, stem.out_channels, stem.kernel_size, stem.stride) == (2, 64, (7, 7), (2, 2))
    assert model_entry(name).events and model_entry(name).input_shape == (2, 128, 128)


def test_in_channels_keyword_changes_only_the_stem():
    rgb, grey = _build("sew_resnet18"), _build("sew_resnet18", in_channels=1)
    assert grey.body.conv1.in_channels == 1
    assert _count(rgb) - _count(grey) == 2 * 64 * 7 * 7


def test_sew_gesture_follows_the_paper_layout():
    body = _build("sew_gesture", num_classes=11).body
    convs = [m for m in body.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 7 * 2 and {c.out_channels for c in convs} == {32}
    assert sum(isinstance(m, SEWBlock) for m in body.modules()) == 7
    assert sum(isinstance(m, layer.MaxPool2d) for m in body.modules()) == 7
    assert (body.fc.in_features, body.fc.out_features) == (32, 11)


def test_sew_cifar10dvs_follows_the_paper_layout():
    body = _build("sew_cifar10dvs", num_classes=10).body
    widths = [m.out_channels for m in body.modules() if isinstance(m, nn.Conv2d)]
    assert widths == [64] * (1 + 4 * 2) + [128] * (1 + 3 * 2)
    assert all(isinstance(m, ConvBNNeuron) for m in (body.features[0], body.features[9]))
    assert (body.fc.in_features, body.fc.out_features) == (128, 10)


@pytest.mark.parametrize("channels, size, features", [(1, 8, 32 * 2 * 2), (2, 16, 32 * 4 * 4), (2, 34, 32 * 4 * 4)])
def test_sew_digits_takes_static_digits_and_event_frames(channels, size, features):
    model = _build("sew_digits", in_channels=channels, input_size=size)
    assert model.body.fc.in_features == features  # 34x34 frames: a stride-2 stem keeps them cheap
    assert model(torch.rand(2, channels, size, size)).shape == (2, NUM_CLASSES)
    assert model(torch.rand(3, 2, channels, size, size)).shape == (2, NUM_CLASSES)


@pytest.mark.parametrize("twin", [False, True])
def test_sew_digits_width_multiplies_every_layers_channels(twin):
    base, wide = (create_model("sew_digits", twin=twin, T=2, width=w) for w in (1, 3))  # 10 classes
    convs = [[m.out_channels for m in net.modules() if isinstance(m, nn.Conv2d)] for net in (base, wide)]
    assert convs[0] == [16] * 3 + [32] * 3 and convs[1] == [3 * c for c in convs[0]]
    weights = [sum(m.weight.numel() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear)))
               for net in (base, wide)]
    # the convs after the stem grow with width squared, the stem (144 w) and the fc (1280 w) with width
    assert weights == [29072, 27648 * 3**2 + (144 + 1280) * 3]
    assert wide(_batch("sew_digits")).shape == (2, 10)
    with pytest.raises(ValueError, match="width"):
        _build("sew_digits", width=0)


def test_sew_connect_functions_are_checked_and_applied():
    for cnf in ("ADD", "AND", "IAND"):
        assert _build("sew_digits", cnf=cnf)(_batch("sew_digits")).shape == (2, NUM_CLASSES)
    with pytest.raises(ValueError, match="cnf"):
        _build("sew_digits", cnf="OR")
    with pytest.raises(ValueError, match="cnf"):
        _build("sew_resnet18", cnf="OR")


def test_plain_sew_nets_reject_inputs_too_small_for_their_poolings():
    with pytest.raises(ValueError, match="too small"):
        _build("sew_gesture", input_size=64)


def test_mobilenet_v1_has_4_2_million_parameters():
    assert _count(create_model("mobilenet_v1")) == 4_231_976  # paper Table 8: 4.2 M
    half = _count(create_model("mobilenet_v1", width_mult=0.5))
    assert 1.2e6 < half < 1.4e6  # paper Table 6: 1.3 M at alpha = 0.5


@pytest.mark.parametrize(
    "name, millions", [("cifar_resnet20", 0.27), ("cifar_resnet32", 0.46), ("cifar_resnet56", 0.85)]
)
def test_cifar_resnets_have_the_parameter_counts_of_he_et_al(name, millions):
    assert round(_count(create_model(name)) / 1e6, 2) == millions  # paper Table 6


def test_cifar_resnet_option_a_shortcuts_are_parameter_free_and_option_b_projects():
    a, b = CifarResNet(3, shortcut="A"), CifarResNet(3, shortcut="B")
    projections = (16 * 32 + 2 * 32) + (32 * 64 + 2 * 64)  # two 1x1 conv + BN shortcuts
    assert _count(b) - _count(a) == projections


# -- registry ---------------------------------------------------------------------------------


def test_unknown_model_name_suggests_the_closest_names():
    with pytest.raises(ValueError, match="Did you mean 'sew_resnet18'"):
        create_model("sew_resnet19")
    with pytest.raises(ValueError, match="unknown model 'zzz'. Known models"):
        create_model("zzz")


def test_only_spiking_models_have_twins():
    with pytest.raises(ValueError, match="no ANN twin"):
        create_model("resnet18", twin=True)
    with pytest.raises(ValueError, match="no ANN twin"):
        create_model("sew_digits_ann", twin=True)


def test_a_taken_name_cannot_be_registered_again():
    with pytest.raises(ValueError, match="already registered"):
        register_model("sew_digits", spiking=False, input_shape=(1, 8, 8))(nn.Identity)
    assert model_entry("sew_digits").spiking


def test_unknown_neuron_is_rejected():
    with pytest.raises(ValueError, match="unknown neuron"):
        _build("sew_digits", neuron="izhikevich")


def test_entries_know_spiking_input_shape_and_summary():
    for name in ALL:
        entry = model_entry(name)
        assert len(entry.input_shape) == 3 and entry.summary
        assert entry.spiking == (name in SNNS)
    assert list_models(spiking=True) + list_models(spiking=False) == sorted(SNNS) + sorted(set(ALL) - set(SNNS))


MODULES = ["snnprune.models"] + ["snnprune.models." + m for m in (
    "registry", "neurons", "encoders", "spiking_net", "twin", "sew_resnet", "sew_small",
    "mobilenet_v1", "cifar_resnet", "torchvision_nets", "spiking_vgg")]


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0


# -- the pruner attaches to every model -------------------------------------------------------


@pytest.mark.parametrize("name", _params(ALL))
def test_pruner_attaches_to_every_model(name):
    from snnprune.pruner import Pruner
    from snnprune.schedules import Constant

    model = _build(name).eval()
    pruner = Pruner(model, "soft_threshold", schedule=Constant(0.01))
    convs_and_linears = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert len(pruner.layer_names) == len(convs_and_linears)
    with torch.no_grad():
        assert model(_batch(name, n=1)).shape == (1, NUM_CLASSES)


# -- argument checks and naming ---------------------------------------------------------------


@pytest.mark.parametrize("kwargs, name", [
    ({"T": 2.5}, "T"), ({"T": 0}, "T"), ({"num_classes": 0}, "num_classes"),
    ({"in_channels": 0}, "in_channels"), ({"input_size": -1}, "input_size"), ({"T": "4"}, "T"),
])
def test_bad_size_keywords_fail_at_build_time_naming_the_keyword(kwargs, name):
    with pytest.raises(ValueError, match=rf"^{name} must be an integer >= 1"):
        create_model("sew_digits", **kwargs)


def test_ann_size_keywords_are_checked_too_and_integral_floats_pass():
    with pytest.raises(ValueError, match="num_classes"):
        create_model("cifar_resnet20", num_classes=0)
    with pytest.raises(ValueError, match="in_channels"):
        create_model("resnet18", in_channels=0)
    assert create_model("sew_digits", T=2.0).T == 2


def test_spiking_net_and_encoder_reject_a_fractional_T():
    with pytest.raises(ValueError, match="T must be an integer"):
        SpikingNet(nn.Sequential(layer.Flatten()), T=2.5)
    with pytest.raises(ValueError, match="T must be an integer"):
        DirectEncoder(T=1.5)


def test_model_names_are_case_insensitive_and_dash_tolerant():
    assert model_entry("SEW-Digits").name == "sew_digits"
    assert model_entry("Sew_Digits-ANN").name == "sew_digits_ann"
    assert isinstance(create_model("SEW-DIGITS", T=1), SpikingNet)
    assert isinstance(create_model("sew-digits", twin=True, T=1), ANNTwin)


def test_string_options_are_case_insensitive():
    net = _build("sew_digits", neuron="LIF", cnf="add", encoder="Poisson")
    assert isinstance(net.body.features[0].sn, neuron.LIFNode) and isinstance(net.encoder, PoissonEncoder)
    assert {m.cnf for m in net.modules() if isinstance(m, SEWBlock)} == {"ADD"}
    assert isinstance(_build("sew_resnet18", cnf="iand").body.layer1[0], sj_sew.BasicBlock)
    assert isinstance(create_model("cifar_resnet20", shortcut="b").layer2[0].shortcut, nn.Sequential)
    with pytest.raises(ValueError, match=r"unknown cnf 'or'.*'ADD', 'AND', 'IAND'"):
        _build("sew_digits", cnf="or")


@pytest.mark.parametrize("name, stem", [
    ("resnet18", lambda m: m.conv1), ("resnet50", lambda m: m.conv1), ("mobilenet_v2", lambda m: m.features[0][0]),
])
def test_torchvision_models_take_in_channels_like_every_other_model(name, stem):
    model = create_model(name, num_classes=NUM_CLASSES, in_channels=1)
    assert stem(model).in_channels == 1 and stem(create_model(name)).in_channels == 3
    if name != "resnet50":
        assert model(torch.rand(2, 1, 32, 32)).shape == (2, NUM_CLASSES)
