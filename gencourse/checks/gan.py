"""Checks of lab 03, "Generative adversarial networks": both players' losses, one round of the game,
mode coverage, and the R1 penalty.

Each check calls the learner's function on fixed inputs and compares it with the reference
(gencourse.gan.discriminator_loss, generator_loss, adversarial_step, r1_penalty and
gencourse.evaluate.mode_coverage); before the generic "values differ" message it tries the usual
slips and names the one it recognises. `use` (from gencourse.checks) is re-exported here: the lab
trains with the learner's function only once it passes its check.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

from .. import data, evaluate, gan, train
from . import call, close, describe, fixed, gradients, graded, mismatch, observe, passed, recognise, seeded, use  # noqa: F401  (use: for the lab)


def _randn(*shape, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=seeded(seed)) + shift


def _number(x) -> str:
    return f"{float(x):.5g}"


def _scalar_loss(exercise: str, got, inputs: str) -> torch.Tensor:
    """Assert that `got` is one number that carries gradient (the inputs require it)."""
    if not isinstance(got, torch.Tensor):
        raise AssertionError(f"Exercise {exercise}: the loss should be a torch.Tensor that carries gradient, got "
                             f"{type(got).__name__}; compute it with torch operations and do not call .item().")
    if got.dim() != 0:
        raise AssertionError(f"Exercise {exercise}: the loss should be one number (a 0-dim tensor), got shape "
                             f"{tuple(got.shape)}: average each term over its batch.")
    if not got.is_floating_point():
        raise AssertionError(f"Exercise {exercise}: the loss should be a float, got {got.dtype}")
    if not got.requires_grad:
        raise AssertionError(f"Exercise {exercise}: the loss carries no gradient: compute it from {inputs} without "
                             "torch.no_grad(), .detach() or .item(), or training cannot follow it.")
    return got


def _gradients(exercise: str, got: torch.Tensor, want: torch.Tensor, inputs: dict) -> None:
    """The learner's loss must send to each input the gradient the reference sends."""
    tensors = list(inputs.values())
    mine = gradients("the gradient of the loss", got, tensors)
    ref = torch.autograd.grad(want, tensors, allow_unused=True, retain_graph=True)
    for (name, _), g, r in zip(inputs.items(), mine, ref):
        if g is None or (not g.any() and r.any()):
            raise AssertionError(f"Exercise {exercise}: your loss has the right value, but no gradient reaches "
                                 f"{name}: a .detach() (or a number taken out with .item()) cuts it from the graph. "
                                 "The loss must train the network that made those logits.")
        if not close(g, r):
            raise AssertionError(f"Exercise {exercise}: your loss has the right value, but its gradient with respect "
                                 f"to {name} differs from the reference's; write it with differentiable torch "
                                 "operations only.")


# Logits of a discriminator that is very sure: log(sigmoid(x)) and log(1 - sigmoid(x)) give -inf here in float32.
_SURE_REAL = torch.tensor([-100.0, 30.0, -30.0, 2.0])
_SURE_FAKE = torch.tensor([100.0, -30.0, 30.0, -2.0])

_STABLE = ("When the discriminator is very sure, sigmoid(x) rounds to exactly 0 or 1 in float32 and its log "
           "becomes -inf (exp(x) may overflow, too). Work with the logits directly: -log sigmoid(x) = softplus(-x) "
           "and -log(1 - sigmoid(x)) = softplus(x), and F.softplus (or F.binary_cross_entropy_with_logits) "
           "computes these without ever forming sigmoid(x).")


