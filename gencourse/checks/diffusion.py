"""Checks of lab 02, "Diffusion models": forward process, loss, training loss, DDPM step, sampling
loop, DDIM step, guidance, training with label dropout.

Each check calls the learner's function on fixed inputs and compares it with
the reference in gencourse.diffusion (NoiseSchedule.add_noise, noise_prediction_loss,
training_loss, NoiseSchedule.step, ddpm_sample, .ddim_step, guided_noise); before
the generic "values differ" message it tries the usual slips and names the one
it recognises. The training losses draw their own t and noise: their checks
watch what the network is given (a forward hook on model.denoiser) and judge
the draws by their statistics and the loss by the noise that x_t implies.

Steps are the code's indices, 0 .. T-1, which are the book's steps 1 .. T
(book/notation.md); messages that name a step say which numbering they use.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .. import diffusion
from . import call, close, describe, expect_tensor, fixed, graded, mismatch, observe, passed, seeded, use  # noqa: F401  (use: for the lab)


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
                      f"you read alpha_bar at {word}: the code's steps run 0..T-1 (the book's 1..T) and "
                      "the code's step t uses alpha_bar[t], the book's alpha_bar_{t+1}."))
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


# ----------------------------------------------------------------------------- 2.3 the training loss (and 2.8's)

_T, _B, _D = 10, 2048, 4   # steps, batch, numbers per example: enough draws that their statistics are sure
_DROP = 0.3                # the checks' label dropout (the lab trains with 0.2): it must come from the config


def _loss_model(**changes) -> diffusion.DiffusionModel:
    config = diffusion.DiffusionConfig.latent(_D, timesteps=_T, hidden=16, depth=1, emb_dim=8, **changes)
    return fixed(lambda: diffusion.DiffusionModel(config), seed=20)


def _spy(model: diffusion.DiffusionModel) -> list:
    """Every later call of model.denoiser, as [x, t, y] (what was passed; y None when none was)."""
    calls = []

    def hook(module, args, kwargs, out):
        given = {**dict(zip(("x", "t", "y"), args)), **kwargs}
        calls.append([v.detach().clone() if isinstance(v, torch.Tensor) else v
                      for v in (given.get("x"), given.get("t"), given.get("y"))])
    model.denoiser.register_forward_hook(hook, with_kwargs=True)
    return calls


def _run_loss(exercise: str, fn, model, *args):
    """The learner's loss on (model, *args), its random draws under a seed of its own."""
    try:
        return fixed(lambda: call(exercise, fn, model, *args), seed=22)
    except AssertionError as err:
        text = str(err)
        if "out of bounds" in text or f"must lie in [0, {_T - 1}]" in text:
            raise AssertionError(
                f"Exercise {exercise}: a step t fell outside the schedule ({text.split(': ', 1)[-1]}). The code's "
                f"steps are 0 .. T-1 (the book's 1 .. T); torch.randint's upper bound is exclusive.") from None
        if "t must have shape" in text:
            raise AssertionError(f"Exercise {exercise}: {text.split(': ', 1)[-1]}. t holds one step per EXAMPLE, "
                                 "shape (B,): each example of the batch gets its own noise level.") from None
        raise


def _standard(e: torch.Tensor) -> bool:
    """Whether the numbers of e look like draws of N(0, 1) (mean 0, standard deviation 1)."""
    e = e[torch.isfinite(e)]
    return e.numel() > 0.8 * _B * _D and abs(float(e.mean())) < 0.1 and abs(float(e.std()) - 1) < 0.08


