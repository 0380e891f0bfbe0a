"""Checks of lab 05, "Normalizing flows": the change of variables for an elementwise affine map, an affine
coupling layer both ways, ActNorm's data-dependent initialisation, the flow's log-density by composition,
and the reverse-KL loss of a Boltzmann generator.

Each check calls the learner's function on fixed inputs and compares it with the reference
(gencourse.flows.affine_log_prob, affine_coupling, actnorm_init, log_prob and reverse_kl_loss); before the generic
"values differ" message it tries the usual slips and names the one it recognises. `use` (from
gencourse.checks) is re-exported here: the lab trains with the learner's function only once it passes.
"""

from __future__ import annotations

import math

import torch

from .. import flows
from . import call, close, describe, expect_tensor, fixed, gradients, graded, mismatch, passed, seeded, use  # noqa: F401  (use: lab)

LOG_2PI = math.log(2 * math.pi)


def _randn(*shape, seed: int, scale: float = 1.0, shift: float = 0.0) -> torch.Tensor:
    return scale * torch.randn(*shape, generator=seeded(seed)) + shift


def _no_grad_message(exercise: str, what: str, inputs: str) -> str:
    return (f"Exercise {exercise}: {what} has the right value, but carries no gradient from {inputs}: compute it "
            "with torch operations, without .detach(), .item() or torch.no_grad(), or nothing can train it.")


# ----------------------------------------------------------------------------- 5.1 change of variables

@graded("gencourse.flows.affine_log_prob")
def affine_log_prob(fn) -> None:
    """Exercise 5.1: log p(x) for z = a x + b ~ N(0, I) elementwise: sum of log N(z) + log|a|."""
    x = _randn(6, 3, seed=1)
    a = torch.tensor([2.0, -0.5, 1.5], requires_grad=True)
    b = torch.tensor([0.3, -1.0, 0.0], requires_grad=True)
    got = call("5.1", fn, x, a, b)
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (6, 3):
        raise AssertionError("Exercise 5.1: you return one value per dimension, shape (6, 3); the dimensions are "
                             "independent, so the log-density of an example is their SUM: shape (6,).")
    if isinstance(got, torch.Tensor) and tuple(got.shape) == (6,) and got.isnan().any():
        raise AssertionError("Exercise 5.1: log p(x) is NaN, as the log of a negative number is: take the log of "
                             "|a|: a can be negative.")
    got = expect_tensor("5.1", "log p(x)", got, (6,))
    want = flows.affine_log_prob(x, a, b)
    if not close(got, want):
        with torch.no_grad():
            z = a * x + b
            base = -0.5 * (z.square() + LOG_2PI)
            slips = [
                (base.sum(1), "the log-determinant is missing: a density changes by |dz/dx| = |a| per dimension "
                              "when the variable changes, so add log|a| for each dimension."),
                ((base - torch.log(a.abs())).sum(1), "the sign of log|a| is flipped: p_X(x) = p_Z(z) |dz/dx|, so "
                                                     "log p_X = log p_Z(z) + log|a| (x -> z stretches by a)."),
                ((-0.5 * ((x - b) / a).square() - 0.5 * LOG_2PI + torch.log(a.abs())).sum(1),
                 "z = a * x + b here (the map goes from x to z), not x = a * z + b."),
                ((-0.5 * z.square() + torch.log(a.abs())).sum(1), "the normal's constant -log(2 pi) / 2 per "
                                                                  "dimension is missing."),
                ((base + torch.log(a)).sum(1), "take the log of |a|: a can be negative."),
            ]
            raise mismatch("5.1", "log p(x)", got, want, "for the test x, a and b", slips, dims=("example",),
                           hint="log p(x) = sum over dimensions of log N(a x + b; 0, 1) + log|a|.")
    grads = gradients("the gradient of log p(x) with respect to a and b", got.sum(), [a, b])
    if any(g is None for g in grads):
        raise AssertionError(_no_grad_message("5.1", "log p(x)", "a and b"))
    passed("the change of variables is right: the base density at z plus log|dz/dx|")


# ----------------------------------------------------------------------------- 5.2 affine coupling

def _coupling_parts(seed: int = 2):
    mask = flows.checkerboard((4,), 0)
    weight = _randn(8, 4, seed=seed, scale=0.5)

    def st(x_masked):
        out = torch.tanh(x_masked @ weight.T)
        return out[:, :4], out[:, 4:]
    return mask, st


