"""The checks of lab 03 pass on the reference, and fail on stubs and on typical slips with their own message;
`checks.use` trains with the learner's function only when it passes."""

from __future__ import annotations

from functools import partial

import pytest
from checks_contract import fails_untouched, passes_quietly
import torch
import torch.nn.functional as F

from gencourse import evaluate, gan
from gencourse.checks import gan as checks
from gencourse.checks import use

# ----------------------------------------------------------------------------- references (what a learner writes)


def discriminator_loss(real_logits, fake_logits):
    return F.softplus(-real_logits).mean() + F.softplus(fake_logits).mean()


def generator_loss(fake_logits):
    return F.softplus(-fake_logits).mean()


def _d_loss(model, real, z):
    return model.d_loss(real, model.generate(z).detach())["d_loss"]


def adversarial_step(model, real, z_d, z_g, opt_d, opt_g):
    d_loss = _d_loss(model, real, z_d)
    opt_d.zero_grad()
    d_loss.backward()
    opt_d.step()
    g_loss = model.g_loss(model.generate(z_g))
    opt_g.zero_grad()
    g_loss.backward()
    opt_g.step()
    return {"loss": d_loss, "g_loss": g_loss}


def mode_coverage(points, modes, std, within=3.0, min_share=0.025):
    nearest = torch.cdist(points, modes).min(dim=1)
    near = nearest.values <= within * std
    counts = torch.bincount(nearest.indices[near], minlength=len(modes))
    return int((counts >= min_share * len(points)).sum()), near.float().mean().item()


def _grad(real_logits, real, create_graph=True):
    return torch.autograd.grad(real_logits.sum(), real, create_graph=create_graph)[0]


def r1_penalty(real_logits, real):
    return _grad(real_logits, real).flatten(1).square().sum(1).mean()


REFERENCES = {
    checks.discriminator_loss: discriminator_loss,
    checks.generator_loss: generator_loss,
    checks.adversarial_step: adversarial_step,
    checks.mode_coverage: mode_coverage,
    checks.r1_penalty: r1_penalty,
}