def _check_steps(exercise: str, t, schedule: diffusion.NoiseSchedule) -> None:
    """t is one integer step per example, uniform over the code's 0 .. T-1."""
    if not isinstance(t, torch.Tensor) or t.is_floating_point() or t.dtype == torch.bool:
        raise AssertionError(f"Exercise {exercise}: the network got t as {describe(t)}"
                             f"{' of ' + str(t.dtype) if isinstance(t, torch.Tensor) else ''}; give it integer "
                             "steps, one per example (torch.long).")
    if t.numel() == 1 or (tuple(t.shape) == (_B,) and bool((t == t.flatten()[0]).all())):
        raise AssertionError(f"Exercise {exercise}: every example of the batch got the same step t. Draw one t "
                             "per EXAMPLE, shape (B,): each example is then trained at its own noise level, and a "
                             "batch covers many levels at once.")
    if tuple(t.shape) != (_B,):
        raise AssertionError(f"Exercise {exercise}: t should have shape ({_B},), one step per example, got "
                             f"{tuple(t.shape)}.")
    T = schedule.timesteps
    if int(t.min()) < 0 or int(t.max()) > T - 1:
        raise AssertionError(f"Exercise {exercise}: t takes values from {int(t.min())} to {int(t.max())}; the "
                             f"code's steps are 0 .. T-1 = {T - 1} (the book's 1 .. T), and torch.randint's upper "
                             "bound is exclusive.")
    counts = torch.bincount(t.flatten(), minlength=T)
    if counts[0] == 0:
        raise AssertionError(f"Exercise {exercise}: t never takes the value 0 in {_B} draws, so the code's step 0 "
                             "(the book's t = 1, the last step of sampling) is never trained. The code's steps are "
                             "0 .. T-1.")
    if counts[-1] == 0:
        raise AssertionError(f"Exercise {exercise}: t never reaches T-1 = {T - 1} in {_B} draws, so the noisiest "
                             "step (the book's t = T, the first of sampling) is never trained. torch.randint's "
                             "upper bound is exclusive.")
    if int(counts.max()) > 3 * _B / T:
        raise AssertionError(f"Exercise {exercise}: t is far from uniform over 0 .. T-1 (counts {counts.tolist()} "
                             f"in {_B} draws); draw every step with the same chance.")


def _noise_slips(schedule: diffusion.NoiseSchedule, x0: torch.Tensor, x: torch.Tensor, t: torch.Tensor) -> list:
    """(noise that x implies under a wrong x_t formula, message): the formula is the slip when that noise is
    standard normal."""
    def coef(v):
        return v.double()[t].view(-1, 1)

    abar, alpha, abar_prev = coef(schedule.alpha_bar), coef(schedule.alphas), coef(schedule.alpha_bar_prev)
    candidates = [
        (abar, 1 - abar, "x_t scales x0 and eps by alpha_bar_t and 1 - alpha_bar_t; these are VARIANCES: take "
                         "their square roots."),
        (abar.sqrt(), 1 - abar, "the noise in x_t is scaled by 1 - alpha_bar_t; use sqrt(1 - alpha_bar_t)."),
        (torch.ones_like(abar), (1 - abar).sqrt(), "x0 is not shrunk in x_t: multiply it by sqrt(alpha_bar_t)."),
        (alpha.sqrt(), (1 - alpha).sqrt(), "x_t is built with schedule.alphas[t]; the jump from x0 to step t "
                                           "takes their PRODUCT, schedule.alpha_bar[t]."),
        (abar_prev.sqrt(), (1 - abar_prev).sqrt(), "x_t is built with schedule.alpha_bar_prev[t], the book's "
                                                   "alpha_bar_{t} for the code's t + 1; the code's step t uses "
                                                   "schedule.alpha_bar[t]."),
    ]
    x0, x = x0.double(), x.double()
    return [((x - a * x0) / b, message) for a, b, message in candidates]


