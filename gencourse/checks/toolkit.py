"""Checks of lab 00, "The toolkit": the independent-pixel model of binarized digits, and a mixture of them.

The references are the package's own, in gencourse.baselines: pixel_probabilities (exercise 0.1),
bernoulli_nll (0.2), mixture_nll (0.3), the class BernoulliMixture (0.4), em_step (0.5) and complete (0.6).
Random answers (samples, completions) cannot be compared draw by draw with the reference's, so their checks
use designed, near-deterministic components (each pixel on with probability 0.01 or 0.99) whose samples
show which component drew them, and compare frequencies with tolerances the reference meets on any inputs.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import baselines, contract
from . import (call, close, describe, expect_tensor, fixed, graded, mismatch, observe, passed, recognise,  # noqa: F401
               seeded, use)  # use: for the lab


def _binary_images(n: int, seed: int) -> torch.Tensor:
    return (torch.rand(n, 1, 8, 8, generator=seeded(seed)) < torch.linspace(0.05, 0.9, 64).view(1, 1, 8, 8)).float()


@graded("gencourse.baselines.pixel_probabilities")
def pixel_probabilities(fn) -> None:
    """Exercise 0.1: per-pixel probabilities with Laplace smoothing."""
    x = _binary_images(40, seed=1)
    x[:, :, 0, 0] = 0  # a pixel that is never on
    x[:, :, 7, 7] = 1  # and one that is always on
    got = expect_tensor("0.1", "pixel_probabilities(x)", call("0.1", fn, x), (1, 8, 8))
    want = baselines.pixel_probabilities(x)
    if not close(got, want):
        raise mismatch("0.1", "P(pixel on)", got[0], want[0], dims=("row", "column"), slips=[
            (x.mean(dim=0)[0],
             "you return the plain frequency x.mean(0). A pixel never on in training then gets probability 0 "
             "(see position (0, 0)), and a test digit with that pixel on gets log 0 = -inf. Add one pseudo-count "
             "for 'on' and one for 'off': (count + 1) / (N + 2)."),
        ], hint="Each pixel's probability is (times on + 1) / (number of images + 2).")
    passed("pixel probabilities are right, smoothing included")


@graded("gencourse.baselines.bernoulli_nll")
def bernoulli_nll(fn) -> None:
    """Exercise 0.2: negative log-likelihood of images under independent Bernoulli pixels."""
    x = _binary_images(6, seed=2)
    probs = baselines.pixel_probabilities(_binary_images(50, seed=3))
    got = expect_tensor("0.2", "bernoulli_nll(probs, x)", call("0.2", fn, probs, x), (6,))
    want = baselines.bernoulli_nll(probs, x)
    if not close(got, want):
        raise mismatch("0.2", "the negative log-likelihood in nats", got, want, dims=("image",), slips=[
            (-want, "the sign is flipped: return the NEGATIVE log-likelihood, which is >= 0."),
            (want / math.log(2), "these are bits (log base 2); the lab works in nats: use torch.log."),
            (want / 64, "you average over the 64 pixels; sum them: independent pixels multiply, so their "
                        "log-probabilities add."),
        ], hint="Each pixel contributes x log p + (1 - x) log(1 - p); sum over pixels, negate, one value per image.")
    passed("Bernoulli negative log-likelihood is right")


# ----------------------------------------------------------------------------- exercise 0.3: a mixture's nll

_WEIGHTS = (0.5, 0.3, 0.2)        # unequal, so that leaving them out shows


def _mixture_case(seed: int, n: int, shape: tuple, low: float, high: float, on: float):
    """log_weights (3,), probs (3, *shape) in (low, high), and n binary images (n, *shape), pixels on w.p. `on`."""
    g = seeded(seed)
    probs = low + (high - low) * torch.rand(3, *shape, generator=g)
    x = (torch.rand(n, *shape, generator=g) < on).float()
    return torch.tensor(_WEIGHTS).log(), probs, x


def _mixture_nll_slips(log_weights, probs, x) -> list:
    ll = baselines.component_log_likelihoods(probs, x)                       # (N, K)
    K = len(log_weights)
    add = "Add log_weights[k] to component k's log-likelihood, then torch.logsumexp over k."
    return [
        (-baselines.mixture_nll(log_weights, probs, x), "the sign is flipped: return the NEGATIVE log-likelihood, "
                                                        "-log p(x), which is >= 0 for binary images."),
        (-torch.logsumexp(ll - math.log(K), dim=1),
         f"the weights are left out: you average the components as if every weight were 1/K. {add}"),
        (-torch.logsumexp(ll, dim=1),
         f"the weights are left out: you add up the components' likelihoods without their weights pi_k. {add}"),
        (-(log_weights + ll).amax(dim=1),
         "you keep only the best component (a max over k); a mixture ADDS the weighted likelihoods of all its "
         "components: -torch.logsumexp(log_weights + log p(x | k), dim=1)."),
        (-ll.amax(dim=1),
         "you keep only the best component (a max over k), without its weight; a mixture ADDS the weighted "
         "likelihoods of all its components: -torch.logsumexp(log_weights + log p(x | k), dim=1)."),
        (-torch.logsumexp(log_weights.exp() + ll, dim=1),
         "you add exp(log_weights), the weights themselves, to log-likelihoods: the weights are mixed up with "
         "their logs. log(pi_k p(x | k)) = log_weights[k] + log p(x | k): add log_weights as they are."),
    ]


@graded("gencourse.baselines.mixture_nll", "gencourse.baselines.component_log_likelihoods")
def mixture_nll(fn) -> None:
    """Exercise 0.3: the negative log-likelihood of images under a mixture of independent-pixel models."""
    hint = ("-log p(x) = -logsumexp_k(log pi_k + log p(x | k)), where -log p(x | k) is component k's "
            "bernoulli_nll(probs[k], x).")
    for n, shape, low, high, on, seed in [(6, (1, 8, 8), 0.2, 0.8, 0.5, 30), (4, (1, 28, 28), 0.65, 0.9, 0.2, 31)]:
        log_weights, probs, x = _mixture_case(seed, n, shape, low, high, on)
        big = shape[-1] == 28      # each component's log-likelihood is about -1000 nats there
        where = f"for {n} images of shape {shape}"
        got = call("0.3", fn, log_weights.clone(), probs.clone(), x.clone())
        if big and isinstance(got, torch.Tensor) and got.shape == (n,) and not torch.isfinite(got).all():
            raise AssertionError(
                f"Exercise 0.3: {where} (784 pixels) each component's log-likelihood is about -1000 nats, and "
                f"your answer is {got.tolist()}: exp(-1000) underflows to 0 in floating point; add the log terms "
                "with torch.logsumexp instead of taking the log of a sum of exps.")
        got = expect_tensor("0.3", f"mixture_nll(log_weights, probs, x) {where}", got, (n,))
        want = baselines.mixture_nll(log_weights, probs, x)
        if not close(got, want):
            raise mismatch("0.3", "the negative log-likelihood in nats", got, want, where,
                           _mixture_nll_slips(log_weights, probs, x), dims=("image",), hint=hint)
    passed("mixture negative log-likelihood is right, and stays finite on 28x28 images")


# ----------------------------------------------------------------------------- designed components

# Three components over (1, 4, 4) images, each pixel on with probability 0.99 in its pattern and 0.01 elsewhere.
# The patterns are disjoint. Their top halves (rows 0-1) differ in 2 pixels, their bottom halves in 5 or more:
# the top half alone says which component drew an image, and a bottom half outweighs it when added.
_PATTERNS = torch.tensor([
    [[1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 0], [0, 0, 0, 0]],
    [[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 0, 1], [1, 1, 0, 0]],
    [[0, 0, 1, 0], [0, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1]],
], dtype=torch.float32)[:, None]                                                # (3, 1, 4, 4)
_SHARP = (0.6, 0.3, 0.1)        # the designed components' weights
_ON = 0.99


def _designed() -> tuple[torch.Tensor, torch.Tensor]:
    """log_weights and probs of the designed components."""
    return torch.tensor(_SHARP).log(), torch.where(_PATTERNS.bool(), _ON, 1 - _ON)


def _matches(images: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """(N, 4): which pattern each image shows exactly (on the pixels of `mask`), the last column for none."""
    mask = torch.ones(1, 4, 4, dtype=torch.bool) if mask is None else mask
    same = (images[:, None] == _PATTERNS[None]) | ~mask                         # (N, 3, 1, 4, 4)
    hit = same.flatten(2).all(dim=2).float()                                     # (N, 3)
    return torch.cat([hit, 1 - hit.sum(1, keepdim=True).clamp(max=1)], dim=1)


def _percent(values) -> str:
    return "[" + ", ".join(f"{100 * float(v):.0f}%" for v in values) + "]"


# ----------------------------------------------------------------------------- exercise 0.4: the model as a class

_K, _SHAPE = 3, (1, 4, 4)
_SAMPLES, _SAMPLE_TOL = 5000, 0.05     # frequencies of 5000 draws lie within 0.05 of the truth (7 std or more)


def _state(model) -> dict | None:
    """What the check reads off a built model: None when it is not an nn.Module."""
    if not isinstance(model, torch.nn.Module):
        return None
    return {"buffers": {name: b.detach().clone() for name, b in model.named_buffers()},
            "parameters": sorted(name for name, _ in model.named_parameters()),
            "saved": sorted(model.state_dict()),
            "likelihood": getattr(model, "likelihood", None)}


def _set(model, log_weights, probs) -> None:
    """Give a learner's model the check's buffers, as the lab's EM loop does."""
    model.log_weights, model.probs = log_weights.clone(), probs.clone()