def _stable(exercise: str, fn, args: dict, reference) -> None:
    """The learner's loss on very large logits: finite, right, with finite gradients."""
    inputs = {name: value.clone().requires_grad_() for name, value in args.items()}
    got = call(exercise, fn, *inputs.values())
    want = reference(*inputs.values())
    shown = ", ".join(f"{name} {value.tolist()}" for name, value in args.items())
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise AssertionError(f"Exercise {exercise}: for {shown} the loss should be one number, got {describe(got)}.")
    if not torch.isfinite(got) or not close(got, want):
        clipped = "" if not torch.isfinite(got) else (" (A finite but wrong value like this one usually comes from "
                                                      "F.binary_cross_entropy on probabilities, which clips each "
                                                      "log at -100 to hide the -inf.)")
        raise AssertionError(f"Exercise {exercise}: your loss is right for moderate logits, but for {shown} it is "
                             f"{_number(got.detach())}, expected {_number(want.detach())}. {_STABLE}{clipped}")
    if got.requires_grad:
        grads = gradients("the gradient of the loss on large logits", got, list(inputs.values()))
        if any(g is not None and not torch.isfinite(g).all() for g in grads):
            raise AssertionError(f"Exercise {exercise}: your loss is right for {shown}, but its gradient there holds "
                                 f"NaN or inf. {_STABLE}")


# ----------------------------------------------------------------------------- 3.1 discriminator loss

def _discriminator_slips(real: torch.Tensor, fake: torch.Tensor) -> list:
    on_real, on_fake = F.softplus(-real), F.softplus(fake)
    want = on_real.mean() + on_fake.mean()
    return [
        (F.softplus(real).mean() + F.softplus(-fake).mean(),
         "real and fake are swapped: your discriminator is rewarded for calling the data fake and the fakes real. "
         "Real data carries the label 1 (the term -log D(x)), fakes the label 0 (the term -log(1 - D(G(z))))."),
        (-want, "the sign is flipped: the discriminator MAXIMISES log D(x) + log(1 - D(G(z))), so the loss it "
                "minimises is the negative of that, a binary cross-entropy, which is never negative."),
        (on_real.sum() + on_fake.sum(), "you sum over the batch; average each term over its batch, so that the "
                                        "loss (and the step size) does not grow with the batch size."),
        (on_real.mean(), "only the term on real data is there: the discriminator must also learn to reject the "
                         "fakes, the term -log(1 - D(G(z)))."),
        (on_fake.mean(), "only the term on fakes is there: the discriminator must also learn to accept real data, "
                         "the term -log D(x)."),
        (want / 2, "you average the two terms (for instance one binary cross-entropy over real and fakes put "
                   "together); the loss is their SUM: the mean over the real batch plus the mean over the fakes."),
        (F.relu(1 - real).mean() + F.relu(1 + fake).mean(),
         "that is the hinge loss (relu(1 - real) + relu(1 + fake)); this exercise asks for the binary "
         "cross-entropy of Goodfellow et al.: -log D(x) - log(1 - D(G(z))) with D = sigmoid(logit)."),
        (F.softplus(-real).mean() + F.softplus(-fake).mean(),
         "both terms label their input as real: the fakes must be labelled 0, i.e. -log(1 - D(G(z))), "
         "not -log D(G(z))."),
        (F.softplus(-torch.sigmoid(real)).mean() + F.softplus(torch.sigmoid(fake)).mean(),
         "you apply the sigmoid and then a loss that expects logits, so the sigmoid is applied twice. The "
         "inputs are already logits: use them as they are."),
    ]


@graded("gencourse.gan.discriminator_loss")
def discriminator_loss(fn) -> None:
    """Exercise 3.1: softplus(-real).mean() + softplus(fake).mean(), from logits, stable for large logits."""
    real = _randn(16, seed=1, scale=2.0, shift=1.0).requires_grad_()
    fake = _randn(16, seed=2, scale=2.0, shift=-0.5).requires_grad_()
    got = _scalar_loss("3.1", call("3.1", fn, real, fake), "real_logits and fake_logits")
    want = gan.discriminator_loss(real, fake, "nonsaturating")
    if not close(got, want):
        with torch.no_grad():
            raise mismatch("3.1", "your loss", got, want, "for the test logits", _discriminator_slips(real, fake),
                           hint="It should be -mean log D(x) - mean log(1 - D(G(z))) with D = sigmoid(logit).")
    _gradients("3.1", got, want, {"the real logits": real, "the fake logits": fake})
    _stable("3.1", fn, {"real_logits": _SURE_REAL, "fake_logits": _SURE_FAKE},
            lambda r, f: gan.discriminator_loss(r, f, "nonsaturating"))
    passed("the discriminator's loss is right, and stable when the discriminator is very sure")


