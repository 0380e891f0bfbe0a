"""The shared helpers of gencourse.checks, and the checks of lab 00: they pass on the reference,
fail on a stub, and name each typical mistake with its own message."""

from __future__ import annotations

import math
import re

import pytest
from checks_contract import fails_untouched, passes_quietly
import torch
import torch.nn.functional as F

from gencourse import baselines
from gencourse.checks import SEED_ENV, close, first_difference, mismatch, position, recognise
from gencourse.checks import toolkit as checks
from gencourse.contract import sampler


# ----------------------------------------------------------------------------- close

def test_close_compares_shape_and_values_within_the_tolerances():
    x = torch.linspace(-1, 1, 6).view(2, 3)
    assert close(x, x + 1e-6)
    assert not close(x, x + 1e-3)
    assert not close(x, x.flatten())                       # same values, other shape
    assert close(x, x + 1e-3, atol=1e-2)
    assert close(torch.tensor(1e4), torch.tensor(1e4 + 0.5))  # relative: 1e-4 of 1e4 is 1


def test_close_takes_numbers_other_dtypes_and_gradients():
    assert close(2.0, torch.tensor(2.0))
    assert close(torch.tensor(2.0, requires_grad=True) * 1, 2)
    assert close(torch.tensor([1, 0, 1]), torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64))
    assert not close(torch.tensor([1, 0, 1]), torch.tensor([1, 1, 1]))
    assert not close(torch.tensor(float("nan")), torch.tensor(float("nan")))
    assert not close([1.0, 2.0], torch.tensor([1.0, 2.0]))    # a list is not an answer the checks read
    assert not close(None, torch.tensor(1.0))


# ----------------------------------------------------------------------------- first_difference

def test_first_difference_gives_the_position_in_every_dimension():
    want = torch.zeros(3, 4, 5)
    got = want.clone()
    got[2, 1, 3] = 0.5
    got[0, 0, 0] = -0.1
    index, g, w = first_difference(got, want)
    assert index == (2, 1, 3)
    assert (g, w) == (pytest.approx(0.5), 0.0)
    assert position(index) == "[2, 1, 3]"
    assert position(index[1:], ("row", "column")) == "(row 1, column 3)"


def test_first_difference_of_numbers_and_of_nan():
    assert first_difference(torch.tensor(3.0), 2.5) == ((), 3.0, 2.5)
    got = torch.tensor([0.0, 9.0, float("nan")])
    index, g, _ = first_difference(got, torch.zeros(3))
    assert index == (2,) and math.isnan(g)


def test_first_difference_needs_one_shape():
    with pytest.raises(ValueError, match="one shape"):
        first_difference(torch.zeros(2, 3), torch.zeros(3, 2))


# ----------------------------------------------------------------------------- mismatch and recognise

WANT = torch.arange(6.0).view(2, 3)
SLIPS = [(-WANT, "the sign is flipped."), (WANT / 2, "you halve it.")]


def test_mismatch_names_the_slip_it_recognises():
    error = mismatch("9.1", "the answer", WANT / 2, WANT, slips=SLIPS)
    assert isinstance(error, AssertionError)
    assert str(error) == "Exercise 9.1: you halve it."
    assert recognise(-WANT, WANT, SLIPS) == "the sign is flipped."


def test_a_slip_equal_to_the_answer_is_not_recognised():
    slips = [(WANT.clone(), "a slip that happens to be right here.")]  # e.g. a sign flip of zeros
    assert recognise(WANT, WANT, slips) is None
    assert "slip" not in str(mismatch("9.1", "the answer", WANT + 1, WANT, slips=slips))


def test_mismatch_otherwise_names_where_the_answer_differs_most():
    got = WANT.clone()
    got[1, 2] = 7.5
    message = str(mismatch("9.2", "the answer", got, WANT, "for x = 3", SLIPS, dims=("row", "column"),
                           hint="Check the formula."))
    assert message.startswith("Exercise 9.2: your answer differs from the reference for x = 3: at position "
                              "(row 1, column 2) of the answer you give ")
    assert message.endswith("Check the formula.")
    given, expected = (float(v) for v in re.search(r"you give (\S+), expected (\S+)\. ", message).groups())
    assert (given, expected) == (pytest.approx(7.5), pytest.approx(5.0))