def _decorated(method) -> bool:
    """Whether a method is gencourse.contract.sampler's wrapper (under any other functools.wraps decorators)."""
    code = contract.sampler(lambda self, n: n).__code__      # every method sampler decorates runs this code
    for _ in range(10):
        if getattr(method, "__code__", None) is code:
            return True
        method = getattr(method, "__wrapped__", None)
    return False


def _check_built(state, K: int, shape: tuple) -> None:
    if state is None:
        raise AssertionError("Exercise 0.4: your class should build an nn.Module: subclass torch.nn.Module and "
                             "call super().__init__() first.")
    if state["likelihood"] != "exact":
        raise AssertionError(f"Exercise 0.4: set the class attribute likelihood = \"exact\" (got "
                             f"{state['likelihood']!r}): the mixture computes log p(x) exactly, and the course's "
                             "tools read this attribute.")
    buffers = state["buffers"]
    for name, want_shape in (("log_weights", (K,)), ("probs", (K, *shape))):
        if name in state["parameters"]:
            raise AssertionError(f"Exercise 0.4: {name} is an nn.Parameter; register it as a buffer with "
                                 f"self.register_buffer({name!r}, ...): EM sets it, gradient descent must not "
                                 "train it, and a buffer still moves with .to(device) and is saved in state_dict.")
        if name not in buffers:
            raise AssertionError(f"Exercise 0.4: the module should register a buffer named {name!r} "
                                 f"(self.register_buffer({name!r}, tensor)); its buffers are {sorted(buffers)}.")
        if name not in state["saved"]:
            raise AssertionError(f"Exercise 0.4: the buffer {name} is not in the module's state_dict; register it "
                                 "with the default persistent=True, so that saving the model keeps it.")
        if tuple(buffers[name].shape) != want_shape:
            raise AssertionError(f"Exercise 0.4: with {K} components and shape {shape}, the buffer {name} should "
                                 f"have shape {want_shape}, got {tuple(buffers[name].shape)}.")
        if not buffers[name].is_floating_point():
            raise AssertionError(f"Exercise 0.4: the buffer {name} should hold floats, got {buffers[name].dtype}.")
    log_weights, probs = buffers["log_weights"], buffers["probs"]
    uniform = torch.full((K,), -math.log(K))
    if not close(log_weights, uniform):
        message = recognise(log_weights, uniform, [
            (uniform.exp(), f"log_weights holds the weights 1/K themselves; store their logs: every entry "
                            f"-log K = {-math.log(K):.4f} (torch.full((K,), -math.log(K)))."),
            (torch.zeros(K), f"log_weights of 0 mean weights of 1 each, which sum to K, not 1; uniform weights "
                             f"are 1/K: fill log_weights with -log K = {-math.log(K):.4f}."),
        ])
        raise AssertionError("Exercise 0.4: " + (message or f"log_weights should start uniform, every entry "
                                                            f"-log K = {-math.log(K):.4f}; got "
                                                            f"{[round(v, 4) for v in log_weights.tolist()]}."))
    if not (probs.min() > 0 and probs.max() < 1):
        raise AssertionError(f"Exercise 0.4: probs should lie strictly between 0 and 1 (they run from "
                             f"{float(probs.min()):.3g} to {float(probs.max()):.3g}): a probability of 0 or 1 "
                             "gives log 0 = -inf to every image that disagrees. Draw them e.g. as "
                             "0.25 + 0.5 * torch.rand(..., generator=generator).")
    if all(torch.equal(p, probs[0]) for p in probs[1:]):
        raise AssertionError("Exercise 0.4: every component starts with the same probs. Identical components get "
                             "identical responsibilities and stay identical under EM: draw probs at random "
                             "(torch.rand(K, *shape, generator=generator)).")