# ----------------------------------------------------------------------------- 3.2 generator loss

def _generator_slips(fake: torch.Tensor) -> list:
    want = F.softplus(-fake).mean()
    return [
        (-F.softplus(fake).mean(),
         "that is the minimax (saturating) loss, log(1 - D(G(z))), the game's own value. Its gradient with "
         "respect to a logit is -sigmoid(logit), which vanishes when the discriminator confidently rejects the "
         "fakes (very negative logits), that is early in training, when the generator needs a signal most. "
         "The non-saturating loss instead makes the generator MAXIMISE log D(G(z)): same fixed point, and a "
         "gradient close to -1 exactly there."),
        (-want, "the sign is flipped: the generator wants the discriminator to call its fakes real, so it "
                "MAXIMISES log D(G(z)); the loss it minimises is -log D(G(z)), which is never negative."),
        (F.softplus(-fake).sum(), "you sum over the batch; average over it, so that the loss does not grow with "
                                  "the batch size."),
        (F.softplus(fake).mean(), "that is the discriminator's loss on the fakes, -log(1 - D(G(z))): minimising it "
                                  "would help the discriminator. The generator wants its fakes labelled REAL."),
        (-fake.mean(), "that is the hinge generator loss (-logit); this exercise asks for the non-saturating "
                       "loss -log D(G(z)) with D = sigmoid(logit)."),
    ]


@graded("gencourse.gan.generator_loss")
def generator_loss(fn) -> None:
    """Exercise 3.2: the non-saturating loss softplus(-fake).mean(), stable for large logits."""
    fake = _randn(16, seed=3, scale=2.0, shift=-1.0).requires_grad_()
    got = _scalar_loss("3.2", call("3.2", fn, fake), "fake_logits")
    want = gan.generator_loss(fake, "nonsaturating")
    if not close(got, want):
        with torch.no_grad():
            raise mismatch("3.2", "your loss", got, want, "for the test logits", _generator_slips(fake),
                           hint="It should be -mean log D(G(z)) with D = sigmoid(logit).")
    _gradients("3.2", got, want, {"the fake logits": fake})
    _stable("3.2", fn, {"fake_logits": _SURE_REAL}, lambda f: gan.generator_loss(f, "nonsaturating"))
    passed("the non-saturating generator loss is right, and stable when the discriminator is very sure")


# ----------------------------------------------------------------------------- 3.3 one round of the game

_LR, _BATCH, _ROUNDS = 0.05, 16, 2   # a large step, so that each slip moves the weights visibly; the second
                                     # round shows gradients left over from the first


def _tiny_gan() -> gan.GAN:
    return fixed(lambda: gan.GAN(gan.GANConfig.toy(hidden=16, depth=1, r1=0.0)), seed=30)


def _players(base: gan.GAN) -> tuple:
    model = copy.deepcopy(base)
    opt_d, opt_g = model.configure_optimizers(train.TrainConfig(lr=_LR))
    return model, opt_d, opt_g


def _rounds(latent_dim: int) -> list[tuple]:
    g = seeded(31)
    out = []
    for _ in range(_ROUNDS):
        k = torch.randint(0, 8, (_BATCH,), generator=g)
        real = data.ring_modes()[k] + data.RING_STD * torch.randn(_BATCH, 2, generator=g)
        out.append((real, torch.randn(_BATCH, latent_dim, generator=g), torch.randn(_BATCH, latent_dim, generator=g)))
    return out


