"""The checks of lab 05 pass on correct answers and on the package's references, and fail on stubs and on
typical slips, each with its own message."""

from __future__ import annotations

import math

import pytest
from checks_contract import fails_untouched, passes_quietly
import torch

from gencourse import flows
from gencourse.checks import flows as checks

LOG_2PI = math.log(2 * math.pi)

# ----------------------------------------------------------------------------- references (what a learner writes)
# Written independently of gencourse.flows: other but equivalent formulas, so that the checks' tolerances are
# exercised as well as their logic.


def _normal(z):
    """log N(z; 0, I) per example, flattened: (B, ...) -> (B,)."""
    return (-0.5 * z ** 2 - 0.5 * LOG_2PI).reshape(len(z), -1).sum(-1)


def affine_log_prob(x, a, b):
    z = a * x + b
    return (-0.5 * (z ** 2 + LOG_2PI) + torch.log(torch.abs(a))).sum(dim=1)


def _coupling(x, mask, st, reverse=False, *, ld_all=False, shift_first=False, raw_scale=False, swap=False,
              ld_sign=1, undo_order=False, reverse_ld_sign=1, scalar=False, detach=False):
    """affine_coupling, with switches for the usual slips."""
    s, t = st(mask * x)
    keep, free = (1 - mask, mask) if swap else (mask, 1 - mask)
    if reverse:
        if undo_order:
            changed = x * torch.exp(-s) - t
        else:
            changed = (x - t) / (s if raw_scale else torch.exp(s))
        y, ld = keep * x + free * changed, -reverse_ld_sign * ((s if ld_all else free * s).sum(1))
    else:
        if shift_first:
            changed = (x + t) * torch.exp(s)
        else:
            changed = x * (s if raw_scale else torch.exp(s)) + t
        y, ld = keep * x + free * changed, ld_sign * (s if ld_all else free * s).sum(1)
    if scalar:
        ld = ld.sum()
    if detach:
        y = y.detach()
    return y, ld


def affine_coupling(x, mask, st, reverse=False):
    return _coupling(x, mask, st, reverse)


def actnorm_init(x, eps=1e-6):
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dim=dims)
    std = x.std(dim=dims, unbiased=True)
    return -mean, -torch.log(std + eps)


def log_prob(flow, x):
    total = 0.0
    for layer in flow.layers:
        x, ld = layer(x)
        total = total + ld
    return _normal(x) + total


def reverse_kl_loss(flow, energy, z):
    x, log_det = flow.inverse_and_log_det(z)
    log_q = _normal(z) - log_det
    return torch.mean(energy(x) + log_q)


REFERENCES = {
    checks.affine_log_prob: affine_log_prob,
    checks.affine_coupling: affine_coupling,
    checks.actnorm_init: actnorm_init,
    checks.log_prob: log_prob,
    checks.reverse_kl_loss: reverse_kl_loss,
}


@pytest.mark.parametrize("check, fn", REFERENCES.items(), ids=lambda v: getattr(v, "__name__", ""))
def test_check_passes_on_a_correct_answer(check, fn, capsys):
    passes_quietly(check, fn, capsys)


@pytest.mark.parametrize("check, k", [(checks.affine_log_prob, 1), (checks.affine_coupling, 2),
                                      (checks.actnorm_init, 3), (checks.log_prob, 4), (checks.reverse_kl_loss, 5)])
def test_check_fails_on_an_untouched_exercise(check, k):
    fails_untouched(check, f"5.{k}")


@pytest.mark.parametrize("check, fn", [
    (checks.affine_log_prob, flows.affine_log_prob), (checks.affine_coupling, flows.affine_coupling),
    (checks.actnorm_init, flows.actnorm_init), (checks.log_prob, flows.log_prob),
    (checks.reverse_kl_loss, flows.reverse_kl_loss),
], ids=lambda v: getattr(v, "__name__", ""))
def test_the_packages_own_functions_pass_their_checks(check, fn, capsys):
    passes_quietly(check, fn, capsys)


# ----------------------------------------------------------------------------- other correct formulas

def _affine_with_distributions(x, a, b):
    """torch.distributions.Normal for the base, log|a| summed separately."""
    base = torch.distributions.Normal(torch.zeros(()), torch.ones(()))
    return base.log_prob(a * x + b).sum(-1) + a.abs().log().sum()