def _log_prob_slips(log_weights, probs, x, want) -> list:
    uniform = torch.full_like(log_weights, -math.log(len(log_weights)))
    return [
        (-want, "log_prob returns the negative log-likelihood; it should return log p(x) itself, "
                "-mixture_nll(...), which is <= 0 for binary images."),
        (-baselines.mixture_nll(uniform, probs, x),
         "log_prob ignores the weights (it treats them as uniform); pass the module's log_weights buffer on to "
         "your mixture_nll."),
    ]


def _sample_stats(images: torch.Tensor) -> torch.Tensor:
    """Fractions of images showing each designed pattern exactly, and of none: (4,)."""
    return _matches(images).mean(dim=0)


@graded("gencourse.baselines.BernoulliMixture")
def bernoulli_mixture(cls) -> None:
    """Exercise 0.4: a module cls(components, shape, generator=...) with buffers log_weights and probs,
    log_prob, loss and sample."""
    model = fixed(lambda: call("0.4", cls, _K, shape=_SHAPE, generator=seeded(40)), seed=40)
    _check_built(observe("the module's buffers", lambda: _state(model)), _K, _SHAPE)
    # the same generator seed under another global seed, then another generator seed
    again = fixed(lambda: call("0.4", cls, _K, shape=_SHAPE, generator=seeded(40)), seed=41)
    other = fixed(lambda: call("0.4", cls, _K, shape=_SHAPE, generator=seeded(42)), seed=40)
    first, same, different = (observe(f"the probs of {what}", lambda m=m: m.probs.detach().clone())
                              for what, m in (("the first model", model), ("a second model", again),
                                              ("a third model", other)))
    if not torch.equal(first, same):
        raise AssertionError("Exercise 0.4: two models built with generators of the same seed got different probs: "
                             "draw them with torch.rand(..., generator=generator), not from the global random "
                             "state, so that a seed reproduces a model.")
    if torch.equal(first, different):
        raise AssertionError("Exercise 0.4: models built with generators of different seeds got the same probs: "
                             "draw them at random, with torch.rand(..., generator=generator).")

    # log_prob and loss, with the check's buffers in the learner's model and in the reference
    log_weights, probs = torch.tensor(_WEIGHTS).log(), 0.1 + 0.8 * torch.rand(_K, *_SHAPE, generator=seeded(43))
    x = (torch.rand(8, *_SHAPE, generator=seeded(44)) < 0.4).float()
    labels = torch.zeros(8, dtype=torch.long)
    ref = baselines.BernoulliMixture(_K, _SHAPE, generator=seeded(0))     # not the learner's random state
    ref.log_weights, ref.probs = log_weights, probs

    def your_log_prob(images):
        _set(model, log_weights, probs)
        return model.log_prob(images)

    def your_loss(batch):
        _set(model, log_weights, probs)
        return model.loss(batch)

    your_log_prob.__name__, your_loss.__name__ = "your log_prob", "your loss"     # what the messages call them

    got = expect_tensor("0.4", "log_prob(x) for 8 images", call("0.4", your_log_prob, x.clone()), (8,))
    want = ref.log_prob(x)
    if not close(got, want):
        raise mismatch("0.4", "log_prob(x)", got, want, "with the check's log_weights and probs",
                       _log_prob_slips(log_weights, probs, x, want), dims=("image",),
                       hint="log_prob(x) = -mixture_nll(self.log_weights, self.probs, x).")
    try:
        losses = call("0.4", your_loss, (x.clone(), labels))
    except AssertionError as err:
        if "not done yet" in str(err):
            raise
        raise AssertionError(f"{err} (loss gets a batch as the data loaders give it, here a tuple (x, y): take "
                             "the images with `x, _ = unpack(batch)`, from gencourse.data)") from None
    if not isinstance(losses, dict) or not {"loss", "nll"} <= set(losses):
        got = (f"one with the keys {sorted(map(str, losses))}" if isinstance(losses, dict) else
               f"a tensor of shape {describe(losses)}" if isinstance(losses, torch.Tensor) else describe(losses))
        raise AssertionError(f"Exercise 0.4: loss(batch) should return a dict with the keys 'loss' and 'nll', "
                             f"got {got}.")
    nll = -want.mean()
    for key in ("loss", "nll"):
        value = losses[key]
        if not isinstance(value, torch.Tensor) or value.dim() != 0:
            raise AssertionError(f"Exercise 0.4: loss(batch)[{key!r}] should be one number, a 0-d tensor, got "
                                 f"{describe(value)}.")
        if not close(value, nll):
            raise mismatch("0.4", f"loss(batch)[{key!r}]", value, nll, "with the check's log_weights and probs", [
                (-nll, "the sign is flipped: the loss is the NEGATIVE log-likelihood, -log_prob(x).mean()."),
                (8 * nll, "you sum over the batch; average instead: -self.log_prob(x).mean()."),
                (nll / math.prod(_SHAPE), "this is nats per pixel; both 'loss' and 'nll' are the mean negative "
                                          "log-likelihood per image, -self.log_prob(x).mean()."),
            ], hint="Both are the mean negative log-likelihood per image, -self.log_prob(x).mean().")

    # sampling, from the designed components
    sharp_log_weights, sharp_probs = _designed()

    def your_sample(n, seed):
        _set(model, sharp_log_weights, sharp_probs)
        model.train()
        return model.sample(n, generator=seeded(seed))
    your_sample.__name__ = "your sample"

    few = call("0.4", your_sample, 50, 45)
    mode = observe("the module's mode after sample", lambda: model.training)
    decorated = observe("whether sample is decorated with @sampler",
                        lambda: _decorated(getattr(type(model), "sample", None)))
    few = expect_tensor("0.4", "sample(50, generator=...)", few, (50, *_SHAPE))
    if not ((few == 0) | (few == 1)).all():
        raise AssertionError("Exercise 0.4: sample returns pixels other than 0 and 1, not binary images: these "
                             "look like the probabilities. Draw the pixels from them: torch.bernoulli(self.probs[k], "
                             "generator=generator).")
    if few.requires_grad:
        raise AssertionError("Exercise 0.4: the samples require gradients; sample under torch.no_grad(), as the "
                             "@sampler decorator does.")
    if mode is not True:
        raise AssertionError("Exercise 0.4: sample left the module in eval mode; put it back as it was (the "
                             "@sampler decorator from gencourse.contract does).")
    if not decorated:
        raise AssertionError("Exercise 0.4: decorate sample with @sampler (from gencourse.contract import sampler): "
                             "it checks n, samples in eval mode without gradients and restores the mode.")
    if not torch.equal(few, call("0.4", your_sample, 50, 45)):
        raise AssertionError("Exercise 0.4: the same generator seed gave different samples: pass `generator` on to "
                             "torch.multinomial and torch.bernoulli so that a seed reproduces them.")
    many = expect_tensor("0.4", f"sample({_SAMPLES}, generator=...)", call("0.4", your_sample, _SAMPLES, 46),
                         (_SAMPLES, *_SHAPE))
    got = _sample_stats(many)
    q = _ON ** math.prod(_SHAPE)       # the chance that an image of component k shows its pattern exactly
    want = torch.tensor([*(w * q for w in _SHARP), 1 - q])
    setting = (f"with three near-deterministic components (each pixel on with probability 0.99 in its pattern, "
               f"0.01 elsewhere) and weights {list(_SHARP)}, ")
    if got[:3].sum() < 0.5:
        raise AssertionError(f"Exercise 0.4: {setting}only {100 * float(got[:3].sum()):.0f}% of your samples show "
                             f"one of the patterns, expected about {100 * q:.0f}%: each PIXEL draws its own "
                             "component, i.e. you sample from the weighted average of the probs. Draw ONE "
                             "component k per image, then every pixel of that image from probs[k].")
    if int((got[:3] > 0.01).sum()) == 1:
        raise AssertionError(f"Exercise 0.4: {setting}all your samples show the same pattern: you draw one "
                             "component for the whole batch. Draw one per image: torch.multinomial(weights, n, "
                             "replacement=True, generator=generator).")
    if not close(got, want, rtol=0, atol=_SAMPLE_TOL):
        uniform = torch.tensor([*(q / 3,) * 3, 1 - q])
        raise mismatch("0.4", "the fraction of samples showing each pattern", got, want, "", [
            (uniform, f"{setting}each pattern appears in about a third of your samples: the weights are ignored. "
                      "Draw the component by its weight: torch.multinomial(self.log_weights.exp(), n, "
                      "replacement=True, generator=generator)."),
        ], rtol=0, atol=_SAMPLE_TOL, hint=f"{setting}the patterns should appear in {_percent(want[:3])} of the "
                                          f"samples; yours appear in {_percent(got[:3])}.")
    passed("the mixture is right: uniform weights and random probs as buffers, log_prob, loss, and samples that "
           "draw one component per image by its weight")