def _variant(*, g_first=False, d_latent="z_d", g_latent="z_g", zero_d=True, zero_g=True, zero_after=False,
             swap=False):
    """One round played with a slip: what a learner's function with that slip computes."""
    def play(model, real, z_d, z_g, opt_d, opt_g):
        z = {"z_d": z_d, "z_g": z_g}
        d_opt, g_opt = (opt_g, opt_d) if swap else (opt_d, opt_g)

        def update(loss, opt, zero):
            if zero and not zero_after:
                opt.zero_grad()
            loss.backward()
            opt.step()
            if zero and zero_after:
                opt.zero_grad()

        def d_step():
            loss = model.d_loss(real, model.generate(z[d_latent]).detach())["d_loss"]
            update(loss, d_opt, zero_d)
            return loss

        def g_step():
            loss = model.g_loss(model.generate(z[g_latent]))
            update(loss, g_opt, zero_g)
            return loss

        if g_first:
            g_loss = g_step()
            d_loss = d_step()
        else:
            d_loss = d_step()
            g_loss = g_step()
        return {"loss": d_loss, "g_loss": g_loss}
    return play


_STEP_SLIPS = [
    (_variant(g_first=True),
     "the generator moves first. One round is the discriminator's step, then the generator's, judged by the "
     "UPDATED discriminator (Goodfellow et al.'s Algorithm 1)."),
    (_variant(g_latent="z_d"),
     "the generator's step reuses the discriminator's latents z_d (or its fakes); it gets fresh fakes G(z_g) from "
     "its own latents, made after the discriminator's step."),
    (_variant(d_latent="z_g"),
     "the discriminator's step uses the generator's latents z_g; it should judge fakes made from z_d, and the "
     "generator fresh ones made from z_g."),
    (_variant(zero_d=False, zero_g=False),
     "gradients pile up from round to round: zero each optimiser's gradients before its backward pass, since "
     ".backward() ADDS to whatever .grad already holds."),
    (_variant(zero_d=False),
     "the discriminator's gradients are never zeroed, so they pile up from round to round (the generator's "
     "backward also runs through the discriminator and leaves gradients in it). Zero them before its backward."),
    (_variant(zero_g=False),
     "the generator's gradients are never zeroed, so they pile up from round to round: zero them before its "
     "backward pass, since .backward() ADDS to whatever .grad holds."),
    (_variant(zero_after=True),
     "you zero the gradients after each step; but the generator's backward runs through the discriminator and "
     "leaves gradients in it, which your next discriminator step then adds to its own. Zero each optimiser's "
     "gradients right BEFORE its backward pass."),
    (_variant(swap=True),
     "the optimisers are swapped: opt_d must update the discriminator with the discriminator's loss, opt_g the "
     "generator with the generator's."),
]


def _weights(model: gan.GAN) -> dict:
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def _state(weights: dict, out: dict) -> torch.Tensor:
    """Both returned losses and every weight, as one vector."""
    values = [torch.as_tensor(out["loss"]).detach().double().reshape(1),
              torch.as_tensor(out["g_loss"]).detach().double().reshape(1)]
    return torch.cat(values + [p.double().flatten() for p in weights.values()])


def _replay(base: gan.GAN, play, rounds: list) -> torch.Tensor:
    model, opt_d, opt_g = _players(base)
    out = None
    for real, z_d, z_g in rounds:
        out = fixed(lambda: play(model, real, z_d, z_g, opt_d, opt_g), seed=32)
    return _state(_weights(model), out)


