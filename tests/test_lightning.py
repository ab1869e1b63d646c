"""The Lightning callback: one Pruner step per optimizer step (accumulation, AMP), the same run as
a plain loop, checkpoints that resume bit for bit, logged sparsity and threshold."""

import copy
import csv
import warnings

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from snnprune import LATS, Pruner

pl = pytest.importorskip("snnprune.integrations.lightning").pl
from snnprune.integrations.lightning import PruningCallback  # noqa: E402

BATCHES = 8  # per epoch


def make_net():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))


def make_data():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(BATCHES * 4, 8, generator=g), torch.randint(0, 3, (BATCHES * 4,), generator=g)
    return DataLoader(TensorDataset(x, y), batch_size=4)  # no shuffling: the same batches on resume


class Module(pl.LightningModule):
    def __init__(self, callback=None, schedule_lr=True):
        super().__init__()
        self.net = make_net()
        self.callback = [callback]  # (in a list: not a submodule)
        self.schedule_lr = schedule_lr

    def training_step(self, batch, i):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        return loss + (self.callback[0].regularization() if self.callback[0] else 0.0)

    def configure_optimizers(self):
        opt = torch.optim.SGD(self.parameters(), lr=0.2, momentum=0.9)
        if not self.schedule_lr:
            return opt
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))  # a new LR every step
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def trainer(callbacks, tmp_path=None, **kwargs):
    kwargs.setdefault("max_epochs", 2)
    return pl.Trainer(callbacks=callbacks, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                      enable_model_summary=False, accelerator="cpu", default_root_dir=tmp_path, **kwargs)


def lats():
    return LATS(l1=0.05)  # d += λ·η: the learning rate each step used decides the threshold


def test_one_step_per_optimizer_step_like_a_plain_loop_under_accumulation():
    callback = PruningCallback("soft_threshold", lats())
    module = Module(callback)
    t = trainer([callback], accumulate_grad_batches=2)
    t.fit(module, make_data())
    steps = 2 * BATCHES // 2
    assert callback.pruner.steps == t.global_step == steps

    # the same run by hand: step the optimizer every 2 batches, the Pruner right after it, the LR
    # scheduler last
    net = make_net()
    pruner = Pruner(net, "soft_threshold", lats(), total_steps=steps)
    opt = torch.optim.SGD(net.parameters(), lr=0.2, momentum=0.9)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step))
    for _ in range(2):
        for i, (x, y) in enumerate(make_data()):
            (nn.functional.cross_entropy(net(x), y) / 2).backward()
            if i % 2 == 1:
                opt.step()
                pruner.step(opt)
                sched.step()
                opt.zero_grad()
    assert callback.pruner.threshold == pruner.threshold
    for a, b in zip(module.net.state_dict().values(), net.state_dict().values()):
        assert torch.equal(a, b)


def test_total_steps_default_to_the_estimated_stepping_batches():
    callback = PruningCallback("gmp", target_sparsity=0.6)
    t = trainer([callback], max_epochs=3, accumulate_grad_batches=2)
    t.fit(Module(callback), make_data())
    assert t.estimated_stepping_batches == 12 == callback.pruner.steps
    assert callback.pruner.sparsity().pruned == pytest.approx(0.6, abs=0.01)  # the cubic reached its end


def test_bf16_mixed_precision_on_cpu():
    callback = PruningCallback("soft_threshold", target_sparsity=0.5)
    t = trainer([callback], precision="bf16-mixed", accumulate_grad_batches=2)
    t.fit(Module(callback), make_data())
    assert callback.pruner.steps == t.global_step == BATCHES
    assert 0 < callback.pruner.sparsity().pruned <= 1


def test_a_step_the_grad_scaler_skips_is_not_counted():
    from pytorch_lightning.plugins.precision import MixedPrecision

    class InfAtBatch3(Module):
        def training_step(self, batch, i):
            return super().training_step(batch, i) * (float("inf") if i == 3 else 1.0)

    callback = PruningCallback("soft_threshold", lats())
    scaler = torch.amp.GradScaler("cpu")  # fp16 AMP as on a GPU: a step with inf gradients is skipped
    t = pl.Trainer(callbacks=[callback], logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, max_epochs=1, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)])
    t.fit(InfAtBatch3(callback), make_data())
    assert callback.pruner.steps == BATCHES - 1  # Lightning counts the skipped step in global_step, the Pruner not