# ----------------------------------------------------------------------------- exercise 0.5: one step of EM

_EM_SHAPE = (1, 3, 4)


def _em_variant(x, log_weights, probs, *, hard=False, prior=True, normalise="components", smooth_weights=True,
                smooth_probs=True, log=True):
    """What one EM step with a slip returns: (log_weights or weights, probs)."""
    joint = baselines.component_log_likelihoods(probs, x) + (log_weights if prior else 0)   # (N, K)
    K = len(log_weights)
    if hard:
        r = F.one_hot(joint.argmax(dim=1), K).float()
    elif normalise == "components":
        r = joint.softmax(dim=1)
    elif normalise == "images":
        r = joint.softmax(dim=0)
    else:
        r = joint.exp()
    counts = r.sum(dim=0)
    weights = (counts + 1) / (len(x) + K) if smooth_weights else counts / len(x)
    on = r.T @ x.flatten(1)
    new = (on + 1) / (counts[:, None] + 2) if smooth_probs else on / counts[:, None]
    return (weights.log() if log else weights), new.view_as(probs)


def _em_slips(x, log_weights, probs) -> list:
    posterior = ("r_nk = p(k | x_n) = softmax over k of log pi_k + log p(x_n | k) "
                 "(baselines.responsibilities)")
    cases = [
        (dict(hard=True), "you assign each image to its most likely component (argmax of the responsibilities): "
                          f"that is hard EM, as in k-means. EM weighs each image by its posterior, {posterior}, "
                          "and every component learns from every image in proportion."),
        (dict(smooth_weights=False, smooth_probs=False),
         "this is plain maximum likelihood, without the pseudo-counts: pi_k = (sum_n r_nk + 1) / (N + K) and "
         "p_ki = (sum_n r_nk x_ni + 1) / (sum_n r_nk + 2), one pseudo-count per outcome as in exercise 0.1."),
        (dict(smooth_probs=False),
         "the new probs have no pseudo-counts (plain maximum likelihood): p_ki = (sum_n r_nk x_ni + 1) / "
         "(sum_n r_nk + 2), so that no pixel's probability reaches 0 or 1."),
        (dict(smooth_weights=False),
         "the new weights have no pseudo-counts (plain maximum likelihood): pi_k = (sum_n r_nk + 1) / (N + K), "
         "so that no component's weight reaches 0."),
        (dict(prior=False),
         "your responsibilities come from the likelihoods alone: the E-step leaves the weights out. The "
         f"posterior is {posterior}."),
        (dict(normalise=None),
         "your responsibilities are not normalised: pi_k p(x_n | k) is the joint probability; divide by p(x_n) "
         "so that each image's responsibilities sum to one over k (a softmax over dim=1 of the log terms)."),
        (dict(normalise="images"),
         "your responsibilities sum to one over the IMAGES; each image's responsibilities should sum to one over "
         "the components: softmax over dim=1 of the (N, K) log terms."),
        (dict(log=False), "you return the new weights pi_k; return their logs, log_weights, as the step takes them "
                          "(so that the step can be repeated: em_step(x, *em_step(x, log_weights, probs)))."),
    ]
    return [(_em_variant(x, log_weights, probs, **kw), message) for kw, message in cases]