def _learner_round(fn, model, opt_d, opt_g, real, z_d, z_g) -> dict:
    try:
        # under a seed of its own: a learner who draws random numbers leaves the global state alone
        return fixed(lambda: call("3.3", fn, model, real, z_d, z_g, opt_d, opt_g), seed=32)
    except AssertionError as err:
        if "modified by an inplace operation" in str(err):
            raise AssertionError(
                "Exercise 3.3: backward failed because a weight it needs was changed in place by an optimiser "
                "step. Build each loss just before its own backward: the generator's loss must be computed AFTER "
                "the discriminator's step, through the updated discriminator (opt_d.step() changes D's weights "
                "in place, so a graph built through D before that step can no longer be backpropagated).") from None
        raise


def _losses(out, n: int) -> None:
    if not isinstance(out, dict) or "loss" not in out or "g_loss" not in out:
        keys = f"keys {sorted(map(str, out))}" if isinstance(out, dict) else type(out).__name__
        raise AssertionError(f"Exercise 3.3: return a dict with the discriminator's loss under \"loss\" and the "
                             f"generator's under \"g_loss\", got {keys} in round {n}.")
    for key in ("loss", "g_loss"):
        value = out[key]
        if isinstance(value, bool) or not (isinstance(value, (int, float))
                                           or isinstance(value, torch.Tensor) and value.numel() == 1):
            raise AssertionError(f"Exercise 3.3: out[\"{key}\"] should be one number (the loss of that step), "
                                 f"got {describe(value)} in round {n}.")


@graded("gencourse.gan.adversarial_step")
def adversarial_step(fn) -> None:
    """Exercise 3.3: a discriminator step on real vs detached G(z_d), then a generator step on G(z_g)."""
    base = _tiny_gan()
    rounds = _rounds(base.config.latent_dim)
    mine, want = _players(base), _players(base)
    reached = []   # one entry per backward pass that reaches the generator's weights
    first = next(mine[0].generator.parameters())
    first.register_hook(lambda grad: reached.append(1))
    after = _weights(mine[0])
    for n, (real, z_d, z_g) in enumerate(rounds, start=1):
        before = after
        reached.clear()
        out = _learner_round(fn, *mine, real, z_d, z_g)
        _losses(out, n)
        passes = observe(f"backward passes that reached G in round {n}", lambda: len(reached))
        after = observe(f"your players' weights after round {n}", lambda: _weights(mine[0]))
        if passes > 1:
            raise AssertionError(
                "Exercise 3.3: the discriminator's step backpropagates into the generator: the fakes it judges are "
                "not detached. Its backward then does wasted work in G and leaves there gradients of the "
                "DISCRIMINATOR's loss, which push G the wrong way unless they are cleared. Cut the fakes from the "
                "generator's graph (.detach()) before the discriminator sees them in its step.")
        if not passes:
            raise AssertionError(
                "Exercise 3.3: no gradient reached the generator: its loss must be computed on fakes that are "
                "still attached to G (not detached, not made under torch.no_grad()), so that backward reaches G's "
                "weights.")
        ref = fixed(lambda: gan.adversarial_step(*want[:1], real, z_d, z_g, *want[1:]), seed=32)
        got_state, want_state = _state(after, out), _state(_weights(want[0]), ref)
        if close(got_state, want_state):
            continue
        slips = [(_replay(base, play, rounds[:n]), message) for play, message in _STEP_SLIPS]
        message = recognise(got_state, want_state, slips)
        if message is not None:
            raise AssertionError(f"Exercise 3.3: {message}")
        where = f"in round {n}" + (" (the first round was right)" if n > 1 else "")
        if not close(out["loss"], ref["loss"]) and close(out["loss"], ref["g_loss"]) \
                and close(out["g_loss"], ref["loss"]):
            raise AssertionError("Exercise 3.3: \"loss\" and \"g_loss\" are swapped: \"loss\" is the "
                                 "discriminator's loss, \"g_loss\" the generator's.")
        if not close(out["loss"], ref["loss"]):
            raise mismatch("3.3", "out[\"loss\"]", torch.as_tensor(out["loss"]).reshape(()), ref["loss"], where,
                           hint="\"loss\" is the discriminator's loss on real data against detached fakes "
                                "G(z_d), computed before its step (the \"d_loss\" that model.d_loss reports).")
        if not close(out["g_loss"], ref["g_loss"]):
            raise mismatch("3.3", "out[\"g_loss\"]", torch.as_tensor(out["g_loss"]).reshape(()), ref["g_loss"],
                           where, hint="\"g_loss\" is model.g_loss on fresh fakes G(z_g), judged by the "
                                       "discriminator after its step.")
        for (name, got_p), want_p in zip(after.items(), want[0].parameters()):
            if not close(got_p, want_p):
                player = name.split(".")[0]
                still = "" if not torch.equal(got_p, before[name]) else \
                    f" Your step did not change them at all: does opt_{player[0]}.step() run, on the right loss?"
                raise AssertionError(f"Exercise 3.3: the losses are right {where}, but after your step the "
                                     f"{player}'s weights {name.split('.', 1)[1]} differ from the reference's."
                                     f"{still} Each player takes exactly one step per round: zero its gradients, "
                                     "backward its own loss, step its own optimiser.")
        raise AssertionError(f"Exercise 3.3: your round of the game differs from the reference {where}.")
    passed("one round of the game is right: the discriminator's step on detached fakes, then the generator's")


