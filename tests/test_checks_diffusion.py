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
    checks.ddpm_step: ddpm_step,
    checks.ddim_step: ddim_step,
    checks.guidance: guided_noise,
}


@pytest.mark.parametrize("check, fn", REFERENCES.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_on_a_correct_answer(check, fn, capsys):
    passes_quietly(check, fn, capsys)


@pytest.mark.parametrize("check, k", [(checks.add_noise, 1), (checks.noise_prediction_loss, 2),
                                      (checks.ddpm_step, 3), (checks.ddim_step, 4), (checks.guidance, 5)])
def test_check_fails_on_an_untouched_exercise(check, k):
    fails_untouched(check, f"2.{k}")


def test_module_methods_pass_their_own_checks():
    checks.add_noise(lambda s, x0, eps, t: s.add_noise(x0, eps, t))
    checks.noise_prediction_loss(D.noise_prediction_loss)
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
    _fails(checks.guidance, lambda u, c, w: u.view(3, -1), r"Exercise 2\.5: <lambda> raised RuntimeError")


def test_a_wrong_answer_names_where_it_differs():
    with pytest.raises(AssertionError, match=r"at t = 150: at position \[\d, \d\] of x_\{t-1\} you give \S+, expected"):
        checks.ddpm_step(lambda s, xt, e, t, noise: ddpm_step(s, xt, e, t, noise) * 1.01)
