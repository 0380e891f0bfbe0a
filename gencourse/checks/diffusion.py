"""Checks of lab 02, "Diffusion models": forward process, loss, DDPM step, DDIM step, guidance.

Each check calls the learner's function on fixed inputs and compares it with
the reference in gencourse.diffusion (NoiseSchedule.add_noise, noise_prediction_loss,
NoiseSchedule.step, .ddim_step, guided_noise); before the generic "values differ"
message it tries the usual slips and names the one it recognises.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import diffusion
from . import call, close, describe, expect_tensor, fixed, graded, mismatch, passed, seeded


def _schedule() -> diffusion.NoiseSchedule:
    return diffusion.NoiseSchedule.make("linear", 200)


def _randn(*shape, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=seeded(seed))


# ----------------------------------------------------------------------------- 2.1 forward process

def _add_noise_slips(s: diffusion.NoiseSchedule, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> list:
    a = s.alpha_bar[t].view(-1, *[1] * (x0.dim() - 1))
    slips = [
        (a * x0 + (1 - a) * eps,
         "you scale by alpha_bar and 1 - alpha_bar; these are VARIANCES: take their square roots."),
        (a.sqrt() * x0 + (1 - a) * eps, "the noise is scaled by 1 - alpha_bar_t; use sqrt(1 - alpha_bar_t)."),
        (x0 + (1 - a).sqrt() * eps, "x0 is not shrunk: multiply it by sqrt(alpha_bar_t), so that xt keeps "
                                    "unit variance and ends as pure noise."),
    ]
    for name, other in (("alphas", s.alphas), ("betas", s.betas)):
        b = other[t].view_as(a)
        slips.append((b.sqrt() * x0 + (1 - b).sqrt() * eps,
                      f"you used schedule.{name}[t]; the closed form jumps from x0 to step t with the "
                      "PRODUCT of the alphas, schedule.alpha_bar[t]."))
    for shift, word in ((-1, "t - 1"), (1, "t + 1")):
        b = s.alpha_bar[(t + shift).clamp(0, s.timesteps - 1)].view_as(a)
        slips.append((b.sqrt() * x0 + (1 - b).sqrt() * eps,
                      f"you read alpha_bar at {word}: timesteps run 0..T-1 and step t uses alpha_bar[t]."))
    return slips


@graded("gencourse.diffusion.NoiseSchedule.add_noise")
def add_noise(fn) -> None:
    """Exercise 2.1: xt = sqrt(alpha_bar_t) x0 + sqrt(1 - alpha_bar_t) eps, t one step per example."""
    s = _schedule()
    for shape in ((5, 2), (4, 1, 8, 8)):
        x0, eps = _randn(*shape, seed=1), _randn(*shape, seed=2)
        t = torch.tensor([0, 199, 50, 120, 7][:shape[0]])
        got = expect_tensor("2.1", f"add_noise(schedule, x0, eps, t) for x0 of shape {shape}",
                            call("2.1", fn, s, x0, eps, t), shape)
        want = s.add_noise(x0, eps, t)
        if not close(got, want):
            raise mismatch("2.1", "xt", got, want, f"for x0 of shape {shape} and t = {t.tolist()}",
                           _add_noise_slips(s, x0, eps, t))
    passed("the closed-form forward process q(x_t | x_0) is right, for points and for images")


# ----------------------------------------------------------------------------- 2.2 loss

def _loss_slips(net, s: diffusion.NoiseSchedule, x0, t, eps) -> list:
    xt = s.add_noise(x0, eps, t)
    eps_pred = net(xt, t)
    return [
        (F.mse_loss(eps_pred, x0), "the target is x0; this network predicts the NOISE: compare with eps."),
        (F.mse_loss(eps_pred, xt), "the target is xt; compare the prediction with the noise eps you added."),
        (F.mse_loss(net(x0, t), eps), "the network saw the clean x0; give it the noisy xt = add_noise(x0, eps, t)."),
        (F.mse_loss(eps_pred, eps, reduction="sum"), "you sum the squared errors; average them (F.mse_loss's "
                                                     "default), so the loss does not grow with the batch size."),
        ((eps_pred - eps).abs().mean(), "that is the absolute error (L1); Ho et al.'s loss is the squared error."),
        ((eps_pred - eps).square().sum(1).sqrt().mean(), "you average the error norms; average the SQUARED errors."),
    ]


@graded("gencourse.diffusion.noise_prediction_loss")
def noise_prediction_loss(fn) -> None:
    """Exercise 2.2: mean squared error between eps and denoiser(xt, t)."""
    s = _schedule()
    net = fixed(lambda: diffusion.MLPDenoiser((2,), hidden=16, depth=1, emb_dim=8).eval())
    x0, eps = _randn(32, 2, seed=3), _randn(32, 2, seed=4)
    t = torch.randint(0, 200, (32,), generator=seeded(5))
    got = call("2.2", fn, net, s, x0, t, eps)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise AssertionError(f"Exercise 2.2: the loss should be one number (a 0-dim tensor), got {describe(got)}; "
                             "average over the batch and the dimensions: F.mse_loss(eps_pred, eps).")
    if not got.requires_grad:
        raise AssertionError("Exercise 2.2: the loss carries no gradient: compute it from denoiser(xt, t) "
                             "without torch.no_grad() or .detach(), so fit() can train the network.")
    with torch.no_grad():
        want = diffusion.noise_prediction_loss(net, s, x0, t, eps)
        if not close(got, want):  # the message reports the learner's loss, `got`, not a slip's
            raise mismatch("2.2", "your loss", got, want, slips=_loss_slips(net, s, x0, t, eps),
                           hint="It should be the mean of (eps - denoiser(add_noise(x0, eps, t), t))^2.")
    passed("the noise-prediction loss is right")


# ----------------------------------------------------------------------------- 2.3 DDPM step

def _ddpm_slips(s: diffusion.NoiseSchedule, xt, eps_pred, t: int, noise) -> list:
    beta, alpha, abar, abar_prev = s.betas[t], s.alphas[t], s.alpha_bar[t], s.alpha_bar_prev[t]
    mean = (xt - beta / (1 - abar).sqrt() * eps_pred) / alpha.sqrt()
    if t == 0:
        return [(mean + beta.sqrt() * noise,
                 "at t = 0 you still add noise. The last step returns the mean: adding noise there would only "
                 "blur the final sample.")]
    var = beta * (1 - abar_prev) / (1 - abar)
    return [
        (mean, "you return the mean only; for t > 0 add sigma_t * noise."),
        (mean + beta.sqrt() * noise, "you used sigma_t^2 = beta_t, one of Ho et al.'s two choices; this lab "
                                     "uses the posterior variance beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) "
                                     "(schedule.alpha_bar_prev[t] is alpha_bar_{t-1}), the one DDIM with eta = 1 "
                                     "reproduces."),
        (mean + var * noise, "the noise is scaled by the variance; scale it by the standard deviation sqrt(var)."),
        ((xt - beta / (1 - abar).sqrt() * eps_pred) / abar.sqrt() + var.sqrt() * noise,
         "you divide by sqrt(alpha_bar_t); one reverse step undoes one forward step: divide by sqrt(alpha_t)."),
        ((xt - (1 - abar).sqrt() * eps_pred) / alpha.sqrt() + var.sqrt() * noise,
         "the noise estimate is scaled by sqrt(1 - alpha_bar_t); the step removes beta_t / sqrt(1 - alpha_bar_t) "
         "of it."),
        ((xt + beta / (1 - abar).sqrt() * eps_pred) / alpha.sqrt() + var.sqrt() * noise,
         "you ADD the noise estimate; subtract it."),
    ]


@graded("gencourse.diffusion.NoiseSchedule.step")
def ddpm_step(fn) -> None:
    """Exercise 2.3: one ancestral step x_t -> x_{t-1} with the posterior variance; no noise at t = 0."""
    s = _schedule()
    xt, eps_pred, noise = _randn(6, 2, seed=6), _randn(6, 2, seed=7), _randn(6, 2, seed=8)
    for t in (150, 1, 0):
        got = expect_tensor("2.3", f"ddpm_step(schedule, xt, eps_pred, t={t}, noise)",
                            call("2.3", fn, s, xt, eps_pred, t, noise), (6, 2))
        want = s.step(xt, eps_pred, t, noise=noise)
        if not close(got, want):
            raise mismatch("2.3", "x_{t-1}", got, want, f"at t = {t}", _ddpm_slips(s, xt, eps_pred, t, noise))
    passed("one DDPM reverse step is right, the last step included")


# ----------------------------------------------------------------------------- 2.4 DDIM step

def _ddim_slips(s: diffusion.NoiseSchedule, xt, eps_pred, t: int, t_prev: int, eta: float, noise,
                where: str) -> list:
    abar = s.alpha_bar[t]
    abar_prev = s.alpha_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0_pred = (xt - (1 - abar).sqrt() * eps_pred) / abar.sqrt()
    if t_prev == -1:
        wrapped = s.alpha_bar[-1]
        return [(wrapped.sqrt() * x0_pred + (1 - wrapped).sqrt() * eps_pred,
                 "at t_prev = -1 you read schedule.alpha_bar[-1], which Python takes as the LAST entry (almost "
                 "pure noise). t_prev = -1 means the clean data: use alpha_bar_prev = 1 there, so the step returns "
                 "x0_pred.")]
    slips = []
    if t_prev != t - 1:
        step_back = s.alpha_bar[t - 1]
        slips.append((step_back.sqrt() * x0_pred + (1 - step_back).sqrt() * eps_pred,
                      f"you used alpha_bar[t - 1] {where}; DDIM jumps to t_prev, which may lie many steps back: "
                      "use alpha_bar[t_prev]."))
    if eta > 0:
        sigma = eta * ((1 - abar_prev) / (1 - abar)).sqrt() * (1 - abar / abar_prev).sqrt()
        deterministic = abar_prev.sqrt() * x0_pred + (1 - abar_prev).sqrt() * eps_pred
        slips += [
            (deterministic, f"{where} you add no noise: eta scales sigma = eta * sqrt((1 - abar_prev) / "
                            "(1 - abar_t)) * sqrt(1 - abar_t / abar_prev), and sigma * noise is added."),
            (deterministic + sigma * noise,
             f"{where} the direction term keeps sqrt(1 - abar_prev) of eps_pred; part of that variance now comes "
             "from the fresh noise: use sqrt(1 - abar_prev - sigma^2)."),
        ]
    slips.append((x0_pred, f"{where} you return x0_pred; DDIM moves to t_prev: "
                           "sqrt(abar_prev) x0_pred + sqrt(1 - abar_prev - sigma^2) eps_pred + sigma noise."))
    return slips


@graded("gencourse.diffusion.NoiseSchedule.ddim_step")
def ddim_step(fn) -> None:
    """Exercise 2.4: a DDIM step to any earlier t_prev, eta = 0 and eta > 0, and to t_prev = -1."""
    s = _schedule()
    xt, eps_pred, noise = _randn(6, 2, seed=9), _randn(6, 2, seed=10), _randn(6, 2, seed=11)
    cases = [(150, 100, 0.0), (199, 180, 0.0), (20, -1, 0.0), (150, 100, 1.0), (150, 149, 0.5)]
    for t, t_prev, eta in cases:
        got = expect_tensor("2.4", f"ddim_step(schedule, xt, eps_pred, t={t}, t_prev={t_prev}, eta={eta}, noise)",
                            call("2.4", fn, s, xt, eps_pred, t, t_prev, eta, noise), (6, 2))
        want = s.ddim_step(xt, eps_pred, t, t_prev, eta=eta, noise=noise)
        if not close(got, want):
            where = f"for t = {t}, t_prev = {t_prev}, eta = {eta}"
            raise mismatch("2.4", "x_prev", got, want, where + (" (the last step must return x0_pred)"
                                                              if t_prev == -1 else ""),
                           _ddim_slips(s, xt, eps_pred, t, t_prev, eta, noise, where))
    passed("the DDIM step is right: deterministic, stochastic, and the final jump to clean data")


# ----------------------------------------------------------------------------- 2.5 guidance

@graded("gencourse.diffusion.guided_noise")
def guidance(fn) -> None:
    """Exercise 2.5: eps_uncond + scale * (eps_cond - eps_uncond)."""
    eps_uncond, eps_cond = _randn(4, 1, 8, 8, seed=12), _randn(4, 1, 8, 8, seed=13)
    for scale in (3.0, 0.0, 1.0):
        got = expect_tensor("2.5", f"guided_noise(eps_uncond, eps_cond, scale={scale})",
                            call("2.5", fn, eps_uncond, eps_cond, scale), (4, 1, 8, 8))
        want = diffusion.guided_noise(eps_uncond, eps_cond, scale)
        if not close(got, want):
            raise mismatch("2.5", "the guided noise", got, want, f"for scale = {scale}", [
                (eps_cond + scale * (eps_uncond - eps_cond),
                 "the roles are swapped: start from the UNconditional prediction and move towards the conditional "
                 "one: eps_uncond + scale * (eps_cond - eps_uncond)."),
                ((1 + scale) * eps_cond - scale * eps_uncond,
                 "that is Ho & Salimans' convention w = scale - 1 (w = 0 is the plain conditional model). In this "
                 "lab scale 0 is unconditional and scale 1 conditional: eps_uncond + scale * (eps_cond - eps_uncond)."),
                (eps_cond, f"with scale {scale} you return eps_cond: the scale must count. Scale 0 gives eps_uncond, "
                           "1 gives eps_cond, larger scales go beyond eps_cond."),
            ])
    passed("classifier-free guidance combines the two predictions correctly")
