"""The checks of lab 02 pass on the reference, and fail on stubs and on typical slips with their own message."""

from __future__ import annotations

import re

import pytest
from checks_contract import fails_untouched, passes_quietly
import torch
import torch.nn.functional as F

from gencourse import diffusion as D
from gencourse.checks import diffusion as checks


def _abar(s, t, like):
    return s.alpha_bar[t].view(-1, *[1] * (like.dim() - 1))


# ----------------------------------------------------------------------------- references (what a learner writes)

def add_noise(s, x0, eps, t):
    a = _abar(s, t, x0)
    return a.sqrt() * x0 + (1 - a).sqrt() * eps


def noise_prediction_loss(denoiser, s, x0, t, eps):
    return F.mse_loss(denoiser(add_noise(s, x0, eps, t), t), eps)


def training_loss(model, x0):
    s = model.schedule
    t = torch.randint(0, s.timesteps, (len(x0),))
    eps = torch.randn_like(x0)
    return noise_prediction_loss(model.denoiser, s, x0, t, eps)


@torch.no_grad()
def ddpm_sample(model, n, generator=None):
    x = model.noise(n, generator)
    for t in reversed(range(model.schedule.timesteps)):
        x = model.schedule.step(x, model.predict_noise(x, t), t, generator=generator)
    return model.to_data(x)


def label_dropout_loss(model, x0, y):
    dropped = torch.rand(len(y)) < model.config.label_dropout
    y = torch.where(dropped, model.num_classes, y)
    s = model.schedule
    t = torch.randint(0, s.timesteps, (len(x0),))
    eps = torch.randn_like(x0)
    return F.mse_loss(model.denoiser(add_noise(s, x0, eps, t), t, y), eps)


def ddpm_step(s, xt, eps_pred, t, noise):
    beta, alpha, abar = s.betas[t], s.alphas[t], s.alpha_bar[t]
    mean = (xt - beta / (1 - abar).sqrt() * eps_pred) / alpha.sqrt()
    if t == 0:
        return mean
    return mean + (beta * (1 - s.alpha_bar_prev[t]) / (1 - abar)).sqrt() * noise


def ddim_step(s, xt, eps_pred, t, t_prev, eta, noise):
    abar = s.alpha_bar[t]
    abar_prev = s.alpha_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0_pred = (xt - (1 - abar).sqrt() * eps_pred) / abar.sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
    return abar_prev.sqrt() * x0_pred + (1 - abar_prev - sigma**2).sqrt() * eps_pred + sigma * noise


def guided_noise(eps_uncond, eps_cond, scale):
    return eps_uncond + scale * (eps_cond - eps_uncond)


REFERENCES = {
    checks.add_noise: add_noise,
    checks.noise_prediction_loss: noise_prediction_loss,
    checks.training_loss: training_loss,
    checks.ddpm_step: ddpm_step,
    checks.sampling_loop: ddpm_sample,
    checks.ddim_step: ddim_step,
    checks.guidance: guided_noise,
    checks.label_dropout_loss: label_dropout_loss,
}