class StopAfter(pl.Callback):
    def __init__(self, epochs):
        self.epochs = epochs

    def on_train_epoch_end(self, trainer, pl_module):
        if trainer.current_epoch + 1 == self.epochs:
            trainer.should_stop = True


@pytest.mark.slow
@pytest.mark.parametrize("method,kwargs", [("soft_threshold", {"target_sparsity": 0.7}),
                                           ("str", {"target_sparsity": 0.5})])
def test_a_checkpoint_resumes_bit_for_bit(tmp_path, method, kwargs):
    epochs = 3
    straight_cb = PruningCallback(method, **kwargs)
    straight = Module(straight_cb)
    trainer([straight_cb], max_epochs=epochs).fit(straight, make_data())

    first_cb = PruningCallback(method, **kwargs)
    first = Module(first_cb)
    t = trainer([first_cb, StopAfter(1)], max_epochs=epochs)  # the same run, stopped after epoch 1
    t.fit(first, make_data())
    assert first_cb.pruner.steps == BATCHES
    path = tmp_path / "stopped.ckpt"
    t.save_checkpoint(path)

    resumed_cb = PruningCallback(method, **kwargs)
    resumed = Module(resumed_cb)  # a fresh process would build everything anew
    t = trainer([resumed_cb], max_epochs=epochs)
    t.fit(resumed, make_data(), ckpt_path=path)
    assert resumed_cb.pruner.steps == straight_cb.pruner.steps == epochs * BATCHES
    assert resumed_cb.pruner.state_dict() == straight_cb.pruner.state_dict()
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        assert torch.equal(a, b), name
    ckpt = torch.load(path, weights_only=True)
    assert any("pruner" in state for state in ckpt["callbacks"].values())


def test_sparsity_and_threshold_are_logged(tmp_path):
    from pytorch_lightning.loggers import CSVLogger

    callback = PruningCallback("soft_threshold", target_sparsity=0.5)
    t = pl.Trainer(max_epochs=1, callbacks=[callback], logger=CSVLogger(tmp_path, name="run"), log_every_n_steps=1,
                   enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    t.fit(Module(callback), make_data())
    (path,) = tmp_path.glob("run/*/metrics.csv")
    rows = [r for r in csv.DictReader(path.open()) if r.get("pruning/sparsity")]
    assert len(rows) == BATCHES
    assert float(rows[-1]["pruning/sparsity"]) == pytest.approx(callback.pruner.sparsity().pruned)
    assert float(rows[-1]["pruning/threshold"]) == pytest.approx(callback.pruner.threshold)


def test_a_learned_method_warns_when_its_penalty_is_not_in_the_loss():
    callback = PruningCallback("ltp")
    module = Module(None, schedule_lr=False)  # training_step does not add callback.regularization()
    with pytest.warns(UserWarning, match=r"loss \+ callback.regularization\(\)"):
        trainer([callback], max_epochs=1).fit(module, make_data())
    callback = PruningCallback("ltp")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*(num_workers|does not have many workers|LeafSpec).*")
        trainer([callback], max_epochs=1).fit(Module(callback, schedule_lr=False), make_data())
    assert float(callback.regularization().detach()) > 0


def test_the_hook_is_removed_after_fit():
    callback = PruningCallback("magnitude", target_sparsity=0.5)
    module = Module(callback)
    trainer([callback], max_epochs=1).fit(module, make_data())
    steps = callback.pruner.steps
    opt = torch.optim.SGD(module.parameters(), lr=0.1)
    opt.step()  # an optimizer stepped outside fit does not step the Pruner
    assert callback.pruner.steps == steps
    before = copy.deepcopy(module.state_dict())
    callback.pruner.finalize()
    assert all(torch.equal(before[k], v) for k, v in module.state_dict().items() if k in before)