def test_mismatch_of_a_number_and_of_a_shape():
    message = str(mismatch("9.3", "your loss", torch.tensor(1.25), 1.0))
    assert re.fullmatch(r"Exercise 9\.3: your loss is 1\.25, expected 1\.", message)
    assert "should have shape (2, 3), got (3,)" in str(mismatch("9.3", "the answer", torch.zeros(3), WANT))


# ----------------------------------------------------------------------------- lab 00 checks

LAB_00 = [
    (checks.pixel_probabilities, baselines.pixel_probabilities, "0.1"),
    (checks.bernoulli_nll, baselines.bernoulli_nll, "0.2"),
    (checks.mixture_nll, baselines.mixture_nll, "0.3"),
    (checks.bernoulli_mixture, baselines.BernoulliMixture, "0.4"),
    (checks.em_step, baselines.em_step, "0.5"),
    (checks.complete, baselines.complete, "0.6"),
]


@pytest.mark.parametrize("check, reference, exercise", LAB_00, ids=lambda v: getattr(v, "__name__", str(v)))
def test_reference_passes_quietly_stub_fails_random_state_untouched(check, reference, exercise, capsys):
    passes_quietly(check, reference, capsys)         # one line, the learner's random state untouched, any seed
    fails_untouched(check, exercise)


@pytest.mark.parametrize("fn, match", [
    (lambda x: x.mean(dim=0), r"plain frequency x\.mean\(0\).*\(count \+ 1\) / \(N \+ 2\)"),
    (lambda x: (x.sum(dim=0) + 1) / (len(x) + 1),
     r"at position \(row 7, column 7\) of P\(pixel on\) you give 1, expected 0\.976.*\(times on \+ 1\)"),
    (lambda x: x.mean(dim=0).squeeze(0), r"should have shape \(1, 8, 8\), got \(8, 8\)"),
    (lambda x: ((x.sum(dim=0) + 1) / (len(x) + 2)).double() > 0.5, "should hold floats"),
])
def test_pixel_probabilities_slips(fn, match):
    with pytest.raises(AssertionError, match=match):
        checks.pixel_probabilities(fn)


@pytest.mark.parametrize("fn, match", [
    (lambda p, x: -baselines.bernoulli_nll(p, x), "the sign is flipped"),
    (lambda p, x: baselines.bernoulli_nll(p, x) / math.log(2), r"these are bits \(log base 2\)"),
    (lambda p, x: baselines.bernoulli_nll(p, x) / 64, "you average over the 64 pixels; sum them"),
    (lambda p, x: baselines.bernoulli_nll(p, x) * 1.1, r"at position \(image \d\) of the negative log-likelihood "
                                                        r"in nats you give .* Each pixel contributes"),
    (lambda p, x: baselines.bernoulli_nll(p, x)[:, None], r"should have shape \(6,\)"),
])
def test_bernoulli_nll_slips(fn, match):
    with pytest.raises(AssertionError, match=match):
        checks.bernoulli_nll(fn)


# ----------------------------------------------------------------------------- 0.3: a mixture's nll

def per_component_nll(probs, x):
    """(N, K): what a learner gets from exercise 0.2's bernoulli_nll, one component at a time."""
    return torch.stack([baselines.bernoulli_nll(p, x) for p in probs], dim=1)


def naive_mixture_nll(log_weights, probs, x):
    """-log sum_k pi_k p(x | k) with the probabilities themselves: right until they underflow."""
    return -torch.log((log_weights.exp() * torch.exp(-per_component_nll(probs, x))).sum(dim=1))


def test_the_large_case_puts_each_component_near_minus_1000_nats():
    _, probs, x = checks._mixture_case(31, 4, (1, 28, 28), 0.65, 0.9, 0.2)
    ll = baselines.component_log_likelihoods(probs, x)
    assert (-1150 < ll).all() and (ll < -850).all()
    _, probs, x = checks._mixture_case(30, 6, (1, 8, 8), 0.2, 0.8, 0.5)
    assert (baselines.component_log_likelihoods(probs, x) > -80).all()    # exp of it is a normal float32