@pytest.mark.parametrize("check, fn", REFERENCES.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_on_a_correct_answer(check, fn, capsys):
    passes_quietly(check, fn, capsys)


@pytest.mark.parametrize("check, k", [(checks.add_noise, 1), (checks.noise_prediction_loss, 2),
                                      (checks.training_loss, 3), (checks.ddpm_step, 4), (checks.sampling_loop, 5),
                                      (checks.ddim_step, 6), (checks.guidance, 7), (checks.label_dropout_loss, 8)])
def test_check_fails_on_an_untouched_exercise(check, k):
    fails_untouched(check, f"2.{k}")


def test_module_methods_pass_their_own_checks():
    checks.add_noise(lambda s, x0, eps, t: s.add_noise(x0, eps, t))
    checks.noise_prediction_loss(D.noise_prediction_loss)
    checks.training_loss(D.training_loss)
    checks.sampling_loop(lambda model, n, generator: D.ddpm_sample(model, n, generator=generator))
    checks.label_dropout_loss(D.training_loss)
    checks.ddpm_step(lambda s, xt, e, t, noise: s.step(xt, e, t, noise=noise))
    checks.ddim_step(lambda s, xt, e, t, tp, eta, noise: s.ddim_step(xt, e, t, tp, eta=eta, noise=noise))
    checks.guidance(D.guided_noise)


# ----------------------------------------------------------------------------- typical slips, one message each

def _fails(check, fn, match):
    with pytest.raises(AssertionError, match=match):
        check(fn)


@pytest.mark.parametrize("fn, match", [
    (lambda s, x0, e, t: _abar(s, t, x0) * x0 + (1 - _abar(s, t, x0)) * e, "VARIANCES: take their square roots"),
    (lambda s, x0, e, t: _abar(s, t, x0).sqrt() * x0 + (1 - _abar(s, t, x0)) * e, r"use sqrt\(1 - alpha_bar_t\)"),
    (lambda s, x0, e, t: x0 + (1 - _abar(s, t, x0)).sqrt() * e, "x0 is not shrunk"),
    (lambda s, x0, e, t: s.alphas[t].view(-1, *[1] * (x0.dim() - 1)).sqrt() * x0
     + (1 - s.alphas[t].view(-1, *[1] * (x0.dim() - 1))).sqrt() * e, r"schedule\.alphas\[t\].*PRODUCT"),
    (lambda s, x0, e, t: add_noise(s, x0, e, (t - 1).clamp(min=0)), "alpha_bar at t - 1"),
    (lambda s, x0, e, t: s.alpha_bar[t].view(-1, 1).sqrt() * x0 + (1 - s.alpha_bar[t].view(-1, 1)).sqrt() * e,
     r"raised RuntimeError|should have shape"),  # works for points, breaks for images
    (lambda s, x0, e, t: add_noise(s, x0, e, t) + 0.01, "differs from the reference"),
])
def test_add_noise_slips(fn, match):
    _fails(checks.add_noise, fn, match)


@pytest.mark.parametrize("fn, match", [
    (lambda d, s, x0, t, e: F.mse_loss(d(add_noise(s, x0, e, t), t), x0), "target is x0"),
    (lambda d, s, x0, t, e: F.mse_loss(d(add_noise(s, x0, e, t), t), add_noise(s, x0, e, t)), "target is xt"),
    (lambda d, s, x0, t, e: F.mse_loss(d(x0, t), e), "saw the clean x0"),
    (lambda d, s, x0, t, e: F.mse_loss(d(add_noise(s, x0, e, t), t), e, reduction="sum"), "you sum"),
    (lambda d, s, x0, t, e: (d(add_noise(s, x0, e, t), t) - e).abs().mean(), "absolute error"),
    (lambda d, s, x0, t, e: (d(add_noise(s, x0, e, t), t) - e).square().mean(1), "one number"),
    (lambda d, s, x0, t, e: noise_prediction_loss(d, s, x0, t, e).detach(), "no gradient"),
    (lambda d, s, x0, t, e: 2 * noise_prediction_loss(d, s, x0, t, e), "your loss is"),
])
def test_noise_prediction_loss_slips(fn, match):
    _fails(checks.noise_prediction_loss, fn, match)


def test_noise_prediction_loss_reports_the_learners_own_loss():
    """A wrong loss that matches no slip is reported with its own value, not with the last slip's."""
    returned = []

    def off_by_a_third(d, s, x0, t, e):
        loss = 1.3 * noise_prediction_loss(d, s, x0, t, e)
        returned.append(float(loss.detach()))
        return loss

    with pytest.raises(AssertionError, match="your loss is") as error:
        checks.noise_prediction_loss(off_by_a_third)
    message = str(error.value)
    reported, expected = (float(v) for v in re.search(r"your loss is (\S+), expected (\S+)\. ", message).groups())
    assert reported == pytest.approx(returned[0], rel=1e-4)
    assert expected == pytest.approx(returned[0] / 1.3, rel=1e-4)


def _ddpm_variant(**kw):
    def fn(s, xt, e, t, noise):
        beta, alpha, abar = s.betas[t], s.alphas[t], s.alpha_bar[t]
        var = beta * (1 - s.alpha_bar_prev[t]) / (1 - abar)
        denom = abar.sqrt() if kw.get("abar_denominator") else alpha.sqrt()
        sign = 1 if kw.get("add") else -1
        mean = (xt + sign * beta / (1 - abar).sqrt() * e) / denom
        if t == 0 and not kw.get("noise_at_zero"):
            return mean
        if kw.get("mean_only"):
            return mean
        sd = beta.sqrt() if kw.get("beta_var") else var if kw.get("no_sqrt") else var.sqrt()
        return mean + sd * noise
    return fn


@pytest.mark.parametrize("kw, match", [
    (dict(noise_at_zero=True, beta_var=True), "sigma_t\\^2 = beta_t"),
    (dict(mean_only=True), "mean only"),
    (dict(beta_var=True), "sigma_t\\^2 = beta_t"),
    (dict(no_sqrt=True), "standard deviation"),
    (dict(abar_denominator=True), r"divide by sqrt\(alpha_t\)"),
    (dict(add=True), "you ADD the noise estimate"),
])
def test_ddpm_step_slips(kw, match):
    _fails(checks.ddpm_step, _ddpm_variant(**kw), match)


@pytest.mark.parametrize("fn, match", [
    (lambda s, xt, e, t, tp, eta, noise: ddim_step(s, xt, e, t, tp, 0.0, noise), "you add no noise"),
    (lambda s, xt, e, t, tp, eta, noise: ddim_step(s, xt, e, t, t - 1, eta, noise), r"alpha_bar\[t - 1\]"),
    (lambda s, xt, e, t, tp, eta, noise: _ddim_wrapping(s, xt, e, t, tp, eta, noise), r"alpha_bar\[-1\]"),
    (lambda s, xt, e, t, tp, eta, noise: _ddim_no_sigma_in_direction(s, xt, e, t, tp, eta, noise),
     r"sqrt\(1 - abar_prev - sigma\^2\)"),
    (lambda s, xt, e, t, tp, eta, noise: (xt - (1 - s.alpha_bar[t]).sqrt() * e) / s.alpha_bar[t].sqrt(),
     "you return x0_pred"),
])
def test_ddim_step_slips(fn, match):
    _fails(checks.ddim_step, fn, match)


def _ddim_wrapping(s, xt, e, t, tp, eta, noise):
    abar, abar_prev = s.alpha_bar[t], s.alpha_bar[tp]  # -1 wraps to the last entry
    x0 = (xt - (1 - abar).sqrt() * e) / abar.sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).clamp(min=0).sqrt()
    return abar_prev.sqrt() * x0 + (1 - abar_prev - sigma**2).clamp(min=0).sqrt() * e + sigma * noise