def _flat(pair) -> torch.Tensor:
    return torch.cat([pair[0].flatten(), pair[1].flatten()])


@graded("gencourse.baselines.em_step", "gencourse.baselines.responsibilities")
def em_step(fn) -> None:
    """Exercise 0.5: one step of EM for a mixture of independent pixels, with pseudo-counts."""
    g = seeded(50)
    log_weights = torch.tensor(_WEIGHTS).log()
    probs = 0.1 + 0.8 * torch.rand(len(_WEIGHTS), *_EM_SHAPE, generator=g)
    x = (torch.rand(30, *_EM_SHAPE, generator=g) < 0.4).float()
    inputs = (x.clone(), log_weights.clone(), probs.clone())
    got = call("0.5", fn, *inputs)
    after = observe("em_step's inputs after the call", lambda: tuple(t.clone() for t in inputs))
    K = len(log_weights)
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        raise AssertionError(f"Exercise 0.5: return a pair (log_weights, probs), the new parameters, got "
                             f"{describe(got)}" + (f" of length {len(got)}" if isinstance(got, (tuple, list)) else "")
                             + ".")
    if all(isinstance(t, torch.Tensor) for t in got) and tuple(got[0].shape) == tuple(probs.shape) \
            and tuple(got[1].shape) == (K,):
        raise AssertionError("Exercise 0.5: you return (probs, log_weights); return them in the order the step "
                             "takes them, (log_weights, probs).")
    new_log_weights = expect_tensor("0.5", "the new log_weights", got[0], (K,))
    if isinstance(got[1], torch.Tensor) and got[1].numel() == probs.numel() and got[1].shape != probs.shape:
        raise AssertionError(f"Exercise 0.5: the new probs should have the shape of probs, {tuple(probs.shape)}, "
                             f"got {tuple(got[1].shape)}: reshape them with .view_as(probs).")
    new_probs = expect_tensor("0.5", "the new probs", got[1], tuple(probs.shape))
    want = baselines.em_step(x, log_weights, probs)
    if not (close(new_log_weights, want[0]) and close(new_probs, want[1])):
        message = recognise(_flat((new_log_weights, new_probs)), _flat(want),
                            [(_flat(pair), text) for pair, text in _em_slips(x, log_weights, probs)])
        if message is not None:
            raise AssertionError(f"Exercise 0.5: {message}")
        where = f"for {len(x)} images of shape {_EM_SHAPE} and {K} components"
        if not close(new_log_weights, want[0]):
            raise mismatch("0.5", "the new log_weights", new_log_weights, want[0], where, dims=("component",),
                           hint="pi_k = (sum_n r_nk + 1) / (N + K), returned as its log.")
        raise mismatch("0.5", "the new probs", new_probs, want[1], where,
                       dims=("component", "channel", "row", "column"),
                       hint="p_ki = (sum_n r_nk x_ni + 1) / (sum_n r_nk + 2), with r_nk = p(k | x_n).")
    for name, before, now in zip(("x", "log_weights", "probs"), (x, log_weights, probs), after):
        if not torch.equal(before, now):
            raise AssertionError(f"Exercise 0.5: em_step changed its input {name} in place; compute new tensors "
                                 "and return them, leaving the caller's tensors as they were.")
    passed("the EM step is right: posterior responsibilities, then weights and probs with one pseudo-count each")


