"""The core under ordinary training code: copies, exports, EMA, torch.func, inference mode,
optimizers that write p.data, re-initialisation, tied weights, bad arguments. Each test is named
for the behaviour a user relies on."""

import copy
import math
import pickle
import warnings

import pytest
import torch
from torch import nn
from torch.nn.utils import parametrize

import snnprune
from snnprune import STR, Pruner, SoftThreshold, bake, plain_state_dict
from snnprune.reparam import Reparameterization
from snnprune.schedules import LATS, SLATS, Constant


def mlp():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 4))


def one_step(model, opt, pruner, x=None):
    x = torch.randn(5, 8) if x is None else x
    opt.zero_grad()
    model(x).pow(2).mean().backward()
    opt.step()
    pruner.step(opt)


def soft(d):
    return lambda latent: torch.sign(latent) * (latent.abs() - d).clamp(min=0)


# -- copies and exports (B1) ----------------------------------------------------------------
def test_exporting_a_deep_copy_leaves_the_live_model_training():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    one_step(m, opt, p)
    export = bake(copy.deepcopy(m))
    assert sorted(export.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    m(torch.randn(2, 8))  # the live model still works
    one_step(m, opt, p)
    assert p.sparsity().total >= 0


def test_finalize_leaves_deep_copies_and_ema_models_usable():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    one_step(m, opt, p)
    best = copy.deepcopy(m)
    ema = torch.optim.swa_utils.AveragedModel(m)
    p.finalize()
    x = torch.randn(2, 8)
    assert torch.equal(best(x), m(x))
    ema(x)


def test_plain_state_dict_loads_into_the_plain_architecture_without_touching_the_model():
    m = mlp()
    Pruner(m, "soft_threshold", Constant(0.2))
    sd = plain_state_dict(m)
    fresh = mlp()
    fresh.load_state_dict(sd)
    x = torch.randn(3, 8)
    assert torch.equal(fresh(x), m(x))
    assert parametrize.is_parametrized(m[0])


# -- a failed Pruner leaves the model untouched (B2) ----------------------------------------
@pytest.mark.parametrize(
    "args, kwargs",
    [
        (("soft_threshold", SLATS(final=0.1)), {}),  # needs total_steps
        (("soft_threshold",), {}),  # no schedule
        (("str", LATS(l1=0.1)), {}),  # a learned method with a schedule
        (("soft_threshold", LATS(final=0.1)), {"total_steps": 10}),  # D-form without lr=
        (("soft_threshold", LATS), {}),  # the class instead of an instance
    ],
)
def test_a_failed_pruner_leaves_the_model_untouched_and_a_retry_works(args, kwargs):
    m = mlp()
    keys = sorted(m.state_dict())
    with pytest.raises((ValueError, TypeError)):
        Pruner(m, *args, **kwargs)
    assert sorted(m.state_dict()) == keys
    assert not any(parametrize.is_parametrized(layer) for layer in m)
    Pruner(m, "soft_threshold", SLATS(final=0.1), total_steps=10)


def test_an_error_while_attaching_rolls_back_the_layers_already_done():
    class Fails(SoftThreshold):
        def setup(self, latent):
            if latent.shape[0] == 4:
                raise RuntimeError("boom")

    m = mlp()
    with pytest.raises(RuntimeError, match="boom"):
        Pruner(m, Fails, Constant(0.1))
    assert sorted(m.state_dict()) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    assert not any(parametrize.is_parametrized(layer) for layer in m)


# -- writes into the weight (B3, B4, C11) ---------------------------------------------------
# As everywhere in torch.nn.utils.parametrize, module.weight is computed from the latent weight:
# a value assigned to it goes through the method's right_inverse; in-place writes go to the latent.
def test_reinitialising_after_attaching_lasts_through_training_steps():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    p = Pruner(m, "soft_threshold", Constant(0.05))
    for layer in (m[0], m[2]):
        nn.init.zeros_(layer.parametrizations.weight.original)
    one_step(m, opt, p)
    assert int((m[0].weight == 0).sum()) == m[0].weight.numel()


def test_assigning_the_weight_after_attaching_gives_that_effective_weight():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.0)
    p = Pruner(m, "soft_threshold", Constant(0.01))
    fresh = torch.full_like(m[0].weight, 0.5)
    m[0].weight = fresh  # through SoftThreshold.right_inverse
    one_step(m, opt, p)
    torch.testing.assert_close(m[0].weight.detach(), fresh)