@pytest.mark.parametrize("check, fn", REFERENCES.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_on_a_correct_answer(check, fn, capsys):
    passes_quietly(check, fn, capsys)


@pytest.mark.parametrize("check, k", [(checks.discriminator_loss, 1), (checks.generator_loss, 2),
                                      (checks.adversarial_step, 3), (checks.mode_coverage, 4),
                                      (checks.r1_penalty, 5)])
def test_check_fails_on_an_untouched_exercise(check, k):
    fails_untouched(check, f"3.{k}")


def test_the_packages_own_functions_pass_their_checks():
    checks.discriminator_loss(gan.discriminator_loss)
    checks.generator_loss(gan.generator_loss)
    checks.adversarial_step(gan.adversarial_step)
    checks.mode_coverage(lambda *a, **kw: (lambda c: (c.modes, c.fraction))(evaluate.mode_coverage(*a, **kw)))
    checks.r1_penalty(gan.r1_penalty)


def test_a_learner_who_draws_random_numbers_leaves_the_global_state_alone():
    def drawing(model, real, z_d, z_g, opt_d, opt_g):
        torch.randn(3)
        return adversarial_step(model, real, z_d, z_g, opt_d, opt_g)

    before = torch.get_rng_state()
    checks.adversarial_step(drawing)
    assert torch.equal(torch.get_rng_state(), before)


# ----------------------------------------------------------------------------- typical slips, one message each

def _fails(check, fn, match):
    with pytest.raises(AssertionError, match=match):
        check(fn)


def _naive_bce(r, f):
    return -torch.log(torch.sigmoid(r)).mean() - torch.log(1 - torch.sigmoid(f)).mean()


@pytest.mark.parametrize("fn, match", [
    (lambda r, f: F.softplus(r).mean() + F.softplus(-f).mean(), "real and fake are swapped"),
    (lambda r, f: -discriminator_loss(r, f), "sign is flipped"),
    (lambda r, f: F.softplus(-r).sum() + F.softplus(f).sum(), "you sum over the batch"),
    (lambda r, f: F.softplus(-r).mean(), "only the term on real data"),
    (lambda r, f: F.softplus(f).mean(), "only the term on fakes"),
    (lambda r, f: F.binary_cross_entropy_with_logits(torch.cat([r, f]), torch.cat([torch.ones_like(r),
                                                                                   torch.zeros_like(f)])),
     "you average the two terms"),
    (lambda r, f: F.relu(1 - r).mean() + F.relu(1 + f).mean(), "hinge loss"),
    (lambda r, f: F.softplus(-r).mean() + F.softplus(-f).mean(), "both terms label their input as real"),
    (lambda r, f: F.binary_cross_entropy_with_logits(torch.sigmoid(r), torch.ones_like(r))
     + F.binary_cross_entropy_with_logits(torch.sigmoid(f), torch.zeros_like(f)), "sigmoid is applied twice"),
    (_naive_bce, "right for moderate logits.*F.softplus"),
    (lambda r, f: F.binary_cross_entropy(torch.sigmoid(r), torch.ones_like(r))
     + F.binary_cross_entropy(torch.sigmoid(f), torch.zeros_like(f)),
     r"right for moderate logits.*it is 82\.5\d+, expected 65\.06.*clips each log at -100"),
    (lambda r, f: F.softplus(-r).mean() + F.softplus(f.detach()).mean(), "no gradient reaches the fake logits"),
    (lambda r, f: discriminator_loss(r, f).detach(), "carries no gradient"),
    (lambda r, f: discriminator_loss(r, f).item(), "should be a torch.Tensor"),
    (lambda r, f: F.softplus(-r) + F.softplus(f), r"one number \(a 0-dim tensor\), got shape \(16,\)"),
    (lambda r, f: 1.1 * discriminator_loss(r, f), r"your loss is \S+, expected \S+ for the test logits"),
])
def test_discriminator_loss_slips(fn, match):
    _fails(checks.discriminator_loss, fn, match)


@pytest.mark.parametrize("fn, match", [
    (lambda f: -F.softplus(f).mean(), "minimax \\(saturating\\).*vanishes"),
    (lambda f: -generator_loss(f), "sign is flipped"),
    (lambda f: F.softplus(-f).sum(), "you sum over the batch"),
    (lambda f: F.softplus(f).mean(), "discriminator's loss on the fakes"),
    (lambda f: -f.mean(), "hinge generator loss"),
    (lambda f: -torch.log(torch.sigmoid(f)).mean(), "right for moderate logits.*F.softplus"),
    (lambda f: generator_loss(f).detach(), "carries no gradient"),
    (lambda f: F.softplus(-f), "one number"),
])
def test_generator_loss_slips(fn, match):
    _fails(checks.generator_loss, fn, match)


def _step(*, g_first=False, d_z="z_d", g_z="z_g", zero_d=True, zero_g=True, zero_after=False, swap=False,
          detach=True, step_g=True, detach_g=False):
    def fn(model, real, z_d, z_g, opt_d, opt_g):
        z = {"z_d": z_d, "z_g": z_g}
        od, og = (opt_g, opt_d) if swap else (opt_d, opt_g)

        def d():
            fake = model.generate(z[d_z])
            loss = model.d_loss(real, fake.detach() if detach else fake)["d_loss"]
            if zero_d and not zero_after:
                od.zero_grad()
            loss.backward()
            od.step()
            if zero_d and zero_after:
                od.zero_grad()
            return loss

        def g():
            fake = model.generate(z[g_z])
            loss = model.g_loss(fake.detach() if detach_g else fake)
            if zero_g and not zero_after:
                og.zero_grad()
            loss.backward()
            if step_g:
                og.step()
            if zero_g and zero_after:
                og.zero_grad()
            return loss

        if g_first:
            g_loss = g()
            d_loss = d()
        else:
            d_loss = d()
            g_loss = g()
        return {"loss": d_loss, "g_loss": g_loss}
    return fn


def _losses_first(model, real, z_d, z_g, opt_d, opt_g):
    d_loss = _d_loss(model, real, z_d)
    g_loss = model.g_loss(model.generate(z_g))
    for loss, opt in ((d_loss, opt_d), (g_loss, opt_g)):
        opt.zero_grad()
        loss.backward(retain_graph=True)
        opt.step()
    return {"loss": d_loss, "g_loss": g_loss}


@pytest.mark.parametrize("fn, match", [
    (_step(g_first=True), "the generator moves first"),
    (_step(g_z="z_d"), "reuses the discriminator's latents z_d"),
    (_step(d_z="z_g"), "the discriminator's step uses the generator's latents z_g"),
    (_step(zero_d=False, zero_g=False), "gradients pile up from round to round"),
    (_step(zero_d=False), "discriminator's gradients are never zeroed"),
    (_step(zero_g=False), "generator's gradients are never zeroed"),
    (_step(zero_after=True), "you zero the gradients after each step"),
    (_step(swap=True), "the optimisers are swapped"),
    (_step(detach=False), "not detached"),                           # same weights as the reference: found by hooks
    (_step(detach=False, zero_g=False), "not detached"),
    (_step(detach_g=True), "no gradient reached the generator"),
    (_step(step_g=False), r"generator's weights .* did not change them at all"),
    (_losses_first, "computed AFTER the discriminator's step"),
    (lambda *a: (lambda o: {"loss": o["g_loss"], "g_loss": o["loss"]})(adversarial_step(*a)), "are swapped"),
    (lambda *a: adversarial_step(*a)["loss"], "return a dict"),
    (lambda *a: {"loss": adversarial_step(*a)["loss"]}, "return a dict.*'loss'"),
    (lambda *a: (lambda o: {**o, "g_loss": torch.stack([o["g_loss"]] * 2)})(adversarial_step(*a)), "one number"),
    (lambda *a: (lambda o: {**o, "loss": 2 * o["loss"]})(adversarial_step(*a)), r"out\[\"loss\"\] is"),
])
def test_adversarial_step_slips(fn, match):
    _fails(checks.adversarial_step, fn, match)


def test_adversarial_step_accepts_plain_numbers_and_extra_logs():
    checks.adversarial_step(lambda *a: (lambda o: {"loss": o["loss"].item(), "g_loss": o["g_loss"].item(),
                                                   "d_real": 0.5})(adversarial_step(*a)))


def _coverage(radius=None, share=None, covered_if=None, fraction_of=None, percent=False):
    def fn(points, modes, std, within=3.0, min_share=0.025):
        nearest = torch.cdist(points, modes).min(dim=1)
        near = nearest.values <= (within * std if radius is None else radius(within, std))
        counts = torch.bincount(nearest.indices[near], minlength=len(modes))
        threshold = min_share * len(points) if share is None else share(min_share, points, near)
        covered = counts >= threshold if covered_if is None else covered_if(counts, threshold)
        fraction = near.float().mean().item() if fraction_of is None else fraction_of(near, counts, covered)
        return int(covered.sum()), 100 * fraction if percent else fraction
    return fn


@pytest.mark.parametrize("fn, match", [
    (_coverage(covered_if=lambda c, t: c > 0), "as soon as one sample is near it"),
    (_coverage(share=lambda s, p, near: s), "as soon as one sample is near it"),   # min_share as a count
    (_coverage(covered_if=lambda c, t: c > t), "means >="),
    (_coverage(share=lambda s, p, near: s * near.sum()), "not of those near some mode"),
    (_coverage(radius=lambda w, s: s), "the reach is one standard deviation"),
    (_coverage(radius=lambda w, s: w), "the reach ignores std"),
    (_coverage(radius=lambda w, s: 3 * s), "you use 3 standard deviations whatever `within` says"),
    (_coverage(share=lambda s, p, near: 0.025 * len(p)), "you use min_share = 0.025"),
    (_coverage(fraction_of=lambda n, c, cov: (c * cov).sum().item() / len(n)), "only the samples near COVERED"),
    (_coverage(fraction_of=lambda n, c, cov: n.float().sum().item() / max(n.sum().item(), 1)),
     "divides by the near ones only"),
    (_coverage(fraction_of=lambda n, c, cov: cov.float().mean().item()), "not the share of modes covered"),
    (_coverage(percent=True), "in percent"),
    (lambda *a, **kw: (mode_coverage(*a, **kw)[0] / 8, mode_coverage(*a, **kw)[1]), "NUMBER of covered modes"),
    (lambda *a, **kw: mode_coverage(*a, **kw)[0], "return a pair"),
    (lambda *a, **kw: (mode_coverage(*a, **kw)[0], "75%"), "fraction should be a number"),
    (lambda *a, **kw: (mode_coverage(*a, **kw)[0] + 1, mode_coverage(*a, **kw)[1]), "you count 9 covered modes, "
                                                                                   "expected 8"),
    (lambda *a, **kw: (mode_coverage(*a, **kw)[0], 0.9 * mode_coverage(*a, **kw)[1]), "fraction is 0.9, expected 1"),
])
def test_mode_coverage_slips(fn, match):
    _fails(checks.mode_coverage, fn, match)


def test_mode_coverage_accepts_tensors_and_the_packages_result():
    checks.mode_coverage(lambda *a, **kw: tuple(torch.tensor(v) for v in mode_coverage(*a, **kw)))
    checks.mode_coverage(evaluate.mode_coverage)


@pytest.mark.parametrize("fn, match", [
    (lambda lg, x: _grad(lg, x).flatten(1).norm(dim=1).mean(), "average the norms"),
    (lambda lg, x: _grad(lg, x).flatten(1).square().sum(), "you sum over the batch"),
    (lambda lg, x: _grad(lg, x).square().mean(), "average the squared gradient over every entry"),
    (lambda lg, x: torch.autograd.grad(lg.mean(), x, create_graph=True)[0].flatten(1).square().sum(1).mean(),
     r"6\^2 = 36 times too small.*MEAN of the logits"),
    (lambda lg, x: _grad(lg, x).norm(), "one norm over the whole batch"),
    (lambda lg, x: r1_penalty(lg, x) / 2, "factor 1/2"),
    (lambda lg, x: _grad(lg, x).square().sum(-1).mean(), "for images you sum the squares over the last axis"),
    (lambda lg, x: _grad(lg, x, create_graph=False).flatten(1).square().sum(1).mean(),
     "right value but carries no gradient.*create_graph=True"),
    (lambda lg, x: r1_penalty(lg, x).detach(), "right value but carries no gradient"),
    (lambda lg, x: _grad(lg, x).flatten(1).square().sum(1), "one number"),
    (lambda lg, x: r1_penalty(lg, x).item(), "one number"),
    (lambda lg, x: 1.2 * r1_penalty(lg, x), r"your penalty is \S+, expected \S+ for images \(1, 4, 4\)"),
])
def test_r1_penalty_slips(fn, match):
    _fails(checks.r1_penalty, fn, match)


def test_a_crash_in_the_learners_code_becomes_a_message():
    _fails(checks.generator_loss, lambda f: f.view(3, -1), r"Exercise 3\.2: <lambda> raised RuntimeError")


# ----------------------------------------------------------------------------- use: the learner's code when it passes

def test_use_returns_the_learners_function_when_it_passes(capsys):
    assert use(checks.generator_loss, generator_loss, gan.generator_loss, "generator loss") is generator_loss
    assert capsys.readouterr().out == "\u2713 from here on the lab uses your generator loss\n"   # the check's line is hidden


def test_use_falls_back_to_the_reference_and_names_it(capsys):
    def stub(fake_logits):
        raise NotImplementedError

    assert use(checks.generator_loss, stub, gan.generator_loss, "generator loss") is gan.generator_loss
    assert capsys.readouterr().out == ("\u2717 your generator loss does not pass its check yet, so the lab uses the "
                                       "package's reference: gencourse.gan.generator_loss\n")
    reference = partial(gan.discriminator_loss, kind="nonsaturating")
    assert use(checks.discriminator_loss, lambda r, f: r.mean(), reference, "discriminator loss") is reference
    assert capsys.readouterr().out.endswith("reference: gencourse.gan.discriminator_loss\n")
    assert use(checks.adversarial_step, _step(swap=True), gan.adversarial_step, "step") is gan.adversarial_step


def test_the_lab_finds_use_next_to_its_checks():
    """solutions/03_gan.ipynb calls checks.use after `from gencourse.checks import gan as checks`."""
    assert checks.use is use


def test_use_lets_other_errors_through():
    def broken_check(fn):
        raise TypeError("a bug in the check itself")

    with pytest.raises(TypeError, match="bug in the check"):
        use(broken_check, generator_loss, gan.generator_loss, "generator loss")