def _ddim_no_sigma_in_direction(s, xt, e, t, tp, eta, noise):
    abar = s.alpha_bar[t]
    abar_prev = s.alpha_bar[tp] if tp >= 0 else torch.tensor(1.0)
    x0 = (xt - (1 - abar).sqrt() * e) / abar.sqrt()
    sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
    return abar_prev.sqrt() * x0 + (1 - abar_prev).sqrt() * e + sigma * noise


@pytest.mark.parametrize("fn, match", [
    (lambda u, c, w: c + w * (u - c), "roles are swapped"),
    (lambda u, c, w: (1 + w) * c - w * u, "Ho & Salimans' convention"),
    (lambda u, c, w: c, "you return eps_cond: the scale must count"),
    (lambda u, c, w: u + w * (c - u) * 0.5, "differs from the reference"),
])
def test_guidance_slips(fn, match):
    _fails(checks.guidance, fn, match)


def test_a_crash_in_the_learners_code_becomes_a_message():
    _fails(checks.guidance, lambda u, c, w: u.view(3, -1), r"Exercise 2\.7: <lambda> raised RuntimeError")


def test_a_wrong_answer_names_where_it_differs():
    with pytest.raises(AssertionError, match=r"at the code's t = 150 \(the book's t = 151\): at position "
                                             r"\[\d, \d\] of x_\{t-1\} you give \S+, expected"):
        checks.ddpm_step(lambda s, xt, e, t, noise: ddpm_step(s, xt, e, t, noise) * 1.01)


