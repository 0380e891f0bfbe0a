"""The shared helpers of gencourse.checks, and the checks of lab 00: they pass on the reference,
fail on a stub, and name each typical mistake with its own message."""

from __future__ import annotations

import math
import re

import pytest
import torch

from gencourse import baselines
from gencourse.checks import close, first_difference, mismatch, position, recognise
from gencourse.checks import toolkit as checks


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

def stub(*args):
    raise NotImplementedError("Exercise 0.k: ...")


@pytest.mark.parametrize("check, reference, k", [
    (checks.pixel_probabilities, baselines.pixel_probabilities, 1),
    (checks.bernoulli_nll, baselines.bernoulli_nll, 2),
])
def test_reference_passes_stub_fails_random_state_untouched(check, reference, k, capsys):
    torch.manual_seed(1234)
    before = torch.get_rng_state()
    check(reference)
    assert torch.equal(torch.get_rng_state(), before)
    out = capsys.readouterr().out
    assert out.startswith("\u2713") and out.count("\n") == 1
    with pytest.raises(AssertionError, match=rf"Exercise 0\.{k} is not done yet"):
        check(stub)


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