# ----------------------------------------------------------------------------- 3.4 mode coverage

def _ring_points(counts: list[int], far: int = 0, seed: int = 40) -> torch.Tensor:
    """counts[k] points around ring mode k (within 3 std of it), and `far` points near the centre, far from all."""
    g = seeded(seed)
    modes = data.ring_modes()
    parts = [modes[k] + data.RING_STD * torch.randn(c, 2, generator=g).clamp(-2, 2) for k, c in enumerate(counts)]
    parts.append(0.3 * torch.randn(far, 2, generator=g))
    points = torch.cat(parts)
    return points[torch.randperm(len(points), generator=g)]


# (name, counts per mode, far points, within, min_share): 400 points (440 in the last case); 0.025 of 400 is 10
_COVERAGE_CASES = [
    ("a full ring", [50] * 8, 0, 3.0, 0.025),
    ("a ring collapsed onto 3 modes", [200, 0, 0, 100, 0, 0, 100, 0], 0, 3.0, 0.025),
    ("a ring with stragglers at two modes (5 and 10 of 400 points)", [90, 90, 5, 60, 60, 85, 10, 0], 0, 3.0,
     0.025),
    ("a ring with a quarter of the points far from every mode", [60, 60, 60, 60, 50, 8, 2, 0], 100, 3.0, 0.025),
    ("a ring checked with within=2 and min_share=0.05", [100, 60, 60, 60, 60, 40, 15, 5], 40, 2.0, 0.05),
]