def test_masking_the_weight_after_a_step_sticks():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", Constant(0.0))
    one_step(m, opt, p)
    keep = torch.rand_like(m[0].weight) > 0.5
    with torch.no_grad():
        m[0].weight = m[0].weight * keep
    assert torch.equal(m[0].weight != 0, keep & (m[0].weight != 0))
    assert int((m[0].weight == 0).sum()) >= int((~keep).sum())


def test_optimizers_writing_p_data_are_seen_by_the_effective_weight():
    class DataSGD(torch.optim.Optimizer):
        def __init__(self, params, lr):
            super().__init__(params, {"lr": lr})

        def step(self):
            for g in self.param_groups:
                for q in g["params"]:
                    if q.grad is not None:
                        q.data.add_(q.grad, alpha=-g["lr"])

    m = mlp()
    opt = DataSGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    for _ in range(3):
        one_step(m, opt, p)
    latent = m[0].parametrizations.weight.original
    assert torch.allclose(m[0].weight, soft(p.threshold)(latent.detach()), atol=1e-7)


# -- one source of truth for the threshold (B5, B6, B7) -------------------------------------
def test_ema_copies_with_averaged_buffers_carry_the_threshold():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.5)
    p = Pruner(m, "soft_threshold", LATS(l1=0.5))
    ema = torch.optim.swa_utils.AveragedModel(
        m, multi_avg_fn=torch.optim.swa_utils.get_ema_multi_avg_fn(0.5), use_buffers=True
    )
    for _ in range(5):
        one_step(m, opt, p)
        ema.update_parameters(m)
    reparam = ema.module[0].parametrizations.weight[0]
    assert reparam.current_threshold() == pytest.approx(float(reparam.threshold))
    assert reparam.current_threshold() > 0
    assert snnprune.sparsity(ema.module).total > 0


def test_writing_the_threshold_buffer_takes_effect():
    m = mlp()
    Pruner(m, "soft_threshold", Constant(0.0))
    m[0].parametrizations.weight[0].threshold.fill_(10.0)
    assert m[0].parametrizations.weight[0].current_threshold() == 10.0
    assert int((m[0].weight != 0).sum()) == 0


def test_functional_call_sees_the_thresholds_it_is_given():
    m = mlp()
    Pruner(m, "soft_threshold", Constant(0.0))
    x = torch.randn(3, 8)
    state = {k: v for k, v in m.state_dict().items()}
    state = {k: (torch.tensor(10.0) if k.endswith("threshold") else v) for k, v in state.items()}
    out = torch.func.functional_call(m, state, (x,))
    expected = m[2].bias.detach().expand(3, 4)  # every weight pruned: the output is the bias
    assert torch.allclose(out, expected)
    assert not torch.allclose(m(x), expected)


def test_torch_func_grad_and_vmap_work_through_the_pruned_weights():
    m = mlp()
    Pruner(m, "soft_threshold", Constant(0.05))
    params = dict(m.named_parameters())
    buffers = dict(m.named_buffers())
    x = torch.randn(4, 8)

    def loss(ps, xb):
        return torch.func.functional_call(m, (ps, buffers), (xb,)).sum()

    grads = torch.func.grad(loss)(params, x)
    m.zero_grad()
    m(x).sum().backward()
    for name, g in grads.items():
        assert torch.allclose(g, params[name].grad, atol=1e-6)
    per_sample = torch.func.vmap(torch.func.grad(loss), in_dims=(None, 0))(params, x.unsqueeze(1))
    latent = "0.parametrizations.weight.original"
    assert torch.allclose(per_sample[latent].sum(0), grads[latent], atol=1e-5)


def test_validation_under_inference_mode_does_not_poison_training():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    one_step(m, opt, p)
    m.double()
    with torch.inference_mode():
        m(torch.randn(2, 8, dtype=torch.float64))
    one_step(m, opt, p, torch.randn(5, 8, dtype=torch.float64))


# -- schedules (B8, B11, B13, B14, B15, C8, C15, C22) ----------------------------------------
def test_d_form_lands_on_d_in_every_param_group_and_stays():
    m = mlp()
    opt = torch.optim.SGD([{"params": m[0].parameters(), "lr": 0.01}, {"params": m[2].parameters(), "lr": 0.1}])
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10)
    p = Pruner(m, "soft_threshold", LATS(final=0.2, lr=sched), total_steps=10)
    trail = []
    for _ in range(12):
        one_step(m, opt, p)
        sched.step()
        trail.append(list(p.thresholds().values()))
    for values in trail:
        assert max(values) <= 0.2 + 1e-12
    assert trail[9] == pytest.approx([0.2, 0.2])
    assert trail[11] == pytest.approx([0.2, 0.2])