def _check_noisy_input(exercise: str, schedule: diffusion.NoiseSchedule, x0: torch.Tensor, x, t) -> torch.Tensor:
    """The noise eps that the network's input x implies, once x is checked to be x_t = add_noise(x0, eps, t)."""
    if not isinstance(x, torch.Tensor) or tuple(x.shape) != tuple(x0.shape):
        raise AssertionError(f"Exercise {exercise}: the network got x_t as {describe(x)}; it should have x0's "
                             f"shape {tuple(x0.shape)}.")
    if close(x, x0):
        raise AssertionError(f"Exercise {exercise}: the network saw the clean x0; give it the noisy x_t, built "
                             "from x0, the noise and t as in Exercise 2.1.")
    abar = schedule.alpha_bar.double()[t].view(-1, 1)
    eps = (x.double() - abar.sqrt() * x0.double()) / (1 - abar).sqrt()
    if _standard(eps):
        if (eps - eps[:1]).abs().max() < 1e-4:
            raise AssertionError(f"Exercise {exercise}: every example got the same noise; draw it with x0's "
                                 "shape, one independent number for every number of the batch.")
        correlation = torch.corrcoef(eps.T.float())
        if (correlation - torch.eye(_D)).abs().max() > 0.3:
            raise AssertionError(f"Exercise {exercise}: the numbers of one example share their noise; draw it "
                                 "with x0's shape, one independent number for every number of the batch.")
        return eps
    for implied, message in _noise_slips(schedule, x0, x, t):
        if _standard(implied):
            raise AssertionError(f"Exercise {exercise}: {message}")
    if abs(float(eps.mean()) - 0.5) < 0.1 and abs(float(eps.std()) - 12 ** -0.5) < 0.05:
        raise AssertionError(f"Exercise {exercise}: the noise is uniform on [0, 1) (torch.rand); the forward "
                             "process adds standard normal noise, N(0, I).")
    raise AssertionError(f"Exercise {exercise}: the x_t your network saw is not sqrt(alpha_bar_t) x0 + "
                         "sqrt(1 - alpha_bar_t) eps with eps standard normal noise (the noise it implies has mean "
                         f"{float(eps.mean()):.3g} and standard deviation {float(eps.std()):.3g}, expected 0 and "
                         "1). Build x_t as in Exercise 2.1, with alpha_bar at each example's own t.")


def _check_loss_value(exercise: str, got, net, x0, x, t, y, eps) -> None:
    """The returned loss is the mean squared error between the implied noise and the network's estimate."""
    with torch.no_grad():
        pred = (net(x, t) if y is None else net(x, t, y)).double()
        want = F.mse_loss(pred, eps)
        if not close(got, want):
            raise mismatch(exercise, "your loss", got, want, slips=[
                (F.mse_loss(pred, x0.double()), "the loss compares the network's estimate with x0; the network "
                                                "predicts the NOISE: compare with the eps you drew."),
                (F.mse_loss(pred, x.double()), "the loss compares the network's estimate with x_t; compare it "
                                               "with the noise eps you drew."),
                (F.mse_loss(pred, eps, reduction="sum"), "you sum the squared errors; average them, so that the "
                                                         "loss does not grow with the batch size."),
                ((pred - eps).abs().mean(), "that is the absolute error (L1); Ho et al.'s loss is the squared "
                                            "error."),
            ], hint="It should be the mean of (eps - model.denoiser(x_t, t))^2 over the batch and the numbers.")


def _scalar_loss(exercise: str, got) -> None:
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise AssertionError(f"Exercise {exercise}: the loss should be one number (a 0-dim tensor), got "
                             f"{describe(got)}; average over the batch and the numbers of each example.")
    if not got.requires_grad:
        raise AssertionError(f"Exercise {exercise}: the loss carries no gradient: compute it from the network's "
                             "output without torch.no_grad() or .detach(), so that fit() can train the network.")


def _one_pass(exercise: str, seen: list) -> list:
    if not seen:
        raise AssertionError(f"Exercise {exercise}: your function never ran the network: ask model.denoiser for "
                             "its estimate of the noise, given x_t and t.")
    if len(seen) > 1:
        raise AssertionError(f"Exercise {exercise}: the network ran {len(seen)} times; one pass over the whole "
                             "batch of x_t gives every estimate.")
    return seen[0]