def _coverage_slips(points, modes, std, within, min_share) -> list:
    n, k = len(points), len(modes)
    distance = torch.cdist(points, modes)
    nearest = distance.min(dim=1)

    def count(radius):
        near = nearest.values <= radius
        return near, torch.bincount(nearest.indices[near], minlength=k)

    near, counts = count(within * std)
    fraction = float(near.float().mean())
    covered = counts >= min_share * n
    pair = lambda c, f: torch.tensor([float(c), float(f)], dtype=torch.float64)  # noqa: E731
    slips = [
        (pair((counts > 0).sum(), fraction),
         "a mode counts as covered as soon as one sample is near it: it needs at least min_share of ALL the "
         "samples, min_share * len(points), so that a few stragglers do not count."),
        (pair((counts > min_share * n).sum(), fraction),
         "a mode with exactly min_share of the samples is not counted: \"at least\" min_share means >=."),
        (pair((counts >= min_share * near.sum()).sum(), fraction),
         "min_share is a share of ALL the samples, not of those near some mode: compare with min_share * "
         "len(points)."),
        (pair(covered.sum(), float(counts[covered].sum()) / n),
         "fraction counts only the samples near COVERED modes; it is the share of all samples within reach of "
         "any mode, covered or not."),
        (pair(covered.sum(), 1.0 if near.any() else 0.0),
         "fraction is the share of ALL samples that lie near some mode; yours divides by the near ones only."),
        (pair(covered.sum(), float(covered.sum()) / k),
         "fraction should be the share of SAMPLES near some mode, not the share of modes covered."),
        (pair(covered.sum(), 100 * fraction), "fraction is in percent; return a share between 0 and 1."),
        (pair(float(covered.sum()) / k, fraction), "covered should be the NUMBER of covered modes (an int), not a "
                                                   "share of the modes."),
    ]
    for radius, message in (
            (std, "the reach is one standard deviation: a sample is near a mode when it lies within `within` "
                  "standard deviations, a distance of within * std."),
            (3.0 * std, "you use 3 standard deviations whatever `within` says: use the argument."),
            (within, "the reach ignores std: `within` counts standard deviations, so the distance to compare with "
                     "is within * std."),
    ):
        near_r, counts_r = count(radius)
        for share, extra in ((min_share, ""), (0.025, " (and min_share is ignored as well: use the argument)")):
            slips.append((pair((counts_r >= share * n).sum(), float(near_r.float().mean())), message + extra))
    slips.append((pair((counts >= 0.025 * n).sum(), fraction),
                  "you use min_share = 0.025 whatever the argument says: use the argument."))
    return slips


@graded("gencourse.evaluate.mode_coverage")
def mode_coverage(fn) -> None:
    """Exercise 3.4: (modes with at least min_share of the samples within within * std, share of samples near any)."""
    modes, std = data.ring_modes(), data.RING_STD
    for i, (name, counts, far, within, min_share) in enumerate(_COVERAGE_CASES):
        points = _ring_points(counts, far, seed=40 + i)
        kwargs = {} if (within, min_share) == (3.0, 0.025) else dict(within=within, min_share=min_share)
        got = call("3.4", fn, points.clone(), modes.clone(), std, **kwargs)
        if isinstance(got, evaluate.ModeCoverage):
            got = (got.modes, got.fraction)
        if not isinstance(got, (tuple, list)) or len(got) != 2:
            raise AssertionError(f"Exercise 3.4: return a pair (covered, fraction), got {describe(got)}.")
        covered, fraction = (v.item() if isinstance(v, torch.Tensor) and v.numel() == 1 else v for v in got)
        for what, value in (("covered", covered), ("fraction", fraction)):
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise AssertionError(f"Exercise 3.4: {what} should be a number, got {describe(value)}.")
        ref = evaluate.mode_coverage(points, modes, std, within=within, min_share=min_share)
        got_pair = torch.tensor([float(covered), float(fraction)], dtype=torch.float64)
        want_pair = torch.tensor([float(ref.modes), ref.fraction], dtype=torch.float64)
        if not close(got_pair, want_pair, rtol=0, atol=1e-6):
            where = f"for {name}"
            message = recognise(got_pair, want_pair, _coverage_slips(points, modes, std, within, min_share),
                                rtol=0, atol=1e-6)
            if message is not None:
                raise AssertionError(f"Exercise 3.4: {message} (found {where})")
            if covered != ref.modes:
                raise AssertionError(f"Exercise 3.4: {where} you count {covered} covered modes, expected {ref.modes} "
                                     f"(samples near each mode: {ref.counts}, min_share * len(points) = "
                                     f"{min_share * len(points):g}).")
            raise AssertionError(f"Exercise 3.4: {where} fraction is {_number(fraction)}, expected "
                                 f"{_number(ref.fraction)}: the share of all samples within within * std of their "
                                 "nearest mode.")
    passed("mode coverage is right: full, collapsed, stragglers and stray samples")


# ----------------------------------------------------------------------------- 3.5 R1 penalty