def _coupling_with_where(x, mask, st, reverse=False):
    """Both directions computed, torch.where picking one; the log-determinant by einsum."""
    s, t = st(x * mask)
    s = s * (1 - mask)
    t = t * (1 - mask)
    forward, backward = x * s.exp() + t, (x - t) * (-s).exp()
    y = torch.where(torch.tensor(reverse), backward, forward)
    sign = -1.0 if reverse else 1.0
    return y, sign * torch.einsum("bd->b", s)


def _actnorm_with_biased_std(x, eps=1e-6):
    """The spread of the batch itself (Glow's code): the mean of the squared deviations, no Bessel correction."""
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dim=dims, keepdim=True)
    std = (x - mean).square().mean(dim=dims).sqrt()
    return -mean.flatten(), -torch.log(std + eps)


def _actnorm_by_permute(x, eps=1e-6):
    """Channel last, then one row per channel; var_mean with its default unbiased estimate."""
    rows = x.movedim(1, -1).reshape(-1, x.shape[1])
    var, mean = torch.var_mean(rows, dim=0)
    return -mean, -(var.sqrt() + eps).log()


def _log_prob_by_forward(flow, x):
    z, ld = flow(x)
    return flows.standard_normal_log_prob(z) + ld


def _log_prob_with_distributions(flow, x):
    lds = []
    for layer in flow.layers:
        x, ld = layer.forward(x)
        lds.append(ld)
    base = torch.distributions.MultivariateNormal(torch.zeros(x.shape[1]), torch.eye(x.shape[1]))
    return base.log_prob(x) + torch.stack(lds).sum(0)


def _reverse_kl_by_layers(flow, energy, z):
    """Runs the layers backwards by hand."""
    x, log_det = z, torch.zeros(len(z))
    for layer in reversed(flow.layers):
        x, ld = layer.inverse(x)
        log_det = log_det + ld
    return (energy(x) + flows.standard_normal_log_prob(z) - log_det).sum() / len(z)


@pytest.mark.parametrize("check, fn", [
    (checks.affine_log_prob, _affine_with_distributions),
    (checks.affine_coupling, _coupling_with_where),
    (checks.actnorm_init, _actnorm_with_biased_std),
    (checks.actnorm_init, _actnorm_by_permute),
    (checks.log_prob, _log_prob_by_forward),
    (checks.log_prob, _log_prob_with_distributions),
    (checks.reverse_kl_loss, _reverse_kl_by_layers),
], ids=lambda v: getattr(v, "__name__", ""))
def test_checks_accept_other_correct_formulas(check, fn, capsys):
    passes_quietly(check, fn, capsys)


# ----------------------------------------------------------------------------- typical slips, one message each

def _fails(check, fn, match):
    with pytest.raises(AssertionError, match=match):
        check(fn)


def _base(x, a, b):
    z = a * x + b
    return -0.5 * (z ** 2 + LOG_2PI)


@pytest.mark.parametrize("fn, match", [
    (lambda x, a, b: _base(x, a, b).sum(1), "the log-determinant is missing"),
    (lambda x, a, b: (_base(x, a, b) - a.abs().log()).sum(1), "the sign of log|a| is flipped"),
    (lambda x, a, b: (-0.5 * (((x - b) / a) ** 2 + LOG_2PI) + a.abs().log()).sum(1),
     r"z = a \* x \+ b here \(the map goes from x to z\)"),
    (lambda x, a, b: (-0.5 * (a * x + b) ** 2 + a.abs().log()).sum(1), r"constant -log\(2 pi\) / 2 per dimension"),
    (lambda x, a, b: (_base(x, a, b) + torch.log(a)).sum(1), r"take the log of \|a\|: a can be negative"),
    (lambda x, a, b: _base(x, a, b) + a.abs().log(), r"one value per dimension, shape \(6, 3\).*SUM: shape \(6,\)"),
    (lambda x, a, b: affine_log_prob(x, a, b).sum(), r"log p\(x\) should have shape \(6,\), got \(\)"),
    (lambda x, a, b: affine_log_prob(x, a, b).detach(), "right value, but carries no gradient from a and b"),
    (lambda x, a, b: affine_log_prob(x, a.detach(), b), "carries no gradient from a and b"),
    (lambda x, a, b: 1.1 * affine_log_prob(x, a, b), r"at position \(example \d\) of log p\(x\)"),
])
def test_affine_log_prob_slips(fn, match):
    _fails(checks.affine_log_prob, fn, match)