def test_simulating_the_lr_trajectory_restores_momentum_and_betas():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1, momentum=0.95)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=100)
    before = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    Pruner(m, "soft_threshold", LATS(final=0.2, lr=sched), total_steps=50)
    after = {k: v for k, v in opt.param_groups[0].items() if k != "params"}
    assert after == before
    adam = torch.optim.Adam(mlp().parameters(), lr=0.1, betas=(0.95, 0.999))
    sched = torch.optim.lr_scheduler.OneCycleLR(adam, max_lr=0.1, total_steps=100)
    betas = adam.param_groups[0]["betas"]
    snnprune.lr_trajectory(sched, 50)
    assert adam.param_groups[0]["betas"] == betas


def test_threshold_reports_the_frozen_value_after_freeze():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    one_step(m, opt, p)
    at_freeze = p.threshold
    p.freeze()
    for _ in range(5):
        one_step(m, opt, p)
    assert p.threshold == at_freeze
    assert list(p.thresholds().values()) == pytest.approx([at_freeze, at_freeze])


def test_one_schedule_serves_several_pruners_without_interference():
    s = SLATS(final=0.2)
    m1, m2 = mlp(), mlp()
    p1 = Pruner(m1, "soft_threshold", s, total_steps=10)
    Pruner(m2, "soft_threshold", s, total_steps=1000)
    opt = torch.optim.SGD(m1.parameters(), lr=0.1)
    for _ in range(10):
        one_step(m1, opt, p1)
    assert p1.threshold == pytest.approx(0.2)
    assert s.total_steps is None


def test_conflicting_total_steps_is_an_error():
    with pytest.raises(ValueError, match="total_steps"):
        Pruner(mlp(), "soft_threshold", SLATS(final=0.1, total_steps=10), total_steps=100)


def test_a_bad_learning_rate_leaves_the_pruner_usable():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    with pytest.raises(ValueError, match="learning rate"):
        p.step(lr=-1)
    assert p.steps == 0
    one_step(m, opt, p)
    assert p.threshold == pytest.approx(0.01)


def test_the_checkpoint_wins_for_every_schedule_with_a_warning():
    for make, saved_kw, built_kw, key in [
        (lambda **k: LATS(**k), {"l1": 0.3}, {"l1": 0.01}, "l1"),
        (lambda **k: SLATS(total_steps=10, **k), {"final": 0.2}, {"final": 0.5}, "final"),
    ]:
        m = mlp()
        saved = Pruner(m, "soft_threshold", make(**saved_kw)).state_dict()
        p = Pruner(mlp(), "soft_threshold", make(**built_kw))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            p.load_state_dict(saved)
        assert getattr(p.schedule, key) == pytest.approx(saved_kw[key])
        if key == "final":
            assert any("checkpoint" in str(w.message) for w in caught)


def test_reduce_lr_on_plateau_with_the_d_form_is_a_clear_error():
    opt = torch.optim.SGD(mlp().parameters(), lr=0.1)
    with pytest.raises(ValueError, match="λ-form"):
        LATS(final=0.2, lr=torch.optim.lr_scheduler.ReduceLROnPlateau(opt))


def test_a_per_epoch_scheduler_without_steps_per_lr_step_warns():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    p = Pruner(m, "soft_threshold", LATS(final=0.2, lr=sched), total_steps=8)  # but stepped every 4 steps
    with pytest.warns(UserWarning, match="steps_per_lr_step"):
        for t in range(8):
            one_step(m, opt, p)
            if (t + 1) % 4 == 0:
                sched.step()


def test_fractional_total_steps_is_rejected():
    with pytest.raises(ValueError, match="integer"):
        SLATS(final=0.1, total_steps=2.7)


# -- prune_to keeps survivors exactly (B9, C14) ---------------------------------------------
def test_prune_to_keeps_surviving_weights_exactly_on_any_call():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.5))
    for _ in range(3):
        one_step(m, opt, p)
    for target in (0.5, 0.8, 0.9):
        before = [layer.weight.detach().clone() for layer in (m[0], m[2])]
        p.prune_to(target)
        assert p.sparsity().pruned == pytest.approx(target, abs=1 / 192)  # 192 weights: one weight's granularity
        for w0, layer in zip(before, (m[0], m[2])):
            w1 = layer.weight.detach()
            kept = w1 != 0
            assert torch.allclose(w1[kept], w0[kept], atol=1e-6)


