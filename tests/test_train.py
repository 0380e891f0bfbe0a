"""Unit tests of gencourse.train: fit(), History, EMA, clipping, schedules, checkpoints, batching."""

from __future__ import annotations

import math
import pickle

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import TensorDataset  # noqa: E402

from gencourse import data, train  # noqa: E402
from gencourse.nn import MLP  # noqa: E402
from gencourse.train import TrainConfig, fit  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")



def cfg(**kwargs) -> TrainConfig:
    kwargs.setdefault("progress", False)
    return TrainConfig(**kwargs)


class Regressor(nn.Module):
    """(x, y) pairs -> mean squared error of an MLP, with a named part."""

    def __init__(self, seed: int = 0):
        super().__init__()
        torch.manual_seed(seed)
        self.net = MLP(2, 32, 1, depth=2)

    def loss(self, batch):
        x, y = data.unpack(batch)
        mse = (self.net(x).squeeze(1) - y).square().mean()
        return {"loss": mse, "mse": mse.detach(), "half": 0.5 * mse.detach()}


def regression_data(n: int = 16, seed: int = 0) -> TensorDataset:
    g = torch.Generator().manual_seed(seed)
    return TensorDataset(torch.randn(n, 2, generator=g), torch.randn(n, generator=g))


class MeanOfBatch(nn.Module):
    """loss = mean of the batch: lets a test read which examples a batch held."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def loss(self, batch):
        x, _ = data.unpack(batch)
        return {"loss": x.float().mean() + 0 * self.w.sum()}


class Linear2(nn.Module):
    """Two parameters, loss c . w, trained with plain SGD: every step moves w by -lr * c."""

    def __init__(self, c=(1.0, -2.0), lr: float = 0.1):
        super().__init__()
        self.w = nn.Parameter(torch.tensor([0.5, 0.25]))
        self.c = torch.tensor(c)
        self.lr = lr
        self.optimizer = None

    def loss(self, batch):
        return {"loss": (self.w * self.c).sum() + 0 * batch.sum()}

    def configure_optimizers(self, config):
        self.optimizer = torch.optim.SGD(self.parameters(), lr=self.lr)
        return [self.optimizer]


# ----------------------------------------------------------------------------- fit

def test_fit_overfits_one_batch():
    model = Regressor()
    data = regression_data(16)
    before = train.evaluate_loss(model, data, batch_size=16, max_batches=1)["loss"]
    history = fit(model, data, cfg(steps=300, batch_size=16, lr=1e-2))
    after = train.evaluate_loss(model, data, batch_size=16, max_batches=1)["loss"]
    assert before > 0.3
    assert after < 0.05 * before
    assert history["loss"][0] == pytest.approx(before, rel=1e-5)  # the first step saw the same batch
    assert history["loss"][-1] < 0.1 * history["loss"][0]
    assert len(history["loss"]) == len(history["mse"]) == len(history["half"]) == 300
    assert history["half"][5] == pytest.approx(0.5 * history["mse"][5])
    assert all(isinstance(v, float) for v in history["loss"])
    assert not model.training  # fit leaves the model in eval mode


def test_fit_same_seed_same_history():
    data = regression_data(40)
    runs = [fit(Regressor(seed=1), data, cfg(steps=30, batch_size=8, seed=3))["loss"] for _ in range(2)]
    assert runs[0] == runs[1]
    other = fit(Regressor(seed=1), data, cfg(steps=30, batch_size=8, seed=4))["loss"]
    assert other != runs[0]  # the shuffling order follows config.seed


def test_fit_accepts_a_plain_tensor():
    model = MeanOfBatch()
    x = torch.arange(12.0).reshape(12, 1)
    h = fit(model, x, cfg(steps=6, batch_size=4))
    # each epoch of three batches covers all twelve examples: the batch means average to 5.5
    assert sum(h["loss"][:3]) / 3 == pytest.approx(5.5)
    assert sum(h["loss"][3:]) / 3 == pytest.approx(5.5)


def test_fit_moves_data_to_model_device():
    seen = []

    class Spy(MeanOfBatch):
        def loss(self, batch):
            seen.append(batch.device)
            return super().loss(batch)

    fit(Spy(), torch.ones(4, 1), cfg(steps=2, batch_size=2))
    assert seen == [torch.device("cpu")] * 2


def test_lr_schedule_is_applied():
    model = Linear2()
    fit(model, torch.zeros(4, 1), cfg(steps=10, batch_size=2, warmup=2, grad_clip=None))
    # after 10 scheduler steps: progress (10 - 2) / 8 = 1, factor 0.1
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_lr_schedule_constant_keeps_the_rate():
    model = Linear2()
    fit(model, torch.zeros(4, 1), cfg(steps=10, batch_size=2, warmup=2, schedule="constant", grad_clip=None))
    assert model.optimizer.param_groups[0]["lr"] == pytest.approx(0.1)


def test_lr_factor():
    c = cfg(steps=110, warmup=10)
    assert train.lr_factor(0, c) == pytest.approx(0.1)
    assert train.lr_factor(4, c) == pytest.approx(0.5)
    assert train.lr_factor(9, c) == pytest.approx(1.0)
    assert train.lr_factor(10, c) == pytest.approx(1.0)
    assert train.lr_factor(60, c) == pytest.approx(0.55)  # half way down the cosine
    assert train.lr_factor(110, c) == pytest.approx(0.1)
    factors = [train.lr_factor(i, c) for i in range(10, 111)]
    assert all(a >= b for a, b in zip(factors, factors[1:]))


def test_lr_factor_warmup_and_schedule_are_independent():
    cosine = cfg(steps=50)                                 # no warm-up: the cosine decay still applies
    assert cosine.warmup == 0 and cosine.schedule == "cosine"
    assert train.lr_factor(0, cosine) == pytest.approx(1.0)
    assert train.lr_factor(25, cosine) == pytest.approx(0.55)
    assert train.lr_factor(50, cosine) == pytest.approx(0.1)
    constant = cfg(steps=50, schedule="constant")
    assert all(train.lr_factor(i, constant) == 1.0 for i in (0, 10, 25, 49, 50))
    warm_constant = cfg(steps=50, warmup=4, schedule="constant")
    assert [train.lr_factor(i, warm_constant) for i in range(6)] == pytest.approx([0.25, 0.5, 0.75, 1.0, 1.0, 1.0])


# ----------------------------------------------------------------------------- EMA

def test_ema_matches_hand_computation():
    d, lr, steps = 0.8, 0.1, 3  # not 0.5: a swapped decay and 1 - decay must show
    model = Linear2(lr=lr)
    w = model.w.detach().clone()
    c = model.c
    shadow = w.clone()
    for _ in range(steps):
        w = w - lr * c
        shadow = d * shadow + (1 - d) * w
    fit(model, torch.zeros(4, 1), cfg(steps=steps, batch_size=2, ema_decay=d, grad_clip=None, schedule="constant"))
    raw = torch.tensor([0.5, 0.25]) - steps * lr * c
    assert torch.allclose(model.w.detach(), shadow, atol=1e-6)
    assert not torch.allclose(model.w.detach(), raw)
    # the average lies between the start and the raw end point
    start = torch.tensor([0.5, 0.25])
    lo, hi = torch.minimum(start, raw), torch.maximum(start, raw)
    assert ((model.w >= lo) & (model.w <= hi)).all()


def test_ema_class_directly():
    model = nn.Linear(2, 1)
    ema = train.EMA(model, 0.9)
    start = {k: v.clone() for k, v in model.state_dict().items()}
    with torch.no_grad():
        model.weight.add_(1.0)
    ema.update(model)
    assert torch.allclose(ema.shadow["weight"], start["weight"] + 0.1)
    assert torch.allclose(ema.shadow["bias"], start["bias"])
    # the shadow is a copy: changing the model does not change it
    with torch.no_grad():
        model.weight.zero_()
    assert torch.allclose(ema.shadow["weight"], start["weight"] + 0.1)
    ema.load_into(model)
    assert torch.allclose(model.weight, start["weight"] + 0.1)


def test_ema_copies_integer_buffers():
    model = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2))
    ema = train.EMA(model, 0.9)
    model.train()
    for _ in range(3):
        model(torch.randn(4, 2))
    ema.update(model)
    assert ema.shadow["1.num_batches_tracked"].item() == 3
    assert ema.shadow["1.num_batches_tracked"].dtype == torch.long


@pytest.mark.parametrize("bad", [1.0, 1.5, -0.1])
def test_bad_ema_decay(bad):
    with pytest.raises(ValueError, match="ema_decay"):
        fit(Linear2(), torch.zeros(4, 1), cfg(steps=1, batch_size=2, ema_decay=bad))


# ----------------------------------------------------------------------------- gradient clipping

class Huge(Linear2):
    def __init__(self):
        super().__init__(c=(1e6, -1e6, 1e6, 1e6), lr=0.1)
        self.w = nn.Parameter(torch.zeros(4))


def test_grad_clip_bounds_the_update():
    model = Huge()
    fit(model, torch.zeros(4, 1), cfg(steps=1, batch_size=2, grad_clip=1.0))
    # SGD: the step is lr times the clipped gradient, whose norm is at most 1
    assert model.w.detach().norm().item() == pytest.approx(0.1, rel=1e-4)
    # and it points against the gradient
    assert torch.allclose(model.w.detach(), -0.1 * model.c / model.c.norm(), atol=1e-6)


def test_no_grad_clip_takes_the_full_step():
    model = Huge()
    fit(model, torch.zeros(4, 1), cfg(steps=1, batch_size=2, grad_clip=None))
    assert torch.allclose(model.w.detach(), -0.1 * model.c)


def test_step_function_clips_only_when_asked():
    w = nn.Parameter(torch.zeros(3))
    opt = torch.optim.SGD([w], lr=1.0)
    train.step((w * torch.tensor([30.0, 40.0, 0.0])).sum(), opt, grad_clip=5.0)
    assert torch.allclose(w.detach(), torch.tensor([-3.0, -4.0, 0.0]), atol=1e-5)
    w2 = nn.Parameter(torch.zeros(3))
    opt2 = torch.optim.SGD([w2], lr=1.0)
    train.step((w2 * torch.tensor([3.0, 4.0, 0.0])).sum(), opt2, grad_clip=100.0)  # below the limit: unchanged
    assert torch.allclose(w2.detach(), torch.tensor([-3.0, -4.0, 0.0]))


# ----------------------------------------------------------------------------- training_step

class TwoOptimizers(nn.Module):
    """Like a GAN: its own update with two optimisers, and a dict of logs."""

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.zeros(1))
        self.b = nn.Parameter(torch.zeros(1))
        self.calls = []

    def configure_optimizers(self, config):
        return (torch.optim.SGD([self.a], lr=config.lr), torch.optim.SGD([self.b], lr=config.lr))

    def training_step(self, batch, optimizers, config):
        self.calls.append((batch, optimizers, config))
        opt_a, opt_b = optimizers
        train.step((self.a * 1.0).sum(), opt_a, config.grad_clip)
        train.step((self.b * -2.0).sum(), opt_b, config.grad_clip)
        return {"loss": 1.5 + len(self.calls), "d_loss": 0.25}

    def loss(self, batch):  # never used: training_step takes precedence
        raise AssertionError("fit must call training_step, not loss")


def test_training_step_override():
    model = TwoOptimizers()
    x = torch.arange(8.0).reshape(8, 1)
    config = cfg(steps=3, batch_size=4, lr=0.5, schedule="constant", grad_clip=None)
    h = fit(model, x, config)
    assert len(model.calls) == 3
    batch, optimizers, seen = model.calls[0]
    assert isinstance(batch, torch.Tensor) and batch.shape == (4, 1)  # a single tensor comes unwrapped
    assert isinstance(optimizers, list) and len(optimizers) == 2
    assert all(isinstance(o, torch.optim.SGD) for o in optimizers)
    assert all(call[2] is config for call in model.calls)  # the step receives fit's config
    assert h["loss"] == [2.5, 3.5, 4.5] and h["d_loss"] == [0.25] * 3
    assert model.a.item() == pytest.approx(-1.5) and model.b.item() == pytest.approx(3.0)


def test_training_step_reads_the_config():
    """The config reaches the model's own update: here its grad_clip bounds both optimisers' steps."""
    clipped, free = TwoOptimizers(), TwoOptimizers()
    fit(clipped, torch.zeros(4, 1), cfg(steps=1, batch_size=2, lr=1.0, grad_clip=0.5))
    fit(free, torch.zeros(4, 1), cfg(steps=1, batch_size=2, lr=1.0, grad_clip=None))
    assert (clipped.a.item(), clipped.b.item()) == pytest.approx((-0.5, 0.5))
    assert (free.a.item(), free.b.item()) == pytest.approx((-1.0, 2.0))


def test_training_step_default_optimizer_is_adamw():
    seen = []

    class M(nn.Module):
        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(2))

        def training_step(self, batch, optimizers, config):
            seen.append(optimizers)
            train.step(self.p.sum(), optimizers[0], None)
            return {"loss": 0.0}

    m = M()
    fit(m, torch.zeros(4, 1), cfg(steps=1, batch_size=2, lr=3e-3, weight_decay=0.1, schedule="constant"))
    (opt,) = seen[0]
    assert isinstance(opt, torch.optim.AdamW)
    assert opt.param_groups[0]["params"][0] is m.p
    assert opt.param_groups[0]["weight_decay"] == 0.1 and opt.param_groups[0]["lr"] == pytest.approx(3e-3)


def test_training_step_must_return_dict_with_loss():
    class NoLoss(TwoOptimizers):
        def training_step(self, batch, optimizers, config):
            super().training_step(batch, optimizers, config)
            return {"d_loss": 1.0}

    with pytest.raises(TypeError, match=r"NoLoss\.training_step\(batch, optimizers, config\) must return a dict"):
        fit(NoLoss(), torch.zeros(4, 1), cfg(steps=1, batch_size=2))


def test_training_step_tensor_logs_become_floats():
    class TensorLogs(TwoOptimizers):
        def training_step(self, batch, optimizers, config):
            loss = (self.a * 2).sum()
            train.step(loss, optimizers[0], None)
            train.step(self.b.sum(), optimizers[1], None)
            return {"loss": loss, "other": torch.tensor(3.0)}

    h = fit(TensorLogs(), torch.zeros(4, 1), cfg(steps=2, batch_size=2))
    assert all(type(v) is float for v in h["loss"] + h["other"])
    assert h["other"] == [3.0, 3.0]


# ----------------------------------------------------------------------------- bad models, bad losses

def test_loss_returning_non_dict():
    class Bad(MeanOfBatch):
        def loss(self, batch):
            return self.w.sum()

    with pytest.raises(TypeError, match=r"Bad\.loss\(batch\) must return a dict with key 'loss'"):
        fit(Bad(), torch.zeros(4, 1), cfg(steps=1, batch_size=2))


def test_loss_dict_without_loss_key():
    class Bad(MeanOfBatch):
        def loss(self, batch):
            return {"nll": self.w.sum()}

    with pytest.raises(TypeError, match=r"loss\(batch\)"):
        fit(Bad(), torch.zeros(4, 1), cfg(steps=1, batch_size=2))


def test_loss_not_scalar():
    class Bad(MeanOfBatch):
        def loss(self, batch):
            return {"loss": self.w * batch.sum(dim=1)}

    with pytest.raises(ValueError, match="must be a scalar"):
        fit(Bad(), torch.ones(4, 1), cfg(steps=1, batch_size=2))


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_non_finite_loss(value):
    class Bad(MeanOfBatch):
        def loss(self, batch):
            return {"loss": self.w.sum() * value}

    with pytest.raises(FloatingPointError, match="NaN or infinite"):
        fit(Bad(), torch.ones(4, 1), cfg(steps=1, batch_size=2))


def test_model_without_loss():
    with pytest.raises(TypeError, match="loss"):
        fit(nn.Linear(2, 2), torch.zeros(4, 2), cfg(steps=1))
    with pytest.raises(TypeError, match="nn.Module"):
        fit(object(), torch.zeros(4, 2), cfg(steps=1))


@pytest.mark.parametrize("config, exc, name", [
    (dict(steps=1), TypeError, "TrainConfig"),
    (TrainConfig(steps=0, progress=False), ValueError, "config.steps"),
    (TrainConfig(steps=2.5, progress=False), TypeError, "config.steps"),
    (TrainConfig(batch_size=0, progress=False), ValueError, "config.batch_size"),
    (TrainConfig(grad_clip=-1.0, progress=False), ValueError, "config.grad_clip"),
    (TrainConfig(schedule="linear", progress=False), ValueError, "config.schedule"),
    (TrainConfig(warmup=-1, progress=False), ValueError, "config.warmup"),
    (TrainConfig(warmup=2.5, progress=False), ValueError, "config.warmup"),
])
def test_bad_config(config, exc, name):
    with pytest.raises(exc, match=name):
        fit(MeanOfBatch(), torch.zeros(4, 1), config)


def test_bad_data():
    with pytest.raises(TypeError, match="data must be"):
        fit(MeanOfBatch(), [[0.0], [1.0]], cfg(steps=1))
    with pytest.raises(ValueError, match="data is empty"):
        fit(MeanOfBatch(), torch.zeros(0, 1), cfg(steps=1))


# ----------------------------------------------------------------------------- evaluation during training

def test_val_loss_recorded_at_the_right_steps():
    model = MeanOfBatch()
    val = torch.arange(100.0).reshape(100, 1)
    h = fit(model, torch.zeros(8, 1), cfg(steps=10, batch_size=10, eval_every=4, eval_batches=2), val_data=val)
    assert h.eval_steps == [4, 8, 10]
    # val batches come in order, not shuffled: the first 2 batches of 10 hold 0..19, mean 9.5
    assert h["val_loss"] == pytest.approx([9.5, 9.5, 9.5])
    assert len(h["loss"]) == 10


def test_val_loss_tracks_the_model():
    model = Regressor()
    data = regression_data(16)
    h = fit(model, data, cfg(steps=60, batch_size=16, lr=1e-2, eval_every=20), val_data=data)
    assert h.eval_steps == [20, 40, 60]
    assert set(h.values) >= {"val_loss", "val_mse", "val_half"}
    # the last evaluation saw the final weights
    assert h["val_loss"][-1] == pytest.approx(train.evaluate_loss(model, data, 16, 10)["loss"], rel=1e-5)
    assert h["val_loss"][-1] < h["val_loss"][0]


class Unscored(nn.Module):
    """Like a GAN: a generator and a critic, its own update, no loss, and nothing to validate with."""

    def __init__(self, ema_part: str | None = None):
        super().__init__()
        self.gen = nn.Linear(1, 1, bias=False)
        self.critic = nn.Linear(1, 1, bias=False)
        with torch.no_grad():
            self.gen.weight.fill_(1.0)
            self.critic.weight.fill_(1.0)
        self.ema_part = ema_part
        self.validated = []

    def configure_optimizers(self, config):
        return [torch.optim.SGD(self.gen.parameters(), lr=0.1), torch.optim.SGD(self.critic.parameters(), lr=0.1)]

    def training_step(self, batch, optimizers, config):
        train.step(self.gen.weight.sum(), optimizers[0], None)            # gen: -0.1 per step
        train.step(-2 * self.critic.weight.sum(), optimizers[1], None)    # critic: +0.2 per step
        return {"loss": 0.0}

    def ema_module(self):
        return getattr(self, self.ema_part) if self.ema_part else self


class Adversarial(Unscored):
    """The same, validated by its own validation_step."""

    def validation_step(self, batch):
        self.validated.append((self.training, torch.is_grad_enabled()))
        return {"loss": batch.mean(), "score": self.critic.weight.sum() * 0 + 2.0}


def test_validation_step_validates_a_model_without_loss():
    model = Adversarial()
    assert not hasattr(model, "loss")
    val = torch.arange(100.0).reshape(100, 1)
    h = fit(model, torch.zeros(4, 1), cfg(steps=4, batch_size=10, eval_every=2, eval_batches=2), val_data=val)
    assert h.eval_steps == [2, 4]
    assert h["val_loss"] == pytest.approx([9.5, 9.5]) and h["val_score"] == [2.0, 2.0]
    assert model.validated and set(model.validated) == {(False, False)}   # eval mode, no gradients
    assert train.evaluate_loss(model, val, batch_size=10, max_batches=1) == pytest.approx({"loss": 4.5, "score": 2.0})


def test_validation_step_takes_precedence_over_loss():
    class Both(MeanOfBatch):
        def validation_step(self, batch):
            return {"loss": batch.float().mean() + 100, "extra": torch.tensor(1.0)}

    h = fit(Both(), torch.zeros(4, 1), cfg(steps=2, batch_size=2, eval_every=1), val_data=torch.zeros(4, 1))
    assert h["loss"] == [0.0, 0.0]                          # training still uses loss
    assert h["val_loss"] == [100.0, 100.0] and h["val_extra"] == [1.0, 1.0]


def test_validation_step_is_checked():
    class Bad(Adversarial):
        def validation_step(self, batch):
            return {"score": 1.0}

    with pytest.raises(TypeError, match=r"Bad\.validation_step\(batch\) must return a dict with key 'loss'"):
        fit(Bad(), torch.zeros(4, 1), cfg(steps=1, batch_size=2, eval_every=1), val_data=torch.zeros(4, 1))


def test_val_data_without_a_way_to_score_it_warns():
    model = Unscored()
    assert not hasattr(model, "validation_step") and not hasattr(model, "loss")
    with pytest.warns(UserWarning, match=r"neither validation_step\(batch\) nor loss\(batch\)"):
        h = fit(model, torch.zeros(4, 1), cfg(steps=2, batch_size=2, eval_every=1), val_data=torch.zeros(4, 1))
    assert h.eval_steps == [] and not any(k.startswith("val_") for k in h.values)
    with pytest.raises(TypeError, match="neither validation_step"):
        train.evaluate_loss(model, torch.zeros(4, 1), 2, 1)


def test_ema_module_averages_only_that_submodule():
    d, steps = 0.5, 4
    model = Adversarial(ema_part="gen")
    fit(model, torch.zeros(4, 1), cfg(steps=steps, batch_size=2, ema_decay=d, schedule="constant"))
    w, shadow = 1.0, 1.0
    for _ in range(steps):
        w -= 0.1
        shadow = d * shadow + (1 - d) * w
    assert model.gen.weight.item() == pytest.approx(shadow)           # averaged
    assert model.critic.weight.item() == pytest.approx(1.0 + 0.2 * steps)   # its last weights, not averaged
    everything = Adversarial(ema_part=None)
    fit(everything, torch.zeros(4, 1), cfg(steps=steps, batch_size=2, ema_decay=d, schedule="constant"))
    assert everything.gen.weight.item() == pytest.approx(shadow)
    assert everything.critic.weight.item() < 1.0 + 0.2 * steps - 1e-3    # the critic averaged too
    assert train.ema_module(model) is model.gen and train.ema_module(nn.Linear(1, 1)).in_features == 1


def test_no_eval_without_val_data_or_interval():
    h = fit(MeanOfBatch(), torch.zeros(4, 1), cfg(steps=4, batch_size=2, eval_every=2))
    assert h.eval_steps == [] and "val_loss" not in h.values
    h = fit(MeanOfBatch(), torch.zeros(4, 1), cfg(steps=4, batch_size=2), val_data=torch.zeros(4, 1))
    assert h.eval_steps == [] and "val_loss" not in h.values


def test_evaluate_loss_restores_mode():
    model = MeanOfBatch()
    model.train()
    out = train.evaluate_loss(model, torch.arange(10.0).reshape(10, 1), batch_size=4, max_batches=10)
    assert model.training
    # batches [0..3], [4..7], [8, 9]: the mean of the batch means
    assert out["loss"] == pytest.approx((1.5 + 5.5 + 8.5) / 3)
    model.eval()
    train.evaluate_loss(model, torch.zeros(4, 1), 2, 1)
    assert not model.training


# ----------------------------------------------------------------------------- History

def test_history_final_getitem_repr():
    h = train.History()
    for v in range(1, 101):
        h.log({"loss": float(v), "kl": 2.0})
    assert h["loss"][:3] == [1.0, 2.0, 3.0]
    assert h.final() == pytest.approx(sum(range(51, 101)) / 50)
    assert h.final("loss", last=1) == 100.0
    assert h.final("kl", last=10) == 2.0
    assert "loss=100" in repr(h) and "kl=2" in repr(h)
    with pytest.raises(KeyError, match="history has no 'elbo'") as err:
        h["elbo"]
    assert "kl" in str(err.value) and "loss" in str(err.value)
    with pytest.raises(KeyError, match="nll"):
        h.final("nll")


def test_history_seconds_and_state_round_trip():
    h = fit(Regressor(), regression_data(8), cfg(steps=3, batch_size=4, eval_every=2), val_data=regression_data(8))
    assert h.seconds > 0
    state = h.state()
    again = train.History.from_state(state)
    assert dict(again.values) == dict(h.values) and again.eval_steps == h.eval_steps == [2, 3]
    assert again.seconds == h.seconds
    assert again.final("loss", 2) == h.final("loss", 2)
    assert train.History().seconds == 0.0


def test_history_plot():
    h = train.History()
    for v in range(40):
        h.log({"loss": 1.0 / (v + 1), "kl": 0.1})
    h.eval_steps = [20, 40]
    h.log({"val_loss": 0.5})
    h.log({"val_loss": 0.25})
    fig = h.plot()
    assert isinstance(fig, matplotlib.figure.Figure)
    ax = fig.axes[0]
    labels = [line.get_label() for line in ax.get_lines()]
    assert labels == ["loss", "kl", "val_loss"]
    val_line = ax.get_lines()[2]
    assert list(val_line.get_xdata()) == [20, 40] and list(val_line.get_ydata()) == [0.5, 0.25]
    fig2 = h.plot(keys=["kl"])
    assert [line.get_label() for line in fig2.axes[0].get_lines()] == ["kl"]
    fig3, ax3 = plt.subplots()
    assert h.plot(ax=ax3) is fig3


# ----------------------------------------------------------------------------- checkpoints

def test_checkpoint_round_trip(tmp_path):
    path = tmp_path / "model.pt"
    model = Regressor(seed=2)
    fit(model, regression_data(8), cfg(steps=5, batch_size=4, checkpoint=str(path)))
    assert path.exists()
    fresh = Regressor(seed=9)
    assert not torch.equal(fresh.net[0].weight, model.net[0].weight)
    assert train.load(fresh, str(path)) is fresh
    for (k, a), (_, b) in zip(model.state_dict().items(), fresh.state_dict().items()):
        assert torch.equal(a, b), k


def test_save_load(tmp_path):
    path = str(tmp_path / "w.pt")
    a, b = Regressor(seed=0), Regressor(seed=1)
    train.save(a, path)
    train.load(b, path)
    x = torch.randn(5, 2)
    assert torch.equal(a.net(x), b.net(x))


class _Payload:
    def __reduce__(self):
        return (print, ("code ran from a checkpoint",))


def test_load_is_weights_only(tmp_path):
    path = str(tmp_path / "evil.pt")
    torch.save({"w": _Payload()}, path)
    with pytest.raises(pickle.UnpicklingError):
        train.load(Regressor(), path)


def test_load_wrong_architecture(tmp_path):
    path = str(tmp_path / "w.pt")
    train.save(nn.Linear(3, 3), path)
    with pytest.raises(RuntimeError):
        train.load(Regressor(), path)


# ----------------------------------------------------------------------------- batching helpers

def test_batches_single_tensor_unwrapped_and_endless():
    x = torch.arange(10.0).reshape(10, 1)
    stream = train.batches(x, 4, seed=0)
    got = [next(stream) for _ in range(6)]  # three epochs of two full batches (the rest is dropped)
    assert all(isinstance(b, torch.Tensor) and b.shape == (4, 1) for b in got)
    epoch = torch.cat(got[:2]).flatten().tolist()
    assert len(set(epoch)) == 8  # no repeats within an epoch
    assert torch.cat(got[:2]).flatten().tolist() != torch.cat(got[2:4]).flatten().tolist()  # reshuffled
    again = train.batches(x, 4, seed=0)
    assert all(torch.equal(next(again), b) for b in got)  # the seed fixes the order
    other = train.batches(x, 4, seed=1)
    assert not all(torch.equal(next(other), b) for b in got)


def test_batches_labelled_data():
    ds = TensorDataset(torch.arange(6.0), torch.arange(6) * 10)
    batch = next(train.batches(ds, 3, seed=0))
    assert isinstance(batch, (list, tuple)) and len(batch) == 2
    x, y = data.unpack(batch)
    assert torch.equal(y, (x * 10).long())  # pairs stay together


def test_batches_small_data_keeps_the_partial_batch():
    b = next(train.batches(torch.arange(3.0), 8, seed=0))
    assert sorted(b.tolist()) == [0.0, 1.0, 2.0]


def test_as_dataset_and_to_device():
    ds = TensorDataset(torch.zeros(2))
    assert train.as_dataset(ds) is ds
    assert isinstance(train.as_dataset(torch.zeros(3, 2)), TensorDataset)
    with pytest.raises(TypeError, match="data must be"):
        train.as_dataset([1, 2])
    pair = (torch.zeros(2), torch.ones(2))
    moved = train.to_device(pair, torch.device("cpu"))
    assert isinstance(moved, tuple) and torch.equal(moved[1], pair[1])
    assert isinstance(train.to_device([torch.zeros(1)], "cpu"), list)


# ----------------------------------------------------------------------------- presets

def test_presets():
    assert TrainConfig.fast() == TrainConfig()
    full = TrainConfig.full()
    assert (full.steps, full.batch_size, full.warmup, full.schedule) == (10_000, 128, 200, "cosine")


# ----------------------------------------------------------------------------- fit_or_load

@pytest.fixture
def cache(monkeypatch, tmp_path):
    monkeypatch.setenv("GENCOURSE_CACHE", str(tmp_path))
    return tmp_path / "models"


class _Counted:
    """Wraps train.fit and counts the calls."""

    def __init__(self, monkeypatch):
        self.calls = 0
        real = train.fit

        def counted(*args, **kwargs):
            self.calls += 1
            return real(*args, **kwargs)

        monkeypatch.setattr(train, "fit", counted)


def _weights_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_fit_or_load_trains_once_then_loads(cache, monkeypatch):
    x = regression_data(8)
    config = cfg(steps=5, batch_size=4, eval_every=5)
    model, history = train.fit_or_load("reg", Regressor, x, config, val_data=x)
    assert not model.training and history.seconds > 0 and history.eval_steps == [5]
    files = sorted(cache.glob("*.pt"))
    assert len(files) == 1 and files[0].name.startswith("reg-")
    assert not list(cache.glob("*.tmp"))                    # written under a temporary name, then moved
    monkeypatch.setattr(train, "fit", lambda *a, **k: pytest.fail("the cached model must be loaded, not trained"))
    again, again_history = train.fit_or_load("reg", lambda: Regressor(seed=5), x, config, val_data=x)
    assert again is not model and _weights_equal(again, model) and not again.training
    assert dict(again_history.values) == dict(history.values)
    assert again_history.seconds == history.seconds and again_history.eval_steps == history.eval_steps


def test_fit_or_load_file_loads_with_weights_only(cache):
    model, history = train.fit_or_load("reg", Regressor, regression_data(8), cfg(steps=2, batch_size=4))
    (path,) = cache.glob("*.pt")
    saved = torch.load(path, weights_only=True)
    assert set(saved) == {"state", "history"}
    fresh = Regressor(seed=3)
    fresh.load_state_dict(saved["state"])
    assert _weights_equal(fresh, model)
    assert train.History.from_state(saved["history"]).values == history.values


@pytest.mark.parametrize("change", ["config", "data", "name"])
def test_fit_or_load_trains_again_when_anything_changes(cache, monkeypatch, change):
    x, config = regression_data(8), cfg(steps=2, batch_size=4)
    train.fit_or_load("reg", Regressor, x, config)
    counted = _Counted(monkeypatch)
    train.fit_or_load("reg", Regressor, x, config)
    assert counted.calls == 0
    if change == "config":
        train.fit_or_load("reg", Regressor, x, cfg(steps=3, batch_size=4))
    elif change == "data":
        x2 = TensorDataset(x.tensors[0].clone(), x.tensors[1] + 1)
        train.fit_or_load("reg", Regressor, x2, config)
    else:
        train.fit_or_load("reg2", Regressor, x, config)
    assert counted.calls == 1
    assert len(list(cache.glob("*.pt"))) == 2                # the first model stays cached beside it


@pytest.mark.parametrize("corruption", ["truncated", "text", "other_model", "code"])
def test_fit_or_load_corrupt_cache_warns_and_retrains(cache, monkeypatch, capfd, corruption):
    x, config = regression_data(8), cfg(steps=2, batch_size=4)
    model, _ = train.fit_or_load("reg", Regressor, x, config)
    (path,) = cache.glob("*.pt")
    if corruption == "truncated":
        path.write_bytes(path.read_bytes()[:200])
    elif corruption == "text":
        path.write_text("not a checkpoint")
    elif corruption == "other_model":
        torch.save({"state": nn.Linear(3, 3).state_dict(), "history": train.History().state()}, path)
    else:
        torch.save({"state": _Payload(), "history": {}}, path)
    counted = _Counted(monkeypatch)
    with pytest.warns(UserWarning, match="could not read the cached model"):
        again, _ = train.fit_or_load("reg", Regressor, x, config)
    assert counted.calls == 1 and _weights_equal(again, model)   # same seed, same data: the same training
    assert "code ran" not in capfd.readouterr().out             # weights_only: nothing in the file runs
    train.fit_or_load("reg", Regressor, x, config)               # the file was replaced by a good one
    assert counted.calls == 1


def test_fit_or_load_bad_arguments(cache):
    x, config = regression_data(8), cfg(steps=1, batch_size=4)
    for bad in ("", "a/b", "has space", None):
        with pytest.raises(ValueError, match="name must be"):
            train.fit_or_load(bad, Regressor, x, config)
    with pytest.raises(TypeError, match="make_model"):
        train.fit_or_load("reg", object(), x, config)
    with pytest.raises(TypeError, match="TrainConfig"):
        train.fit_or_load("reg", Regressor, x, dict(steps=1))
    assert not cache.exists() or not list(cache.glob("*.pt"))


def test_cache_key_follows_what_was_trained():
    x, config = regression_data(8), cfg(steps=2)
    key = train.cache_key("reg", Regressor(), x, config)
    assert key == train.cache_key("reg", Regressor(seed=4), regression_data(8), cfg(steps=2))
    assert len({key, train.cache_key("reg", Regressor(), x, cfg(steps=3)),
                train.cache_key("reg", Regressor(), regression_data(8, seed=1), config),
                train.cache_key("other", Regressor(), x, config),
                train.cache_key("reg", MeanOfBatch(), x, config)}) == 5