def _coupling_slips(x, mask, st, reverse):
    s, t = st(mask * x)
    free = 1 - mask
    ld = (free * s).sum(1)
    if reverse:
        return [
            ((mask * x + free * (x * torch.exp(-s) - t), -ld), "undo the two operations in reverse order: the "
             "forward map scales and THEN shifts, so the inverse subtracts t first and then divides by exp(s)."),
            ((mask * x + free * (x - t) * torch.exp(-s), ld), "the inverse's log-determinant is minus the "
                                                              "forward's: -sum (1 - mask) * s."),
            ((mask * x + free * (x - t) / s, -ld), "the forward map multiplies by exp(s), so the inverse divides by "
                                                    "exp(s), not by s."),
        ]
    return [
        ((mask * x + free * (x * torch.exp(s) + t), (s).sum(1)),
         "the log-determinant sums s over EVERY dimension; only the changed ones, where mask is 0, contribute: "
         "sum (1 - mask) * s."),
        ((mask * x + free * (x + t) * torch.exp(s), ld), "scale first, then shift: y = x * exp(s) + t on the "
                                                         "changed dimensions."),
        ((mask * x + free * (x * s + t), (free * torch.log(s.abs())).sum(1)),
         "the scale is exp(s), not s: the network's s is a log-scale, which keeps the map invertible for any s."),
        ((mask * x + free * (x * s + t), ld),
         "the scale is exp(s), not s: the network's s is a log-scale, which keeps the map invertible for any s."),
        ((free * x + mask * (x * torch.exp(s) + t), ld), "the mask marks the dimensions that pass UNCHANGED (mask "
                                                         "1); the others are scaled and shifted."),
        ((free * x + mask * (x * torch.exp(s) + t), (mask * s).sum(1)),
         "the mask marks the dimensions that pass UNCHANGED (mask 1); the others are scaled and shifted."),
        ((mask * x + free * (x * torch.exp(s) + t), -ld), "the sign of the log-determinant is flipped: forward, "
                                                          "log|det| = +sum (1 - mask) * s."),
    ]


def _pair(exercise: str, out, shape, what: str):
    if not isinstance(out, tuple) or len(out) != 2:
        raise AssertionError(f"Exercise {exercise}: return a pair ({what}, log_det), got {describe(out)}.")
    y, ld = out
    if isinstance(ld, torch.Tensor) and ld.dim() == 0:
        raise AssertionError(f"Exercise {exercise}: log_det is one number; return one per example, shape "
                             f"({shape[0]},): sum over every dimension but the first.")
    return expect_tensor(exercise, what, y, shape), expect_tensor(exercise, "log_det", ld, (shape[0],))


@graded("gencourse.flows.affine_coupling")
def affine_coupling(fn) -> None:
    """Exercise 5.2: forward y = m x + (1 - m)(x exp(s) + t), log|det| = sum (1 - m) s; and its inverse."""
    mask, st = _coupling_parts()
    for reverse in (False, True):
        x = _randn(5, 4, seed=3 + reverse, scale=1.5).requires_grad_()
        out = call("5.2", fn, x, mask, st, reverse=reverse)
        y, ld = _pair("5.2", out, (5, 4), "the output")
        want_y, want_ld = flows.affine_coupling(x, mask, st, reverse=reverse)
        if not (close(y, want_y) and close(ld, want_ld)):
            with torch.no_grad():
                slips = [(torch.cat([sy, sld[:, None]], 1), m)
                         for (sy, sld), m in _coupling_slips(x, mask, st, reverse)]
                direction = "reverse=True (x from y)" if reverse else "forward (y from x)"
                raise mismatch("5.2", "[output | log_det]", torch.cat([y, ld[:, None]], 1),
                               torch.cat([want_y, want_ld[:, None]], 1), f"{direction}, for the test inputs",
                               slips, dims=("example", "column (the last is log_det)"),
                               hint="(s, t) = st(mask * x); only the dimensions where mask is 0 change.")
        if not y.requires_grad:
            raise AssertionError(_no_grad_message("5.2", "the output", "x and the network"))
    x = _randn(5, 4, seed=5)
    y, ld = _pair("5.2", call("5.2", fn, x, mask, st), (5, 4), "the output")
    back, ld_back = _pair("5.2", call("5.2", fn, y, mask, st, reverse=True), (5, 4), "the output of reverse=True")
    if not close(back, x, atol=1e-5):
        raise AssertionError("Exercise 5.2: reverse=True does not undo the forward map: fn(fn(x)[0], reverse=True)[0] "
                             "should give x back.")
    passed("the affine coupling is right both ways, with its triangular Jacobian's log-determinant")