@pytest.mark.parametrize("fn, match", [
    (lambda lw, p, x: -baselines.mixture_nll(lw, p, x), "the sign is flipped"),
    (lambda lw, p, x: -torch.logsumexp(-per_component_nll(p, x) - math.log(len(lw)), dim=1),
     r"weights are left out: you average the components as if every weight were 1/K"),
    (lambda lw, p, x: -torch.logsumexp(-per_component_nll(p, x), dim=1),
     r"weights are left out: you add up the components' likelihoods without their weights"),
    (lambda lw, p, x: (per_component_nll(p, x) - lw).amin(dim=1), r"only the best component \(a max over k\);"),
    (lambda lw, p, x: per_component_nll(p, x).amin(dim=1), r"only the best component \(a max over k\), without"),
    (lambda lw, p, x: -torch.logsumexp(lw.exp() - per_component_nll(p, x), dim=1),
     "you add exp\\(log_weights\\), the weights themselves.*mixed up with their logs"),
    (naive_mixture_nll, r"for 4 images of shape \(1, 28, 28\) \(784 pixels\) each component's log-likelihood is "
                        r"about -1000 nats, and your answer is \[inf, inf, inf, inf\]: exp\(-1000\) underflows to 0 "
                        r"in floating point; add the log terms with torch\.logsumexp"),
    (lambda lw, p, x: baselines.mixture_nll(lw, p, x)[:, None], r"should have shape \(6,\), got \(6, 1\)"),
    (lambda lw, p, x: baselines.mixture_nll(lw, p, x) * 1.01,
     r"differs from the reference for 6 images of shape \(1, 8, 8\): at position \(image \d\) .* -logsumexp_k"),
])
def test_mixture_nll_mistakes(fn, match):
    with pytest.raises(AssertionError, match=r"^Exercise 0\.3: .*" + match):
        checks.mixture_nll(fn)


def test_the_naive_mixture_nll_is_right_on_small_images():
    lw, probs, x = checks._mixture_case(30, 6, (1, 8, 8), 0.2, 0.8, 0.5)
    assert close(naive_mixture_nll(lw, probs, x), baselines.mixture_nll(lw, probs, x))


# ----------------------------------------------------------------------------- 0.4: the mixture as a class

M = baselines.BernoulliMixture


class WholeBatch(M):
    @sampler
    def sample(self, n, *, generator=None):
        k = torch.multinomial(self.log_weights.exp(), 1, generator=generator).expand(n)
        return torch.bernoulli(self.probs[k], generator=generator)


class PerPixel(M):
    @sampler
    def sample(self, n, *, generator=None):
        average = (self.log_weights.exp().view(-1, 1, 1, 1) * self.probs).sum(0)
        return torch.bernoulli(average.expand(n, *average.shape), generator=generator)


class Unweighted(M):
    @sampler
    def sample(self, n, *, generator=None):
        k = torch.multinomial(torch.ones(len(self.probs)), n, replacement=True, generator=generator)
        return torch.bernoulli(self.probs[k], generator=generator)


class Probabilities(M):
    @sampler
    def sample(self, n, *, generator=None):
        return self.probs[torch.multinomial(self.log_weights.exp(), n, replacement=True, generator=generator)]


class NoGenerator(M):
    @sampler
    def sample(self, n, *, generator=None):
        return M.sample.__wrapped__(self, n, generator=None)


class Undecorated(M):
    def sample(self, n, *, generator=None):
        with torch.no_grad():
            return M.sample.__wrapped__(self, n, generator=generator)


class LeavesEval(M):
    def sample(self, n, *, generator=None):
        self.eval()
        with torch.no_grad():
            return M.sample.__wrapped__(self, n, generator=generator)


class NllAsLogProb(M):
    def log_prob(self, x):
        return baselines.mixture_nll(self.log_weights, self.probs, x)


class UniformLogProb(M):
    def log_prob(self, x):
        return -baselines.mixture_nll(torch.zeros_like(self.log_weights) - math.log(len(self.log_weights)),
                                      self.probs, x)


class SummedLoss(M):
    def loss(self, batch):
        nll = -self.log_prob(batch[0]).sum()
        return {"loss": nll, "nll": nll}