def test_a_frozen_pruner_refuses_prune_to():
    p = Pruner(mlp(), "soft_threshold", Constant(0.1))
    p.freeze()
    with pytest.raises(RuntimeError, match="frozen"):
        p.prune_to(0.9)


def test_sparsity_reports_the_pruned_layers_apart_from_the_total():
    m = mlp()
    p = Pruner(m, "soft_threshold", Constant(0.0), keep_first=True)
    p.prune_to(0.9)
    report = p.sparsity()
    assert report.pruned == pytest.approx(0.9, abs=1 / 64)  # 64 weights in the pruned layer
    assert report.total == pytest.approx(0.9 * 64 / (128 + 64), abs=1e-2)


# -- tied weights (B10) ---------------------------------------------------------------------
def test_tied_weights_are_refused_naming_both_layers():
    a, b = nn.Linear(6, 6), nn.Linear(6, 6)
    b.weight = a.weight
    m = nn.Sequential(a, b)
    with pytest.raises(ValueError, match="tied"):
        Pruner(m, "soft_threshold", Constant(0.1))
    assert not parametrize.is_parametrized(a)


def test_an_embedding_tied_to_the_head_is_refused():
    class LM(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(10, 6)
            self.head = nn.Linear(6, 10, bias=False)
            self.head.weight = self.emb.weight

    with pytest.raises(ValueError, match="emb.weight"):
        Pruner(LM(), "soft_threshold", Constant(0.1))


# -- what goes in the method slot (C1, C2, C3) ----------------------------------------------
def test_a_method_instance_is_a_prototype_copied_per_layer():
    p = Pruner(mlp(), STR(s_init=-5))
    reparams = [r for _, _, r in p.layers()]
    assert len({id(r) for r in reparams}) == 2
    assert all(float(r.s.detach()) == -5 for r in reparams)


def test_a_schedule_in_the_method_slot_is_a_clear_error():
    with pytest.raises(TypeError, match="where the method goes"):
        Pruner(mlp(), LATS(l1=1e-3))


def test_a_misspelt_pruner_keyword_is_reported_as_a_pruner_keyword():
    with pytest.raises(TypeError, match="Pruner got an unexpected keyword 'keeplast'.*keep_last"):
        Pruner(mlp(), "soft_threshold", Constant(0.1), keeplast=True)


def test_a_misspelt_method_option_names_the_method():
    with pytest.raises(TypeError, match="STR has no option 'sinit'.*s_init"):
        Pruner(mlp(), "str", method_kwargs={"sinit": -3})


def test_an_unknown_method_name_suggests_the_closest():
    with pytest.raises(ValueError, match="did you mean 'soft_threshold'"):
        Pruner(mlp(), "soft_treshold", Constant(0.1))


# -- layers snnprune cannot prune (C4) ------------------------------------------------------
def test_a_weight_norm_parametrization_is_named_not_mistaken_for_another_pruner():
    m = mlp()
    nn.utils.parametrizations.weight_norm(m[2])
    with pytest.raises(ValueError, match="'2' already has a parametrization"):
        Pruner(m, "soft_threshold", Constant(0.1))
    assert not parametrize.is_parametrized(m[0])


def test_legacy_weight_norm_hooks_are_named():
    m = mlp()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        nn.utils.weight_norm(m[0])
    with pytest.raises(ValueError, match="'0' computes its weight"):
        Pruner(m, "soft_threshold", Constant(0.1))


def test_lazy_layers_ask_for_a_forward_first():
    m = nn.Sequential(nn.LazyLinear(4))
    with pytest.raises(ValueError, match="lazy"):
        Pruner(m, "soft_threshold", Constant(0.1))
    m(torch.randn(2, 3))
    Pruner(m, "soft_threshold", Constant(0.1))


# -- state and messages (C6, C7, C16, C17, C19, C20, C21) -----------------------------------
def test_a_pruner_state_of_other_layers_names_them():
    state = Pruner(mlp(), "soft_threshold", Constant(0.1)).state_dict()
    state["layers"] = ["_orig_mod.0", "_orig_mod.2"]
    with pytest.raises(ValueError, match="_orig_mod"):
        Pruner(mlp(), "soft_threshold", Constant(0.1)).load_state_dict(state)


def test_loading_the_model_without_the_pruner_state_warns():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=1.0))
    for _ in range(3):
        one_step(m, opt, p)
    saved = m.state_dict()
    m2 = mlp()
    opt2 = torch.optim.SGD(m2.parameters(), lr=0.1)
    p2 = Pruner(m2, "soft_threshold", LATS(l1=1.0))
    m2.load_state_dict(saved)
    with pytest.warns(UserWarning, match="pruner.load_state_dict"):
        one_step(m2, opt2, p2)


