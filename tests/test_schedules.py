import math

import pytest
import torch

from snnprune import LATS, PGH, SLATS, Constant, Linear, Pruner, Sine, lr_trajectory


def test_slats_closed_form():
    s = SLATS(final=0.8, total_steps=1000)
    for t in (0, 1, 250, 500, 999, 1000):
        x = t / 1000
        assert s(t, 0.0) == pytest.approx(0.8 * (x + math.sin(math.pi * x) / math.pi), abs=1e-12)


def test_slats_is_lats_d_form_under_continuous_cosine_lr():
    n = 2000
    lrs = [0.5 * (1 + math.cos(math.pi * t / n)) for t in range(n)]
    lats, slats = LATS(final=1.0, total_steps=n, lr=lrs), SLATS(final=1.0, total_steps=n)
    lr_sum = 0.0
    for t in range(n):
        assert lats(t, lr_sum) == pytest.approx(slats(t, 0.0), abs=2e-3)
        lr_sum += lrs[t]


def test_pgh_tends_to_slats_as_beta_tends_to_one():
    slats = SLATS(final=1.0, total_steps=100)
    gaps = []
    for beta in (0.5, 0.9, 0.99, 0.999999):
        pgh = PGH(final=1.0, beta=beta, total_steps=100)
        gaps.append(max(abs(pgh(t, 0.0) - slats(t, 0.0)) for t in range(101)))
    assert gaps == sorted(gaps, reverse=True)
    assert gaps[-1] < 1e-6
    exact = PGH(final=1.0, beta=1.0, total_steps=100)
    assert all(exact(t, 0) == pytest.approx(slats(t, 0), abs=1e-12) for t in range(101))


def test_pgh_closed_form_matches_numerical_integral_and_front_loads():
    beta, n = 0.1, 10_000
    pgh = PGH(final=2.0, beta=beta, total_steps=n)
    f = lambda u: beta**u * (1 + math.cos(math.pi * u))
    us = [(i + 0.5) / n for i in range(n)]
    total = sum(f(u) for u in us) / n
    half = sum(f(u) for u in us[: n // 2]) / n
    assert pgh(n // 2, 0.0) == pytest.approx(2.0 * half / total, rel=1e-6)
    assert pgh(n // 2, 0.0) / 2.0 == pytest.approx(0.92, abs=0.01)  # LATS paper: β = 0.1 gives d(0.5) ≈ 0.92·D
    assert pgh(0, 0.0) == 0.0 and pgh(n, 0.0) == pytest.approx(2.0)


def test_stds_sine_and_linear_and_constant():
    assert Sine(final=1.0, total_steps=10)(5, 0) == pytest.approx(0.5)
    assert Sine(final=1.0, total_steps=10)(10, 0) == pytest.approx(1.0)
    assert Linear(final=3.0, total_steps=10)(4, 0) == pytest.approx(1.2)
    assert Constant(0.7)(123, 9.0) == 0.7


def make_warmup_cosine(lr=0.4, warmup=20, total=200):
    param = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([param], lr=lr, momentum=0.9)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=warmup)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - warmup)
    return param, opt, torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[warmup])


def test_lats_d_form_ends_exactly_on_final_under_warmup_and_cosine():
    total = 200
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.4, momentum=0.9)
    warm = torch.optim.lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=20)
    cos = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total - 20)
    sched = torch.optim.lr_scheduler.SequentialLR(opt, [warm, cos], milestones=[20])
    pruner = Pruner(model, "soft_threshold", LATS(final=0.3, lr=sched), total_steps=total)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.4 * 0.01)  # simulation restored the run
    history, used = [pruner.threshold], []
    for _ in range(total):
        used.append(opt.param_groups[0]["lr"])
        opt.zero_grad()
        model(torch.randn(2, 4)).pow(2).sum().backward()
        opt.step()
        pruner.step(opt)
        sched.step()
        history.append(pruner.threshold)
    assert history[-1] == 0.3
    assert history[-2] < 0.3
    assert all(b >= a for a, b in zip(history, history[1:]))
    # d_t = D·Σ_{i<t} η_i / Σ_{i<N} η_i with the learning rates actually used, warmup included
    for t in (1, 10, 20, 100, 199):
        assert history[t] == pytest.approx(0.3 * sum(used[:t]) / sum(used), rel=1e-9)