class PerPixelLoss(M):
    def loss(self, batch):
        nll = -self.log_prob(batch[0]).mean()
        return {"loss": nll / self.probs[0].numel(), "nll": nll}


class NoUnpack(M):
    def loss(self, batch):
        nll = -self.log_prob(batch).mean()
        return {"loss": nll, "nll": nll}


class LossTensor(M):
    def loss(self, batch):
        return -self.log_prob(batch[0]).mean()


def rebuilt(change):
    """A subclass whose __init__ builds the reference, then changes its buffers with change(module, K, shape)."""
    class Built(M):
        def __init__(self, components, shape=(1, 8, 8), generator=None):
            super().__init__(components, shape, generator)
            change(self, components, shape)
    return Built


def as_parameters(m, K, shape):
    del m.log_weights
    m.log_weights = torch.nn.Parameter(torch.full((K,), -math.log(K)))


def not_saved(m, K, shape):
    probs = m.probs
    del m.probs
    m.register_buffer("probs", probs, persistent=False)


def global_random(m, K, shape):
    m.probs = 0.25 + 0.5 * torch.rand(K, *shape)


def linspace(m, K, shape):
    m.probs = torch.linspace(0.2, 0.8, K).view(-1, *[1] * len(shape)).expand(K, *shape).clone()


class NoLikelihood(M):
    likelihood = None


class StubInit(M):
    def __init__(self, components, shape=(1, 8, 8), generator=None):
        super().__init__(components, shape, generator)
        raise NotImplementedError("Exercise 0.4: build the buffers")


class LabStub(torch.nn.Module):
    """What the generated lab holds before the exercise is done: the class, its body an __init__ that raises."""

    def __init__(self, *args, **kwargs):
        raise NotImplementedError("Exercise 0.4: the class BernoulliMixture")


class StubMethods(M):
    def log_prob(self, x):
        raise NotImplementedError("Exercise 0.4: log_prob")


@pytest.mark.parametrize("cls, match", [
    (WholeBatch, "all your samples show the same pattern: you draw one component for the whole batch"),
    (PerPixel, r"only \d+% of your samples show one of the patterns, expected about 85%: each PIXEL draws its own "
               "component, i.e. you sample from the weighted average of the probs"),
    (Unweighted, "each pattern appears in about a third of your samples: the weights are ignored"),
    (Probabilities, "not binary images: these look like the probabilities"),
    (NoGenerator, "the same generator seed gave different samples"),
    (Undecorated, r"decorate sample with @sampler"),
    (LeavesEval, "sample left the module in eval mode"),
    (NllAsLogProb, "log_prob returns the negative log-likelihood"),
    (UniformLogProb, "log_prob ignores the weights"),
    (SummedLoss, r"you sum over the batch; average instead"),
    (PerPixelLoss, r"this is nats per pixel"),
    (NoUnpack, r"your loss raised .*take the images with `x, _ = unpack\(batch\)`"),
    (LossTensor, "loss\\(batch\\) should return a dict with the keys 'loss' and 'nll', got a tensor of shape \\(\\)"),
    (rebuilt(as_parameters), "log_weights is an nn.Parameter; register it as a buffer"),
    (rebuilt(lambda m, K, s: setattr(m, "log_weights", torch.full((K,), 1 / K))),
     r"log_weights holds the weights 1/K themselves; store their logs"),
    (rebuilt(lambda m, K, s: setattr(m, "log_weights", torch.zeros(K))), "log_weights of 0 mean weights of 1 each"),
    (rebuilt(lambda m, K, s: setattr(m, "probs", torch.rand(K, *s).round())), "strictly between 0 and 1"),
    (rebuilt(lambda m, K, s: setattr(m, "probs", torch.full((K, *s), 0.5))), "every component starts with the same"),
    (rebuilt(global_random), "generators of the same seed got different probs"),
    (rebuilt(linspace), "generators of different seeds got the same probs"),
    (rebuilt(lambda m, K, s: setattr(m, "probs", torch.rand(K, 1, 8, 8) * 0.5 + 0.25)),
     r"the buffer probs should have shape \(3, 1, 4, 4\), got \(3, 1, 8, 8\)"),
    (rebuilt(not_saved), "the buffer probs is not in the module's state_dict"),
    (rebuilt(lambda m, K, s: delattr(m, "probs")), r"register a buffer named 'probs'.*\['log_weights'\]"),
    (NoLikelihood, 'likelihood = "exact"'),
    (lambda *args, **kwargs: object(), "should build an nn.Module"),
    (StubInit, r" is not done yet: StubInit still raises NotImplementedError"),
    (LabStub, r" is not done yet: LabStub still raises NotImplementedError"),
    (StubMethods, r" is not done yet: your log_prob still raises NotImplementedError"),
])
def test_bernoulli_mixture_mistakes(cls, match):
    with pytest.raises(AssertionError, match=r"^Exercise 0\.4.*" + match):
        checks.bernoulli_mixture(cls)