# ----------------------------------------------------------------------------- 5.3 ActNorm's initialisation

@graded("gencourse.flows.actnorm_init")
def actnorm_init(fn) -> None:
    """Exercise 5.3: bias = -mean and log_scale = -log(std + eps) per channel (dim 1), over batch and positions."""
    for shape, where in (((32, 3), "vectors (B, C)"), ((8, 3, 4, 4), "images (B, C, H, W)")):
        spread = torch.tensor([1.0, 0.2, 5.0]).view(1, 3, *[1] * (len(shape) - 2))
        x = _randn(*shape, seed=6, scale=3.0, shift=2.0) * spread
        out = call("5.3", fn, x)
        if not isinstance(out, tuple) or len(out) != 2:
            raise AssertionError(f"Exercise 5.3: return a pair (bias, log_scale), got {describe(out)}.")
        bias, log_scale = (expect_tensor("5.3", name, v, (3,)) for name, v in zip(("bias", "log_scale"), out))
        want_bias, want_log_scale = flows.actnorm_init(x)
        got, want = torch.cat([bias, log_scale]), torch.cat([want_bias, want_log_scale])
        flat = x.transpose(0, 1).flatten(1)
        biased = torch.cat([want_bias, -torch.log(flat.std(1, correction=0) + 1e-6)])   # Glow's: 1/N, also right
        if not (close(got, want, rtol=1e-3, atol=1e-4) or close(got, biased, rtol=1e-3, atol=1e-4)):
            slips = [
                (torch.cat([flat.mean(1), -torch.log(flat.std(1))]), "bias must CANCEL the mean: bias = -mean, "
                                                                     "so that x + bias has mean 0."),
                (torch.cat([-flat.mean(1), torch.log(flat.std(1))]), "log_scale must SHRINK the spread: y = (x + "
                                                                     "bias) * exp(log_scale) has std 1 when "
                                                                     "log_scale = -log(std)."),
                (torch.cat([-flat.mean(1), -flat.std(1)]), "log_scale is a log: -log(std)."),
                (torch.cat([-flat.mean(1), -torch.log(flat.var(1))]), "use the standard deviation, not the "
                                                                      "variance: log_scale = -log(std)."),
            ]
            if len(shape) == 4:
                first = x[:, :, 0, 0]
                slips.append((torch.cat([-first.mean(0), -torch.log(first.std(0))]),
                              "the statistics of a channel run over the batch AND every position (H, W)."))
            raise mismatch("5.3", "[bias | log_scale]", got, want, f"for {where}", slips,
                           hint="one mean and one standard deviation per channel (dim 1), over all other dims.")
    passed("ActNorm's initialisation is right: after it, every channel has mean 0 and standard deviation 1")


# ----------------------------------------------------------------------------- 5.4 log-density by composition

def _toy_flow() -> flows.Flow:
    def build():
        flow = flows.Flow(flows.FlowConfig.toy(steps=3, hidden=8))
        with torch.no_grad():
            for p in flow.parameters():
                p.add_(0.3 * torch.randn_like(p))      # away from the identity that a new flow starts as
        return flow.eval()
    return fixed(build, seed=70)