# ----------------------------------------------------------------------------- the training loss (2.3)

def _loss_variant(*, low=0, high=None, one_t=False, target="eps", clean=False, coef="std", noise="randn",
                  reduction="mean", detach=False, passes=1, shared=False):
    """A learner's training loss with one slip."""
    def fn(model, x0):
        s = model.schedule
        t = torch.randint(low, s.timesteps if high is None else high, (1 if one_t else len(x0),))
        shape = (len(x0), 1) if shared else x0.shape
        eps = torch.rand(shape) if noise == "rand" else torch.randn(shape)
        eps = eps.expand_as(x0)
        table = s.alpha_bar_prev if coef == "prev" else s.alpha_bar
        a = table[t].view(-1, 1).expand(len(x0), 1)
        if coef == "variance":
            xt = a * x0 + (1 - a) * eps
        else:
            xt = a.sqrt() * x0 + (1 - a).sqrt() * eps
        seen = x0 if clean else xt
        tt = t.expand(len(x0))
        for _ in range(passes - 1):
            model.denoiser(seen, tt)
        pred = model.denoiser(seen, tt)
        goal = {"eps": eps, "x0": x0, "xt": xt}[target]
        loss = F.mse_loss(pred, goal, reduction=reduction)
        return loss.detach() if detach else loss
    return fn


@pytest.mark.parametrize("kw, match", [
    (dict(low=1, high=11), r"outside the schedule|t takes values from"),
    (dict(low=1), "never takes the value 0"),
    (dict(high=9), "never reaches T-1"),
    (dict(one_t=True), "the same step t"),
    (dict(target="x0"), "predicts the NOISE"),
    (dict(target="xt"), "with x_t"),
    (dict(clean=True), "saw the clean x0"),
    (dict(coef="variance"), "VARIANCES"),
    (dict(coef="prev"), "alpha_bar_prev"),
    (dict(noise="rand"), "uniform on"),
    (dict(reduction="sum"), "you sum"),
    (dict(detach=True), "no gradient"),
    (dict(passes=2), "the network ran 2 times"),
    (dict(shared=True), "share their noise"),
])
def test_training_loss_slips(kw, match):
    _fails(checks.training_loss, _loss_variant(**kw), match)


def test_training_loss_reports_a_loss_it_does_not_recognise():
    _fails(checks.training_loss, lambda m, x0: 1.3 * training_loss(m, x0), r"Exercise 2\.3: your loss is \S+, expected")


def test_lab_trains_with_the_learners_objective():
    """The lab plugs the learner's loss into the model (model.objective); fit() then trains with it."""
    model = D.DiffusionModel(D.DiffusionConfig.toy(hidden=16, depth=1, emb_dim=8, timesteps=10))
    assert model.objective is D.training_loss
    seen = []

    def mine(m, x0):
        seen.append(x0.shape)
        return training_loss(m, x0)

    model.objective = mine
    loss = model.loss(torch.randn(6, 2))["loss"]
    assert seen == [(6, 2)] and loss.requires_grad
    conditional = D.DiffusionModel(D.DiffusionConfig.fast(hidden=16, depth=1, emb_dim=8, timesteps=10,
                                                          num_classes=10))
    conditional.objective = lambda m, x0, y: label_dropout_loss(m, x0, y)
    assert conditional.loss((torch.rand(6, 1, 8, 8), torch.arange(6)))["loss"].requires_grad


# ----------------------------------------------------------------------------- the sampling loop (2.5)