class AlsoNoGrad(M):
    @torch.no_grad()
    @sampler
    def sample(self, n, *, generator=None):
        return M.sample.__wrapped__(self, n, generator=generator)


def test_bernoulli_mixture_takes_sampler_under_another_decorator(capsys):
    checks.bernoulli_mixture(AlsoNoGrad)
    assert capsys.readouterr().out.startswith("\u2713 the mixture is right")


# ----------------------------------------------------------------------------- 0.5: one step of EM

def em(x, log_weights, probs, hard=False, prior=True, over=1, normalise=True, smooth_weights=True,
       smooth_probs=True, log=True, order=("log_weights", "probs")):
    """One EM step as a learner writes it, with switches for the usual slips."""
    joint = -per_component_nll(probs, x) + (log_weights if prior else 0)
    if hard:
        r = F.one_hot(joint.argmax(1), len(log_weights)).float()
    else:
        r = joint.softmax(dim=over) if normalise else joint.exp()
    n_k = r.sum(0)
    weights = (n_k + 1) / (len(x) + len(n_k)) if smooth_weights else n_k / len(x)
    on = torch.einsum("nk,nchw->kchw", r, x)
    new = (on + 1) / (n_k.view(-1, 1, 1, 1) + 2) if smooth_probs else on / n_k.view(-1, 1, 1, 1)
    out = {"log_weights": weights.log() if log else weights, "probs": new}
    return tuple(out[name] for name in order)


def in_place(x, log_weights, probs):
    new_log_weights, new_probs = baselines.em_step(x, log_weights, probs)
    probs.copy_(new_probs)
    return new_log_weights, probs


@pytest.mark.parametrize("fn, match", [
    (lambda x, lw, p: em(x, lw, p, hard=True), r"most likely component \(argmax of the responsibilities\): "
                                               "that is hard EM, as in k-means"),
    (lambda x, lw, p: em(x, lw, p, smooth_weights=False, smooth_probs=False), "plain maximum likelihood, without"),
    (lambda x, lw, p: em(x, lw, p, smooth_probs=False), "the new probs have no pseudo-counts"),
    (lambda x, lw, p: em(x, lw, p, smooth_weights=False), "the new weights have no pseudo-counts"),
    (lambda x, lw, p: em(x, lw, p, prior=False), "from the likelihoods alone: the E-step leaves the weights out"),
    (lambda x, lw, p: em(x, lw, p, normalise=False), "your responsibilities are not normalised"),
    (lambda x, lw, p: em(x, lw, p, over=0), "sum to one over the IMAGES"),
    (lambda x, lw, p: em(x, lw, p, log=False), "you return the new weights pi_k; return their logs"),
    (lambda x, lw, p: em(x, lw, p, order=("probs", "log_weights")), r"you return \(probs, log_weights\)"),
    (lambda x, lw, p: em(x, lw, p)[0], r"return a pair \(log_weights, probs\).*got \(3,\)"),
    (lambda x, lw, p: (em(x, lw, p)[0], em(x, lw, p)[1].flatten(1)), r"reshape them with \.view_as\(probs\)"),
    (lambda x, lw, p: (em(x, lw, p)[0][:, None], em(x, lw, p)[1]), r"log_weights should have shape \(3,\)"),
    (in_place, "em_step changed its input probs in place"),
    (lambda x, lw, p: (em(x, lw, p)[0], em(x, lw, p)[1] + 0.01),
     r"differs from the reference for 30 images .* of the new probs you give .* p_ki = \(sum_n r_nk x_ni \+ 1\)"),
    (lambda x, lw, p: (em(x, lw, p)[0] - 0.01, em(x, lw, p)[1]), r"of the new log_weights you give"),
])
def test_em_step_mistakes(fn, match):
    with pytest.raises(AssertionError, match=r"^Exercise 0\.5: .*" + match):
        checks.em_step(fn)