@pytest.mark.parametrize("fn, match", [
    (lambda *a, **k: _coupling(*a, **k, ld_all=True), "the log-determinant sums s over EVERY dimension"),
    (lambda *a, **k: _coupling(*a, **k, shift_first=True), "scale first, then shift"),
    (lambda *a, **k: _coupling(*a, **k, raw_scale=True), r"the scale is exp\(s\), not s"),
    (lambda *a, **k: _coupling(*a, **k, swap=True), "the mask marks the dimensions that pass UNCHANGED"),
    (lambda *a, **k: _coupling(*a, **k, ld_sign=-1), "the sign of the log-determinant is flipped"),
    (lambda *a, **k: _coupling(*a, **k, undo_order=True), "undo the two operations in reverse order"),
    (lambda *a, **k: _coupling(*a, **k, reverse_ld_sign=-1), "the inverse's log-determinant is minus the forward's"),
    (lambda *a, **k: _coupling(*a, **k, scalar=True), r"log_det is one number; return one per example, shape \(5,\)"),
    (lambda *a, **k: _coupling(*a, **k)[0], r"return a pair \(the output, log_det\), got \(5, 4\)"),
    (lambda *a, **k: list(_coupling(*a, **k)), r"return a pair \(the output, log_det\), got list"),
    (lambda *a, **k: _coupling(*a, **k, detach=True), "right value, but carries no gradient from x and the network"),
    (lambda *a, **k: (lambda y, ld: (y, ld[:, None]))(*_coupling(*a, **k)),
     r"log_det should have shape \(5,\), got \(5, 1\)"),
    (lambda *a, **k: (lambda y, ld: (1.1 * y, ld))(*_coupling(*a, **k)),
     r"forward \(y from x\).*at position \(example \d, column \(the last is log_det\) \d\)"),
])
def test_affine_coupling_slips(fn, match):
    _fails(checks.affine_coupling, fn, match)


def _coupling_raw_scale_keeping_the_log_det(x, mask, st, reverse=False):
    """s for exp(s) in the map only, the log-determinant left as sum (1 - mask) s."""
    y, _ = _coupling(x, mask, st, reverse, raw_scale=True)
    return y, _coupling(x, mask, st, reverse)[1]


def _coupling_raw_scale_with_its_log(x, mask, st, reverse=False):
    """s for exp(s) throughout: the log-determinant becomes sum (1 - mask) log|s|."""
    s, t = st(mask * x)
    return mask * x + (1 - mask) * (x * s + t), ((1 - mask) * s.abs().log()).sum(1)


def _coupling_roles_swapped_in_the_map_only(x, mask, st, reverse=False):
    """mask and 1 - mask swapped in the map, the log-determinant left as sum (1 - mask) s."""
    s, t = st(mask * x)
    return (1 - mask) * x + mask * (x * torch.exp(s) + t), ((1 - mask) * s).sum(1)


@pytest.mark.parametrize("fn, match", [
    (_coupling_raw_scale_keeping_the_log_det, r"the scale is exp\(s\), not s"),
    (_coupling_raw_scale_with_its_log, r"the scale is exp\(s\), not s"),
    (_coupling_roles_swapped_in_the_map_only, "the mask marks the dimensions that pass UNCHANGED"),
], ids=lambda v: getattr(v, "__name__", ""))
def test_the_coupling_check_names_a_slip_whatever_the_log_det(fn, match):
    _fails(checks.affine_coupling, fn, match)


def _stats(x):
    flat = x.transpose(0, 1).flatten(1)
    return flat.mean(1), flat.std(1)


@pytest.mark.parametrize("fn, match", [
    (lambda x: (lambda m, s: (m, -torch.log(s)))(*_stats(x)), "bias must CANCEL the mean"),
    (lambda x: (lambda m, s: (-m, torch.log(s)))(*_stats(x)), "log_scale must SHRINK the spread"),
    (lambda x: (lambda m, s: (-m, -s))(*_stats(x)), r"log_scale is a log: -log\(std\)"),
    (lambda x: (lambda m, s: (-m, -torch.log(s ** 2)))(*_stats(x)), "use the standard deviation, not the variance"),
    (lambda x: (-x.mean(0), -torch.log(x.std(0))) if x.dim() == 2 else
     (-x[:, :, 0, 0].mean(0), -torch.log(x[:, :, 0, 0].std(0))),
     r"over the batch AND every position \(H, W\)"),
    (lambda x: (-x.mean(0), -torch.log(x.std(0))), r"bias should have shape \(3,\), got \(3, 4, 4\)"),
    (lambda x: torch.stack(actnorm_init(x)), r"return a pair \(bias, log_scale\), got \(2, 3\)"),
    (lambda x: actnorm_init(x)[0], r"return a pair \(bias, log_scale\), got \(3,\)"),
    (lambda x: (lambda b, ls: (b, 1.1 * ls))(*actnorm_init(x)), r"for vectors \(B, C\): at position \[\d\]"),
])
def test_actnorm_init_slips(fn, match):
    _fails(checks.actnorm_init, fn, match)