def _loop_variant(*, order="down", skip_last=False, passes=1, data=True, clip=True, last_noise=False,
                  global_rng=False, start="normal"):
    """A learner's DDPM loop with one slip."""
    @torch.no_grad()
    def fn(model, n, generator=None):
        s, T = model.schedule, model.schedule.timesteps
        shape = (n, *model.shape)
        x = torch.rand(shape, generator=generator) if start == "uniform" else model.noise(n, generator)
        ts = list(range(T)) if order == "up" else list(reversed(range(1 if skip_last else 0, T)))
        for t in ts:
            for _ in range(passes):
                eps = model.predict_noise(x, t) if clip else model.denoiser(x, torch.full((n,), t))
            mean = (x - s.betas[t] / (1 - s.alpha_bar[t]).sqrt() * eps) / s.alphas[t].sqrt()
            var = s.betas[t] * (1 - s.alpha_bar_prev[t]) / (1 - s.alpha_bar[t])
            xi = torch.randn(shape) if global_rng else D.draw_normal(shape, generator)
            if t == 0 and last_noise:
                x = mean + s.betas[0].sqrt() * xi
            else:
                x = mean + var.sqrt() * xi if t > 0 else mean
        return model.to_data(x) if data else x
    return fn


@pytest.mark.parametrize("kw, match", [
    (dict(order="up"), "runs forward in t"),
    (dict(skip_last=True), "stops before the code's t = 0"),
    (dict(passes=2), "the network ran 16 times"),
    (dict(data=False), "the model's own space"),
    (dict(clip=False), "you call the network directly"),
    (dict(last_noise=True), "at the last step, the code's t = 0 \\(the book's t = 1\\), you add noise"),
    (dict(global_rng=True), "change with the global random state"),
    (dict(start="uniform"), "x_T is drawn uniform"),
])
def test_sampling_loop_slips(kw, match):
    _fails(checks.sampling_loop, _loop_variant(**kw), match)


def test_sampling_loop_names_where_an_unknown_mistake_differs():
    _fails(checks.sampling_loop, lambda m, n, g=None: ddpm_sample(m, n, g) * 0.9,
           r"Exercise 2\.5: your answer differs from the reference for T = 8 and n = 5")


# ----------------------------------------------------------------------------- training with label dropout (2.8)

def _dropout_variant(*, rate=None, swap=False, batch_coin=False, null=None, labels=True):
    def fn(model, x0, y):
        p = model.config.label_dropout if rate is None else rate
        coins = torch.rand(1 if batch_coin else len(y)) < p
        dropped = ~coins if swap else coins
        y = torch.where(dropped, model.num_classes if null is None else null, y)
        s = model.schedule
        t = torch.randint(0, s.timesteps, (len(x0),))
        eps = torch.randn_like(x0)
        xt = add_noise(s, x0, eps, t)
        return F.mse_loss(model.denoiser(xt, t, y) if labels else model.denoiser(xt, t), eps)
    return fn


@pytest.mark.parametrize("kw, match", [
    (dict(rate=0.0), "no label was replaced"),
    (dict(batch_coin=True), "one per example|one coin per EXAMPLE"),
    (dict(swap=True), "you KEEP each label"),
    (dict(null=0), "dropped labels became 0"),
    (dict(rate=0.2), "read the rate from the model's config"),
    (dict(labels=False), "raised ValueError: pass labels y"),
])
def test_label_dropout_slips(kw, match):
    _fails(checks.label_dropout_loss, _dropout_variant(**kw), match)


def test_label_dropout_checks_the_training_loss_too():
    def same_t(model, x0, y):
        y = model.denoiser.label.drop(y, model.config.label_dropout)
        s = model.schedule
        t = torch.randint(0, s.timesteps, (1,)).expand(len(x0))
        eps = torch.randn_like(x0)
        return F.mse_loss(model.denoiser(add_noise(s, x0, eps, t), t, y), eps)

    _fails(checks.label_dropout_loss, same_t, r"Exercise 2\.8: every example of the batch got the same step t")