# ----------------------------------------------------------------------------- exercise 0.6: completing images

_TOP = torch.tensor([True, True, False, False]).view(1, 4, 1).expand(1, 4, 4).contiguous()   # rows 0-1 are seen
_GROUPS = ((2, 0), (0, 1), (1, 2), (None, 2))   # (whose top half, whose bottom half); None: a blank top half
_PER_GROUP, _COMPLETE_TOL = 1000, 0.1           # frequencies of 1000 draws lie within 0.1 of the truth (6 std)


def _halves() -> torch.Tensor:
    """Images (4 * 1000, 1, 4, 4), the groups interleaved: a top half of one pattern, a bottom half of another."""
    images = []
    for top, bottom in _GROUPS:
        image = torch.where(_TOP, _PATTERNS[top] if top is not None else torch.zeros(1, 4, 4), _PATTERNS[bottom])
        images.append(image)
    return torch.stack(images).repeat(_PER_GROUP, 1, 1, 1)                     # image n is of group n % 4


def _bottoms(images: torch.Tensor) -> torch.Tensor:
    """(groups, 4): in each group, the fraction of images whose bottom half is pattern k's exactly, or none."""
    hits = _matches(images, ~_TOP)                                              # (N, 4)
    return hits.view(_PER_GROUP, len(_GROUPS), 4).mean(dim=0)