def _log_prob(flow, x, *, with_ld=True, sign=1, base_at_x=False, constant=True, first_only=False):
    """log_prob, with switches for the usual slips."""
    x0, total = x, 0.0
    for i, layer in enumerate(flow.layers):
        x, ld = layer(x)
        if not first_only or i == 0:
            total = total + ld
    at = x0 if base_at_x else x
    base = _normal(at) if constant else -0.5 * (at ** 2).sum(1)
    return base + sign * total if with_ld else base


@pytest.mark.parametrize("fn, match", [
    (lambda f, x: _log_prob(f, x, with_ld=False), "the log-determinants are missing"),
    (lambda f, x: _log_prob(f, x, sign=-1), "the log-determinants enter with a plus sign"),
    (lambda f, x: _log_prob(f, x, base_at_x=True), "the base density is evaluated at x"),
    (lambda f, x: _log_prob(f, x, constant=False), r"constant -log\(2 pi\) / 2 per dimension is missing"),
    (lambda f, x: _log_prob(f, x, first_only=True), "only the first layer's log-determinant is there"),
    (lambda f, x: log_prob(f, x)[:, None], r"log p\(x\) should have shape \(7,\), got \(7, 1\)"),
    (lambda f, x: log_prob(f, x).mean(), r"log p\(x\) should have shape \(7,\), got \(\)"),
    (lambda f, x: log_prob(f, x).detach(), "right value, but carries no gradient from the flow's weights"),
    (lambda f, x: 1.1 * log_prob(f, x), r"for a small 2-D flow: at position \(example \d\) of log p\(x\)"),
])
def test_log_prob_slips(fn, match):
    _fails(checks.log_prob, fn, match)


def _kl(flow, energy, z, *, ld_sign=-1, base_sign=1, base_at_x=False, entropy=True, reduce="mean",
        energy_at_z=False, detach_x=False):
    """reverse_kl_loss, with switches for the usual slips."""
    x, ld = flow.inverse_and_log_det(z)
    if detach_x:
        x = x.detach()
    e = energy(z) if energy_at_z else energy(x)
    if base_at_x:
        log_q = _normal(x)
    else:
        log_q = base_sign * _normal(z) + ld_sign * ld
    terms = e + log_q if entropy else e
    return terms.sum() if reduce == "sum" else terms.mean() if reduce == "mean" else terms


@pytest.mark.parametrize("fn, match", [
    (lambda f, e, z: _kl(f, e, z, ld_sign=1), r"log q\(x\) = log N\(z\) MINUS log\|det dx/dz\|"),
    (lambda f, e, z: _kl(f, e, z, base_sign=-1, ld_sign=1), "the sign of log q is flipped"),
    (lambda f, e, z: _kl(f, e, z, base_at_x=True), "log q is evaluated at x with the base density"),
    (lambda f, e, z: _kl(f, e, z, entropy=False), "only the energy is there"),
    (lambda f, e, z: _kl(f, e, z, reduce="sum"), "average over the samples, do not sum"),
    (lambda f, e, z: (e(z) + _normal(z)).mean(), "the energy is evaluated at z"),
    (lambda f, e, z: _kl(f, e, z).detach(), "right value, but carries no gradient from the flow's weights"),
    (lambda f, e, z: _kl(f, e, z, detach_x=True), "its gradient differs from the reference's"),
    (lambda f, e, z: _kl(f, e, z, reduce="none"), r"the loss should be one number .* got \(9,\)"),
    (lambda f, e, z: _kl(f, e, z).item(), "the loss should be one number .* got float"),
    (lambda f, e, z: 1.1 * _kl(f, e, z), r"the loss is -?[\d.]+, expected -?[\d.]+ for a small flow and 9 draws"),
])
def test_reverse_kl_loss_slips(fn, match):
    _fails(checks.reverse_kl_loss, fn, match)


def test_the_reverse_kl_check_names_the_energy_at_z_with_the_log_det():
    _fails(checks.reverse_kl_loss, lambda f, e, z: _kl(f, e, z, energy_at_z=True), "the energy is evaluated at z")