@graded("gencourse.diffusion.training_loss", "gencourse.diffusion.DiffusionModel.loss")
def training_loss(fn) -> None:
    """Exercise 2.3: Algorithm 1's loss: t uniform per example, eps ~ N(0, I), x_t, the squared error."""
    model = _loss_model()
    calls = _spy(model)
    x0 = 2 + 0.5 * _randn(_B, _D, seed=21)   # far from the noise, so that a wrong x_t formula shows
    got = _run_loss("2.3", fn, model, x0)
    _scalar_loss("2.3", got)
    x, t, y = _one_pass("2.3", observe("what your function gave the network", lambda: calls))
    _check_steps("2.3", t, model.schedule)
    eps = _check_noisy_input("2.3", model.schedule, x0, x, t)
    if y is not None:
        raise AssertionError("Exercise 2.3: this model has no labels: call the network with x_t and t only.")
    _check_loss_value("2.3", got, _loss_model().denoiser, x0, x, t, None, eps)
    passed("the training loss is Algorithm 1's: a step per example, fresh noise, the squared error on the noise")


# ----------------------------------------------------------------------------- 2.4 DDPM step

def _ddpm_slips(s: diffusion.NoiseSchedule, xt, eps_pred, t: int, noise) -> list:
    beta, alpha, abar, abar_prev = s.betas[t], s.alphas[t], s.alpha_bar[t], s.alpha_bar_prev[t]
    mean = (xt - beta / (1 - abar).sqrt() * eps_pred) / alpha.sqrt()
    if t == 0:
        return [(mean + beta.sqrt() * noise,
                 "at the code's t = 0 (the book's t = 1) you still add noise. The last step returns the mean: "
                 "adding noise there would only blur the final sample.")]
    var = beta * (1 - abar_prev) / (1 - abar)
    return [
        (mean, "you return the mean only; for the code's t > 0 (the book's t > 1) add sigma_t * noise."),
        (mean + beta.sqrt() * noise, "you used sigma_t^2 = beta_t, one of Ho et al.'s two choices; this lab "
                                     "uses the posterior variance beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t) "
                                     "(schedule.alpha_bar_prev[t] is alpha_bar_{t-1} in the same numbering), the "
                                     "one DDIM with eta = 1 reproduces."),
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
    """Exercise 2.4: one ancestral step x_t -> x_{t-1} with the posterior variance; no noise at the code's
    t = 0 (the book's t = 1)."""
    s = _schedule()
    xt, eps_pred, noise = _randn(6, 2, seed=6), _randn(6, 2, seed=7), _randn(6, 2, seed=8)
    for t in (150, 1, 0):
        got = expect_tensor("2.4", f"ddpm_step(schedule, xt, eps_pred, t={t}, noise)",
                            call("2.4", fn, s, xt, eps_pred, t, noise), (6, 2))
        want = s.step(xt, eps_pred, t, noise=noise)
        if not close(got, want):
            raise mismatch("2.4", "x_{t-1}", got, want, f"at the code's t = {t} (the book's t = {t + 1})",
                           _ddpm_slips(s, xt, eps_pred, t, noise))
    passed("one DDPM reverse step is right, the last step included")


# ----------------------------------------------------------------------------- 2.5 the sampling loop

_LOOP_T, _LOOP_N = 8, 5


def _loop_model() -> diffusion.DiffusionModel:
    """A tiny image model as the lab's digits: data rescaled to [-1, 1], the implied x0 clipped."""
    config = diffusion.DiffusionConfig.fast(shape=(1, 2, 2), timesteps=_LOOP_T, hidden=16, depth=1, emb_dim=8)
    return fixed(lambda: diffusion.DiffusionModel(config).eval(), seed=30)


def _loop(model: diffusion.DiffusionModel, n: int, generator: torch.Generator, *, start="normal", clip=True,
          sigma="posterior", last_noise=False, to_data=True) -> torch.Tensor:
    """The DDPM loop, or one of its slips: what a learner's loop with that slip returns."""
    s = model.schedule
    shape = (n, *model.shape)
    x = torch.rand(shape, generator=generator) if start == "uniform" else model.noise(n, generator)
    for t in reversed(range(s.timesteps)):
        if clip:
            eps_pred = model.predict_noise(x, t)
        else:
            eps_pred = model.denoiser(x, torch.full((n,), t, dtype=torch.long))
        mean = (x - s.betas[t] / (1 - s.alpha_bar[t]).sqrt() * eps_pred) / s.alphas[t].sqrt()
        if sigma == "beta":
            sd = s.betas[t].sqrt()
        else:
            sd = (s.betas[t] * (1 - s.alpha_bar_prev[t]) / (1 - s.alpha_bar[t])).sqrt()
        if t == 0 and last_noise:
            sd = s.betas[0].sqrt()
        x = mean + sd * diffusion.draw_normal(shape, generator) if t > 0 or last_noise else mean
    return model.to_data(x) if to_data else x


_LOOP_SLIPS = [
    (dict(to_data=False), "you return the samples in the model's own space ([-1, 1] for images); map them "
                          "back to the data's range with model.to_data, as the package's sampler does."),
    (dict(clip=False), "you call the network directly; model.predict_noise(x, t) also keeps the clean x0 that "
                       "the estimate implies within the data's range (config.clip), as the package's sampler does."),
    (dict(last_noise=True), "at the last step, the code's t = 0 (the book's t = 1), you add noise: that step "
                            "returns the mean, the clean sample; noise there would only blur it."),
    (dict(sigma="beta", last_noise=True), "at the last step, the code's t = 0 (the book's t = 1), you add noise: "
                                          "that step returns the mean. And you use sigma_t^2 = beta_t; this lab "
                                          "uses the posterior variance, as schedule.step does."),
    (dict(sigma="beta"), "you use sigma_t^2 = beta_t, one of Ho et al.'s two choices; this lab uses the "
                         "posterior variance beta_t (1 - alpha_bar_{t-1}) / (1 - alpha_bar_t), as schedule.step "
                         "does."),
    (dict(start="uniform"), "x_T is drawn uniform on [0, 1) (torch.rand); the loop starts from pure noise, "
                            "x_T ~ N(0, I): model.noise(n, generator)."),
]


def _spy_steps(model: diffusion.DiffusionModel) -> list:
    """The step tensor of every later network pass."""
    steps = []
    model.denoiser.register_forward_hook(
        lambda module, args, kwargs, out: steps.append((list(args) + [kwargs.get("t")])[1]), with_kwargs=True)
    return steps


def _check_passes(steps: list) -> None:
    """One network pass per step, at t = T-1, ..., 0, each for the whole batch."""
    T = _LOOP_T
    per_pass = []
    for t in steps:
        values = t.flatten().tolist() if isinstance(t, torch.Tensor) else [t]
        if len(set(values)) != 1:
            raise AssertionError(f"Exercise 2.5: one network pass got the steps {values}; every example of the "
                                 "batch is at the same step of the loop.")
        per_pass.append(int(values[0]))
    want = list(range(T - 1, -1, -1))
    if per_pass == want:
        return
    if per_pass == list(range(T)):
        raise AssertionError("Exercise 2.5: your loop runs forward in t, from 0 up to T-1; sampling undoes the "
                             "noise, from the noisiest step down: the code's t = T-1, ..., 0 (the book's T, ..., 1).")
    if per_pass == want[:-1]:
        raise AssertionError("Exercise 2.5: your loop stops before the code's t = 0 (the book's t = 1); that "
                             "last step is the one that returns the clean sample. range's end is exclusive.")
    if per_pass == want[1:]:
        raise AssertionError(f"Exercise 2.5: your loop starts at the code's t = {T - 2}; it starts at the "
                             f"noisiest step, T-1 = {T - 1} (the book's t = T).")
    raise AssertionError(f"Exercise 2.5: the network ran {len(per_pass)} times, at the steps {per_pass[:12]}"
                         f"{' ...' if len(per_pass) > 12 else ''}; for T = {T} the loop makes {T} passes, one "
                         f"per step, at the code's t = {T - 1}, {T - 2}, ..., 0 (the book's T, ..., 1).")


@graded("gencourse.diffusion.ddpm_sample", "gencourse.diffusion.DiffusionModel.sample",
        "gencourse.diffusion.reverse_process", "gencourse.diffusion.trajectory")
def sampling_loop(fn) -> None:
    """Exercise 2.5: x_T ~ N(0, I), then one network pass and one DDPM step per t, T-1 down to 0; data space."""
    model = _loop_model()
    steps = _spy_steps(model)
    shape = (_LOOP_N, *model.shape)
    got = fixed(lambda: call("2.5", fn, model, _LOOP_N, seeded(31)), seed=32)
    got = expect_tensor("2.5", "ddpm_sample(model, n, generator)", got, shape)
    _check_passes(observe("the steps your loop gave the network", lambda: steps))
    reference = _loop_model()
    want = diffusion.ddpm_sample(reference, _LOOP_N, generator=seeded(31))
    if close(got, want):
        passed("the DDPM sampling loop is right: from pure noise, one network pass and one step per t, down to "
               "the data")
        return
    again = fixed(lambda: call("2.5", fn, _loop_model(), _LOOP_N, seeded(31)), seed=33)
    if not close(again, got):
        raise AssertionError("Exercise 2.5: your samples change with the global random state; draw x_T and the "
                             "fresh noise of every step from `generator`, so that a seed gives the same samples.")
    with torch.no_grad():
        slips = [(_loop(reference, _LOOP_N, seeded(31), **kw), message) for kw, message in _LOOP_SLIPS]
    raise mismatch("2.5", "the samples", got, want, f"for T = {_LOOP_T} and n = {_LOOP_N}", slips,
                   hint="Start from model.noise(n, generator); at each step ask model.predict_noise for the "
                        "noise, take one step with schedule.step (noise drawn from generator), and return "
                        "model.to_data of the last x.")


# ----------------------------------------------------------------------------- 2.6 DDIM step

def _ddim_slips(s: diffusion.NoiseSchedule, xt, eps_pred, t: int, t_prev: int, eta: float, noise,
                where: str) -> list:
    abar = s.alpha_bar[t]
    abar_prev = s.alpha_bar[t_prev] if t_prev >= 0 else torch.tensor(1.0)
    x0_pred = (xt - (1 - abar).sqrt() * eps_pred) / abar.sqrt()
    if t_prev == -1:
        wrapped = s.alpha_bar[-1]
        return [(wrapped.sqrt() * x0_pred + (1 - wrapped).sqrt() * eps_pred,
                 "at t_prev = -1 you read schedule.alpha_bar[-1], which Python takes as the LAST entry (almost "
                 "pure noise). The code's t_prev = -1 is the book's step 0, the clean data, where alpha_bar_0 = 1: "
                 "use alpha_bar_prev = 1 there, so the step returns x0_pred.")]
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
    """Exercise 2.6: a DDIM step to any earlier t_prev, eta = 0 and eta > 0, and to t_prev = -1 (the data)."""
    s = _schedule()
    xt, eps_pred, noise = _randn(6, 2, seed=9), _randn(6, 2, seed=10), _randn(6, 2, seed=11)
    cases = [(150, 100, 0.0), (199, 180, 0.0), (20, -1, 0.0), (150, 100, 1.0), (150, 149, 0.5)]
    for t, t_prev, eta in cases:
        got = expect_tensor("2.6", f"ddim_step(schedule, xt, eps_pred, t={t}, t_prev={t_prev}, eta={eta}, noise)",
                            call("2.6", fn, s, xt, eps_pred, t, t_prev, eta, noise), (6, 2))
        want = s.ddim_step(xt, eps_pred, t, t_prev, eta=eta, noise=noise)
        if not close(got, want):
            where = f"for t = {t}, t_prev = {t_prev}, eta = {eta}"
            raise mismatch("2.6", "x_prev", got, want, where + (" (the last step must return x0_pred)"
                                                              if t_prev == -1 else ""),
                           _ddim_slips(s, xt, eps_pred, t, t_prev, eta, noise, where))
    passed("the DDIM step is right: deterministic, stochastic, and the final jump to clean data")


# ----------------------------------------------------------------------------- 2.7 guidance

@graded("gencourse.diffusion.guided_noise")
def guidance(fn) -> None:
    """Exercise 2.7: eps_uncond + scale * (eps_cond - eps_uncond)."""
    eps_uncond, eps_cond = _randn(4, 1, 8, 8, seed=12), _randn(4, 1, 8, 8, seed=13)
    for scale in (3.0, 0.0, 1.0):
        got = expect_tensor("2.7", f"guided_noise(eps_uncond, eps_cond, scale={scale})",
                            call("2.7", fn, eps_uncond, eps_cond, scale), (4, 1, 8, 8))
        want = diffusion.guided_noise(eps_uncond, eps_cond, scale)
        if not close(got, want):
            raise mismatch("2.7", "the guided noise", got, want, f"for scale = {scale}", [
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


# ----------------------------------------------------------------------------- 2.8 training with label dropout

@graded("gencourse.diffusion.training_loss", "gencourse.diffusion.DiffusionModel.loss",
        "gencourse.nn.LabelEmbedding.drop")
def label_dropout_loss(fn) -> None:
    """Exercise 2.8: labels replaced by "no label" with chance label_dropout, one coin per example; then 2.3."""
    changes = dict(num_classes=10, label_dropout=_DROP)
    model = _loss_model(**changes)
    calls = _spy(model)
    x0 = 2 + 0.5 * _randn(_B, _D, seed=23)
    y = torch.randint(0, 10, (_B,), generator=seeded(24))
    got = _run_loss("2.8", fn, model, x0, y.clone())
    _scalar_loss("2.8", got)
    x, t, y_seen = _one_pass("2.8", observe("what your function gave the network", lambda: calls))
    _check_labels("2.8", y, y_seen, null=10, p=_DROP)
    _check_steps("2.8", t, model.schedule)
    eps = _check_noisy_input("2.8", model.schedule, x0, x, t)
    _check_loss_value("2.8", got, _loss_model(**changes).denoiser, x0, x, t, y_seen, eps)
    passed("labels are dropped one example at a time, at the config's rate, and the loss is Algorithm 1's")


def _check_labels(exercise: str, y: torch.Tensor, y_seen, null: int, p: float) -> None:
    """y_seen is y with about a share p of its labels, chosen example by example, replaced by `null`."""
    if y_seen is None:
        raise AssertionError(f"Exercise {exercise}: the network got no labels: give it the labels, some of them "
                             "replaced by \"no label\", as its third argument.")
    if not isinstance(y_seen, torch.Tensor) or y_seen.is_floating_point() or tuple(y_seen.shape) != tuple(y.shape):
        raise AssertionError(f"Exercise {exercise}: the labels the network got should be integers of shape "
                             f"{tuple(y.shape)}, got {describe(y_seen)}.")
    dropped = y_seen == null
    if not ((y_seen == y) | dropped).all():
        if not dropped.any() and bool(((y_seen == 0) & (y != 0)).any()):
            raise AssertionError(f"Exercise {exercise}: dropped labels became 0, which is the digit 0. \"No "
                                 f"label\" has its own index, model.num_classes ({null} here), the label "
                                 "embedding's extra row.")
        raise AssertionError(f"Exercise {exercise}: labels changed into other labels; a label is either kept as "
                             f"it is or replaced by \"no label\", index model.num_classes ({null} here).")
    share = float(dropped.double().mean())
    if share == 0:
        raise AssertionError(f"Exercise {exercise}: no label was replaced by \"no label\" (index "
                             "model.num_classes). Toss a coin for each example, one per example and not one for "
                             "the batch, and drop its label with chance model.config.label_dropout.")
    if share == 1:
        raise AssertionError(f"Exercise {exercise}: every label of the batch was dropped at once. Toss one coin "
                             "per EXAMPLE, not one for the batch: the network then sees labelled and unlabelled "
                             "examples in every batch.")
    if abs(share - p) > 0.06:
        if abs(share - (1 - p)) < 0.06:
            raise AssertionError(f"Exercise {exercise}: {share:.0%} of the labels were dropped with "
                                 f"label_dropout = {p}: you KEEP each label with chance label_dropout; drop it with "
                                 "that chance.")
        raise AssertionError(f"Exercise {exercise}: {share:.0%} of the labels were dropped; with "
                             f"model.config.label_dropout = {p} about {p:.0%} should be (read the rate from the "
                             "model's config).")