def _expected_bottoms(chosen: torch.Tensor) -> torch.Tensor:
    """(groups, 4) for components drawn with probabilities `chosen` (N, K): a drawn bottom half shows its
    component's pattern with probability 0.99^8."""
    q = _ON ** int((~_TOP).sum())
    per_group = chosen.view(_PER_GROUP, len(_GROUPS), -1).mean(dim=0) * q      # (groups, K)
    return torch.cat([per_group, 1 - per_group.sum(1, keepdim=True)], dim=1)


def _complete_slips(log_weights, probs, x) -> list:
    seen = _TOP.expand_as(x[0])
    posterior = baselines.responsibilities(log_weights, probs[:, seen][:, None], x[:, seen][:, None])
    every_pixel = baselines.responsibilities(log_weights, probs, x)
    prior = log_weights.exp().expand(len(x), -1)
    unweighted = baselines.responsibilities(torch.zeros_like(log_weights), probs[:, seen][:, None],
                                            x[:, seen][:, None])
    batch = ("you draw one component for the whole batch; draw one per image, from that image's own posterior "
             "(torch.multinomial(posterior, 1, generator=generator) with posterior of shape (N, K)).")
    return posterior, [
        (_expected_bottoms(every_pixel),
         "your posterior is computed from ALL the pixels, the unobserved ones included (here they were set to "
         "another component's pattern, and your completions follow them). The missing pixels are unknown: "
         "compute log pi_k + log p(x_observed | k) from the observed pixels only."),
        (_expected_bottoms(prior),
         "the components are drawn from the prior, the weights pi_k, whatever the image shows. Draw each image's "
         "component from its posterior given the observed pixels: softmax over k of log pi_k + log p(x_obs | k)."),
        (_expected_bottoms(unweighted),
         "your posterior leaves the weights out: where the observed pixels fit every component equally (a blank "
         "top half), the components should follow the weights pi_k. Add log_weights to the log-likelihoods of "
         "the observed pixels before the softmax."),
        *((_expected_bottoms(F.one_hot(torch.full((len(x),), k), len(log_weights)).float()), batch)
          for k in range(len(log_weights))),
    ]