def test_lats_lambda_form_keeps_l1_constant_under_any_lr_schedule():
    model = torch.nn.Linear(4, 4)
    opt = torch.optim.SGD(model.parameters(), lr=0.3)
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=[5, 12], gamma=0.1)
    pruner = Pruner(model, "soft_threshold", LATS(l1=2e-3))
    previous = pruner.threshold
    for _ in range(20):
        lr = opt.param_groups[0]["lr"]
        opt.zero_grad()
        model(torch.randn(2, 4)).sum().backward()
        opt.step()
        pruner.step(opt)
        sched.step()
        assert (pruner.threshold - previous) / lr == pytest.approx(2e-3, rel=1e-9)
        previous = pruner.threshold


def test_lr_trajectory_restores_scheduler_and_optimizer():
    _, opt, sched = make_warmup_cosine(total=50, warmup=5)
    lrs = lr_trajectory(sched, 50)
    assert len(lrs) == 50 and lrs[0] == pytest.approx(0.004) and max(lrs) == pytest.approx(0.4)
    replay = []
    for _ in range(50):
        replay.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert replay == pytest.approx(lrs)


def test_schedule_errors_are_one_clear_exception():
    with pytest.raises(ValueError, match="beta"):
        PGH(final=1.0, beta=0.0)
    with pytest.raises(ValueError, match="beta"):
        PGH(final=1.0, beta=-2)
    with pytest.raises(ValueError, match="λ"):
        LATS(l1=-1e-4)
    with pytest.raises(ValueError, match="final threshold"):
        SLATS(final=-1.0, total_steps=5)
    with pytest.raises(ValueError, match="exactly one"):
        LATS()
    with pytest.raises(ValueError, match="learning rate of every step"):
        LATS(final=1.0, total_steps=10)
    with pytest.raises(ValueError, match="total number of optimizer steps"):
        Pruner(torch.nn.Linear(3, 3), "soft_threshold", SLATS(final=1.0))
    with pytest.raises(ValueError, match="total number of optimizer steps"):
        Pruner(torch.nn.Linear(3, 3), "soft_threshold", LATS(final=1.0, lr=[0.1] * 5))


# -- LATS(final=D) warns only when the run does not land on D ---------------------------------
def _lats_run(steps, make_sched, *, every=1, told=1, before_pruner=False, actual_lr=None):
    """A LATS(final=0.05) run whose scheduler is stepped every ``every`` steps (before or after
    pruner.step), LATS told ``steps_per_lr_step=told``; ``actual_lr`` replaces the optimizer's."""
    import warnings

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 6))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    sched = make_sched(opt)
    pruner = Pruner(model, "soft_threshold", LATS(final=0.05, lr=sched, steps_per_lr_step=told), total_steps=steps)
    trail = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for t in range(steps):
            opt.zero_grad()
            model(torch.randn(4, 6)).sum().backward()
            opt.step()
            if before_pruner:
                sched.step()
            pruner.step(opt) if actual_lr is None else pruner.step(lr=actual_lr)
            if not before_pruner and (t + 1) % every == 0:
                sched.step()
            trail.append(pruner.threshold)
    return trail, [str(w.message) for w in caught if "LATS" in str(w.message)]


def test_lats_with_a_per_step_scheduler_stepped_before_the_pruner_lands_on_d_without_a_warning():
    trail, said = _lats_run(40, lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, 40), before_pruner=True)
    assert said == []
    assert trail[-1] == 0.05
    assert trail[-1] - trail[-2] <= 0.05 * 2 / 40  # no jump: at most one step's increment (λ·η₀)


def test_lats_with_a_per_epoch_multistep_scheduler_lands_on_d_without_a_warning():
    trail, said = _lats_run(40, lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, [2, 3], 0.1), every=10, told=10)
    assert said == []
    assert trail[-1] == pytest.approx(0.05, rel=1e-12)
    assert trail[-2] < 0.05  # reached at the last step, not before


def test_lats_whose_learning_rates_sum_to_less_than_planned_warns_at_the_last_step_where_it_jumps():
    trail, said = _lats_run(20, lambda opt: torch.optim.lr_scheduler.ConstantLR(opt, 1.0, 1), actual_lr=0.05)
    assert len(said) == 1 and "did not land on D smoothly" in said[0] and "stood at 0.02375" in said[0]
    assert trail[-2] == pytest.approx(0.05 * 19 / 40) and trail[-1] == 0.05


def test_lats_whose_learning_rates_reach_the_planned_sum_early_warns_when_it_holds_at_d():
    # a per-epoch scheduler simulated as a per-step one: the plan has the LR fall after 2 steps
    trail, said = _lats_run(40, lambda opt: torch.optim.lr_scheduler.MultiStepLR(opt, [2, 3], 0.1), every=10)
    assert len(said) == 1 and "reached D at step 3 of 40" in said[0] and "steps_per_lr_step" in said[0]
    assert trail[2] == trail[-1] == 0.05