def _critic(shape: tuple) -> torch.nn.Module:
    return fixed(lambda: gan.MLPDiscriminator(gan.GANConfig(shape=shape, hidden=16, depth=2)), seed=50)


def _r1_slips(critic, real: torch.Tensor) -> list:
    x = real.clone().requires_grad_()
    logits = critic(x)
    (grad,) = torch.autograd.grad(logits.sum(), x, create_graph=True)
    per_example = grad.flatten(1).square().sum(1)
    b = len(real)
    slips = [
        (grad.flatten(1).norm(dim=1).mean(), "you average the norms ||grad||; R1 averages the SQUARED norms."),
        (per_example.sum(), "you sum over the batch; average over it, so that the penalty does not grow with the "
                            "batch size."),
        (grad.square().mean(), "you average the squared gradient over every entry; first SUM the squares over one "
                               "example's dimensions (its squared norm), then average over the batch."),
        (per_example.mean() / b**2, f"the result is {b}^2 = {b * b} times too small: you differentiated the MEAN "
                                    "of the logits, which divides each example's gradient by the batch size. "
                                    "Differentiate their sum: each logit depends on its own example only."),
        (grad.norm(), "you take one norm over the whole batch; R1 is the mean over the batch of each example's "
                      "squared gradient norm."),
        (per_example.mean() / 2, "you include a factor 1/2; the penalty is mean ||grad||^2 alone: the caller weighs "
                                 "it by gamma / 2."),
    ]
    if real.dim() > 2:
        slips.append((grad.square().sum(-1).mean(), "for images you sum the squares over the last axis only; "
                                                    "sum over ALL of one example's dimensions (flatten it first)."))
    return slips


@graded("gencourse.gan.r1_penalty")
def r1_penalty(fn) -> None:
    """Exercise 3.5: mean over the batch of ||grad_x D(x)||^2, differentiable with respect to D's weights."""
    # images first: with 2-D points, the mean over all entries would be half the penalty, like a stray factor 1/2
    for shape, batch, seed in (((1, 4, 4), 6, 52), ((2,), 16, 51)):
        critic = _critic(shape)
        real = _randn(batch, *shape, seed=seed)
        kind = "2-D points" if len(shape) == 1 else f"images {shape}"
        x = real.clone().requires_grad_()
        got = call("3.5", fn, critic(x), x)
        if not isinstance(got, torch.Tensor) or got.dim() != 0:
            raise AssertionError(f"Exercise 3.5: the penalty should be one number (a 0-dim tensor), got "
                                 f"{describe(got)} for {kind}: average the squared norms over the batch.")
        x_ref = real.clone().requires_grad_()
        want = gan.r1_penalty(critic(x_ref), x_ref)
        if not close(got, want):
            raise mismatch("3.5", "your penalty", got, want, f"for {kind}", _r1_slips(critic, real),
                           hint="It should be the mean over the batch of each example's squared gradient norm.")
        if not got.requires_grad:
            raise AssertionError(
                "Exercise 3.5: your penalty has the right value but carries no gradient, so it cannot train the "
                "discriminator: the penalty is a function of D's weights through the gradient itself. Ask "
                "torch.autograd.grad to build a graph of the gradient (create_graph=True), and do not .detach() "
                "or .item() the result.")
        params = list(critic.parameters())
        mine = gradients(f"the gradient of the penalty for {kind}", got, params)
        ref = torch.autograd.grad(want, params, allow_unused=True)
        if any(g is None or not close(g, r, rtol=1e-3, atol=1e-5) for g, r in zip(mine, ref) if r is not None):
            raise AssertionError(f"Exercise 3.5: your penalty has the right value for {kind}, but its gradient with "
                                 "respect to D's weights differs from the reference's: compute it from the "
                                 "gradient torch.autograd.grad returns (with create_graph=True), with torch "
                                 "operations only.")
    passed("the R1 penalty is right, for points and images, and it trains the discriminator")