@graded("gencourse.baselines.complete")
def complete(fn) -> None:
    """Exercise 0.6: fill in the unobserved pixels, from the component drawn from the posterior given the rest."""
    log_weights, probs = _designed()
    x = _halves()
    observed = _TOP.clone()
    inputs = (log_weights.clone(), probs.clone(), x.clone(), observed.clone())
    got = call("0.6", fn, *inputs, generator=seeded(60))
    after = observe("x after the call", lambda: inputs[2].clone())
    got = expect_tensor("0.6", "complete(log_weights, probs, x, observed)", got, tuple(x.shape))
    seen = observed.expand_as(x)
    if not torch.equal(got[seen], x[seen]):
        changed = float((got[seen] != x[seen]).float().mean())
        raise AssertionError(f"Exercise 0.6: {100 * changed:.0f}% of the observed pixels came back changed: "
                             "the observed pixels are overwritten. Keep them as they are and fill in only the "
                             "others: torch.where(observed, x, drawn).")
    missing = got[~seen]
    if not ((missing == 0) | (missing == 1)).all():
        raise AssertionError("Exercise 0.6: some filled-in pixels are neither 0 nor 1: these look like the "
                             "probabilities. Draw the pixels: torch.bernoulli(probs[k], generator=generator).")
    if not torch.equal(after, x):
        raise AssertionError("Exercise 0.6: complete changed x in place; return a new tensor (torch.where(observed, "
                             "x, drawn)) and leave the caller's images as they were.")
    if not torch.equal(got, expect_tensor("0.6", "complete(...) called again", call(
            "0.6", fn, *(t.clone() for t in inputs), generator=seeded(60)), tuple(x.shape))):
        raise AssertionError("Exercise 0.6: the same generator seed gave different completions: pass `generator` "
                             "on to torch.multinomial and torch.bernoulli.")
    posterior, slips = _complete_slips(log_weights, probs, x)
    want, yours = _expected_bottoms(posterior), _bottoms(got)
    if not close(yours, want, rtol=0, atol=_COMPLETE_TOL):
        message = recognise(yours, want, slips, rtol=0, atol=_COMPLETE_TOL)
        setting = ("with three near-deterministic components (weights 0.6, 0.3, 0.1), images whose observed top "
                   "half is one component's and whose hidden bottom half is another's: ")
        if message is not None:
            raise AssertionError(f"Exercise 0.6: {setting}{message}")
        group = int((yours - want).abs().amax(dim=1).argmax())
        top = _GROUPS[group][0]
        which = f"whose top half is component {top}'s" if top is not None else "whose top half is blank"
        raise AssertionError(f"Exercise 0.6: {setting}for the images {which}, your completed bottom halves show "
                             f"components 0, 1, 2 (or none) in {_percent(yours[group])} of cases; the posterior "
                             f"given the observed pixels expects about {_percent(want[group])}. Draw each image's "
                             "component from softmax over k of log pi_k + log p(x_obs | k), then its missing pixels "
                             "from that component.")
    passed("completion is right: observed pixels kept, each image's component drawn from its posterior given them")