def test_the_learners_em_step_passes():
    checks.em_step(lambda x, lw, p: em(x, lw, p))


# ----------------------------------------------------------------------------- 0.6: completing images

def fill(log_weights, probs, x, observed, generator=None, posterior="observed", per_image=True, keep=True,
         draw=True, use_generator=True, overwrite_x=False):
    """complete() as a learner writes it, with switches for the usual slips."""
    gen = generator if use_generator else None
    seen = observed.flatten().float()
    flat = x.flatten(1)
    like = flat @ (probs.log().flatten(1) * seen).T + (1 - flat) @ (torch.log1p(-probs).flatten(1) * seen).T
    logits = {"observed": log_weights + like, "all": log_weights - per_component_nll(probs, x),
              "prior": log_weights.expand(len(x), -1), "unweighted": like}[posterior]
    if per_image:
        k = torch.multinomial(logits.softmax(1), 1, generator=gen)[:, 0]
    else:
        k = torch.multinomial(logits.softmax(1)[0], 1, generator=gen).expand(len(x))
    drawn = torch.bernoulli(probs[k], generator=gen) if draw else probs[k]
    if not keep:
        return drawn
    if overwrite_x:
        x[~observed.expand_as(x)] = drawn[~observed.expand_as(x)]
        return x
    return torch.where(observed, x, drawn)


@pytest.mark.parametrize("kwargs, match", [
    (dict(posterior="prior"), "the components are drawn from the prior, the weights pi_k, whatever the image shows"),
    (dict(posterior="all"), "your posterior is computed from ALL the pixels, the unobserved ones included"),
    (dict(posterior="unweighted"), "your posterior leaves the weights out"),
    (dict(per_image=False), "you draw one component for the whole batch"),
    (dict(keep=False), r"\d+% of the observed pixels came back changed: the observed pixels are overwritten"),
    (dict(draw=False), "some filled-in pixels are neither 0 nor 1: these look like the probabilities"),
    (dict(use_generator=False), "the same generator seed gave different completions"),
    (dict(overwrite_x=True), "complete changed x in place"),
])
def test_complete_mistakes(kwargs, match):
    with pytest.raises(AssertionError, match=r"^Exercise 0\.6: .*" + match):
        checks.complete(lambda *args, **kw: fill(*args, **kw, **kwargs))


@pytest.mark.parametrize("fn, match", [
    (lambda lw, p, x, o, generator=None: fill(lw, p, x, o, generator)[:, 0],
     r"should have shape \(4000, 1, 4, 4\), got \(4000, 4, 4\)"),
    (lambda lw, p, x, o, generator=None: torch.where(o, x, fill(lw, p, x, o, generator).roll(1, dims=0)),
     r"for the images whose top half is (blank|component \d's), your completed bottom halves show components "
     r"0, 1, 2 \(or none\) in \[.*\] of cases; the posterior given the observed pixels expects about"),
])
def test_complete_other_mistakes(fn, match):
    with pytest.raises(AssertionError, match=r"^Exercise 0\.6: .*" + match):
        checks.complete(fn)


def test_the_learners_complete_passes():
    checks.complete(fill)


# ----------------------------------------------------------------------------- statistics the reference always meets

@pytest.mark.parametrize("check, reference", [(checks.bernoulli_mixture, baselines.BernoulliMixture),
                                              (checks.complete, baselines.complete)])
def test_statistical_checks_pass_the_reference_on_many_grading_seeds(check, reference, monkeypatch, capsys):
    for seed in range(0, 40_000_000, 1_000_003):
        monkeypatch.setenv(SEED_ENV, str(seed))
        check(reference)
    assert capsys.readouterr().out.count("\u2713") == 40