@graded("gencourse.flows.log_prob", "gencourse.flows.Flow.log_prob")
def log_prob(fn) -> None:
    """Exercise 5.4: log N(z) + the sum of every layer's log-determinant, z the last layer's output."""
    flow = _toy_flow()
    x = _randn(7, 2, seed=71).requires_grad_()
    got = expect_tensor("5.4", "log p(x)", call("5.4", fn, flow, x), (7,))
    want = flows.log_prob(flow, x)
    if not close(got, want, rtol=1e-4, atol=1e-4):
        with torch.no_grad():
            z, ld = flow(x)
            base = flows.standard_normal_log_prob(z)
            first = flow.layers[0](x)[1]
            slips = [
                (base, "the log-determinants are missing: each layer stretches space, and log p(x) adds every "
                       "layer's log|det| to the base density at z."),
                (base - ld, "the log-determinants enter with a plus sign: log p(x) = log N(z) + sum log|det dz/dx|."),
                (flows.standard_normal_log_prob(x) + ld, "the base density is evaluated at x; evaluate it at z, "
                                                         "the output of the LAST layer."),
                (-0.5 * z.square().sum(1) + ld, "the normal's constant -log(2 pi) / 2 per dimension is missing."),
                (base + first, "only the first layer's log-determinant is there: sum them over every layer."),
            ]
            raise mismatch("5.4", "log p(x)", got, want, "for a small 2-D flow", slips, dims=("example",),
                           hint="run x through flow.layers one by one, adding each log-determinant; then add "
                                "log N(z; 0, I) at the end.")
    if not got.requires_grad:
        raise AssertionError(_no_grad_message("5.4", "log p(x)", "the flow's weights"))
    passed("the log-density by composition is right: the base density at z plus every layer's log-determinant")


# ----------------------------------------------------------------------------- 5.5 reverse KL

def _energy(x):
    return flows.double_well(x)


@graded("gencourse.flows.reverse_kl_loss")
def reverse_kl_loss(fn) -> None:
    """Exercise 5.5: mean over z of energy(x) + log q(x), x = flow^-1(z), log q(x) = log N(z) - log|det dx/dz|."""
    flow = _toy_flow().train()
    z = _randn(9, 2, seed=72)
    got = call("5.5", fn, flow, _energy, z)
    if not isinstance(got, torch.Tensor) or got.dim() != 0:
        raise AssertionError(f"Exercise 5.5: the loss should be one number (a 0-dim tensor: the mean over z), "
                             f"got {describe(got)}.")
    want = flows.reverse_kl_loss(flow, _energy, z)
    if not close(got, want, rtol=1e-4, atol=1e-4):
        with torch.no_grad():
            x, ld = flow.inverse_and_log_det(z)
            e, base = _energy(x), flows.standard_normal_log_prob(z)
            slips = [
                ((e + base + ld).mean(), "log q(x) = log N(z) MINUS log|det dx/dz|: the map from z to x spreads "
                                         "the density out where it stretches space."),
                ((e - base + ld).mean(), "the sign of log q is flipped: the loss is E[energy(x) + log q(x)], "
                                         "which is KL(q || p) up to the constant log Z."),
                ((e + flows.standard_normal_log_prob(x)).mean(),
                 "log q is evaluated at x with the base density; q is the FLOW's density: log N(z) - log|det "
                 "dx/dz| at the z that made x."),
                (e.mean(), "only the energy is there: without the entropy term log q, the flow collapses onto the "
                           "energy's minimum."),
                ((e + base - ld).sum(), "average over the samples, do not sum."),
                ((_energy(z) + base).mean(), "the energy is evaluated at z; evaluate it at x = flow^-1(z), the "
                                             "flow's sample."),
                ((_energy(z) + base - ld).mean(), "the energy is evaluated at z; evaluate it at x = flow^-1(z), "
                                                  "the flow's sample."),
            ]
            raise mismatch("5.5", "the loss", got, want, "for a small flow and 9 draws of z", slips,
                           hint="x, log|det dx/dz| = flow.inverse_and_log_det(z); log q(x) = log N(z) - that.")
    if not got.requires_grad:
        raise AssertionError(_no_grad_message("5.5", "the loss", "the flow's weights"))
    grads = gradients("the gradient of the loss with respect to the flow's weights", got, list(flow.parameters()))
    wants = torch.autograd.grad(flows.reverse_kl_loss(flow, _energy, z), list(flow.parameters()), allow_unused=True)
    if not all((g is None and w is None) or (g is not None and w is not None and close(g, w, 1e-3, 1e-4))
               for g, w in zip(grads, wants)):
        raise AssertionError("Exercise 5.5: the loss has the right value, but its gradient differs from the "
                             "reference's: do not detach x or the log-determinant; both must train the flow.")
    passed("the reverse-KL loss is right: it trains a flow from an energy alone, with no samples of the target")