def test_passing_the_lr_scheduler_to_step_is_a_clear_error():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    with pytest.raises(TypeError, match="LR scheduler"):
        p.step(torch.optim.lr_scheduler.StepLR(opt, 1))


def test_a_step_the_grad_scaler_skipped_does_not_move_the_threshold():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**16)
    loss = m(torch.randn(2, 8)).sum() * float("inf")
    scaler.scale(loss).backward()
    scaler.step(opt)
    p.step(opt, scaler=scaler)
    scaler.update()
    assert p.steps == 0 and p.threshold == 0.0


def test_a_bare_layer_has_one_name_everywhere():
    layer = nn.Linear(3, 3)
    p = Pruner(layer, "soft_threshold", Constant(0.1))
    assert p.layer_names == [""]
    assert list(p.thresholds()) == [""]
    assert list(p.sparsity().layers) == [""]


def test_attention_input_projections_are_pruned_and_counted():
    attn = nn.MultiheadAttention(8, 2)
    m = nn.ModuleDict({"attn": attn})
    p = Pruner(m, "soft_threshold", Constant(10.0))
    assert set(p.layer_names) == {"attn.in_proj_weight", "attn.out_proj"}
    report = p.sparsity()
    assert report.numel == 3 * 8 * 8 + 8 * 8 and report.total == 1.0
    x = torch.randn(3, 1, 8)
    out, _ = attn(x, x, x)
    assert torch.allclose(out, attn.out_proj.bias.expand_as(out))


def test_stepping_after_bake_says_the_model_was_finalized():
    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    p = Pruner(m, "soft_threshold", LATS(l1=0.1))
    bake(m)
    with pytest.raises(RuntimeError, match="finalized"):
        p.step(opt)


def test_pickling_a_pruned_model_names_the_state_dict_route():
    m = mlp()
    Pruner(m, "soft_threshold", Constant(0.1))
    with pytest.raises(RuntimeError, match="state_dict"):
        pickle.dumps(m)


# -- the method contract ---------------------------------------------------------------------
def test_a_soft_mask_method_is_counted_and_finalized_by_its_hard_mask():
    class Sigmoidal(Reparameterization):
        control = "learned"

        def transform(self, latent):
            return latent * torch.sigmoid((latent.abs() - 0.5) * 20)

        def hard_mask(self, latent):
            return latent.abs() > 0.5

    m = mlp()
    p = Pruner(m, Sigmoidal())
    latent = m[0].parametrizations.weight.original.detach()
    expected = float((latent.abs() <= 0.5).float().mean())
    assert (m[0].weight != 0).all()  # never exactly zero
    assert p.sparsity().layers["0"] == pytest.approx(expected)
    p.finalize()
    assert float((m[0].weight == 0).float().mean()) == pytest.approx(expected)


def test_setup_and_on_step_are_called():
    calls = []

    class Spy(SoftThreshold):
        def setup(self, latent):
            calls.append(("setup", tuple(latent.shape)))

        def on_step(self, step, lr):
            calls.append(("step", step, lr))

    m = mlp()
    opt = torch.optim.SGD(m.parameters(), lr=0.25)
    p = Pruner(m, Spy, Constant(0.0))
    one_step(m, opt, p)
    assert calls[:2] == [("setup", (16, 8)), ("setup", (4, 16))]
    assert calls[2:] == [("step", 1, 0.25), ("step", 1, 0.25)]


def test_soft_thresholding_on_frozen_masks_stays_finite_with_huge_thresholds():
    m = mlp()
    p = Pruner(m, "soft_threshold", Constant(1e6))
    assert p.sparsity().total == 1.0
    assert math.isfinite(float(m(torch.randn(2, 8)).sum().detach()))


def test_a_toy_method_registered_by_one_attribute_trains_through_the_pruner_by_name():
    class Toy(SoftThreshold):
        name = "toy_core_test"

        def transform(self, latent):
            return latent * (latent.abs() > self.threshold)

    try:
        assert snnprune.get_method("Toy-Core-Test") is Toy
        m = mlp()
        opt = torch.optim.SGD(m.parameters(), lr=0.1)
        p = Pruner(m, "toy_core_test", LATS(l1=0.1))
        for _ in range(5):
            one_step(m, opt, p)
        assert 0 < p.sparsity().total < 1
        p.finalize()
    finally:
        snnprune.METHODS.pop("toy_core_test", None)
