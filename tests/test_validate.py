"""Unit tests of gencourse.validate: every check raises with the argument's name."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gencourse import validate


# ----------------------------------------------------------------------------- tensor

def test_tensor_returns_the_same_object():
    x = torch.zeros(2, 3)
    assert validate.tensor("x", x, ndim=2, dtype="float", low=0, high=1, shape=(None, 3)) is x


@pytest.mark.parametrize("bad", [np.zeros((2, 2)), [1.0, 2.0], 3.0, None])
def test_tensor_type(bad):
    with pytest.raises(TypeError, match=r"my_arg must be a torch\.Tensor") as err:
        validate.tensor("my_arg", bad)
    assert type(bad).__name__ in str(err.value)


def test_tensor_ndim_int():
    with pytest.raises(ValueError, match=r"my_arg must have 4 dimensions, got shape \(2, 3\)"):
        validate.tensor("my_arg", torch.zeros(2, 3), ndim=4)


def test_tensor_ndim_tuple():
    validate.tensor("a", torch.zeros(2), ndim=(1, 2))
    validate.tensor("a", torch.zeros(2, 2), ndim=(1, 2))
    with pytest.raises(ValueError, match=r"my_arg must have 1 or 2 dimensions"):
        validate.tensor("my_arg", torch.zeros(2, 2, 2), ndim=(1, 2))


def test_tensor_shape_with_free_sizes():
    validate.tensor("x", torch.zeros(5, 1, 8, 8), shape=(None, 1, 8, 8))
    validate.tensor("x", torch.zeros(1, 1, 8, 8), shape=(None, 1, 8, 8))
    with pytest.raises(ValueError, match=r"imgs must have shape \(N, 1, 8, 8\), got \(5, 1, 8, 9\)"):
        validate.tensor("imgs", torch.zeros(5, 1, 8, 9), shape=(None, 1, 8, 8))


def test_tensor_shape_wrong_rank():
    # zip would silently stop at the shorter one: the rank must be checked too
    with pytest.raises(ValueError, match="imgs must have shape"):
        validate.tensor("imgs", torch.zeros(5, 1, 8), shape=(None, 1, 8, 8))
    with pytest.raises(ValueError, match="imgs must have shape"):
        validate.tensor("imgs", torch.zeros(5, 1, 8, 8, 1), shape=(None, 1, 8, 8))


@pytest.mark.parametrize("dt", [torch.long, torch.int32, torch.uint8, torch.bool])
def test_tensor_dtype_float(dt):
    with pytest.raises(TypeError, match="vals must be a floating-point tensor"):
        validate.tensor("vals", torch.zeros(3, dtype=dt), dtype="float")


@pytest.mark.parametrize("dt", [torch.float32, torch.float64, torch.float16, torch.bfloat16])
def test_tensor_dtype_float_accepts(dt):
    validate.tensor("vals", torch.zeros(3, dtype=dt), dtype="float")


@pytest.mark.parametrize("dt", [torch.float32, torch.float64, torch.bool, torch.complex64])
def test_tensor_dtype_int(dt):
    with pytest.raises(TypeError, match="ids must be an integer tensor"):
        validate.tensor("ids", torch.zeros(3, dtype=dt), dtype="int")


@pytest.mark.parametrize("dt", [torch.long, torch.int32, torch.int8, torch.uint8])
def test_tensor_dtype_int_accepts(dt):
    validate.tensor("ids", torch.zeros(3, dtype=dt), dtype="int")


def test_tensor_range_low_and_high():
    validate.tensor("p", torch.tensor([0.0, 0.5, 1.0]), low=0, high=1)  # the bounds are inclusive
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\], got values in \[-0\.5, 1\]"):
        validate.tensor("p", torch.tensor([-0.5, 1.0]), low=0, high=1)
    with pytest.raises(ValueError, match=r"p must lie in \[0, 1\], got values in \[0, 2\]"):
        validate.tensor("p", torch.tensor([0.0, 2.0]), low=0, high=1)


def test_tensor_range_one_sided():
    validate.tensor("p", torch.tensor([5.0, 100.0]), low=0)
    validate.tensor("p", torch.tensor([-100.0, 5.0]), high=5)
    with pytest.raises(ValueError, match=r"p must lie in \[0, None\]"):
        validate.tensor("p", torch.tensor([-1.0]), low=0)
    with pytest.raises(ValueError, match=r"p must lie in \[None, 5\]"):
        validate.tensor("p", torch.tensor([6.0]), high=5)


def test_tensor_range_integers():
    validate.tensor("y", torch.tensor([0, 10]), low=0, high=10)
    with pytest.raises(ValueError, match="y must lie in"):
        validate.tensor("y", torch.tensor([0, 11]), low=0, high=10)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_tensor_nan_and_inf(bad):
    with pytest.raises(ValueError, match="x contains NaN or infinite values"):
        validate.tensor("x", torch.tensor([0.5, bad]), low=0, high=1)


def test_tensor_empty_skips_range():
    validate.tensor("x", torch.zeros(0), low=0, high=1)


def test_tensor_checks_order_type_before_value():
    # a wrong dtype must be reported as such, not as a range problem
    with pytest.raises(TypeError, match="x must be a floating-point tensor"):
        validate.tensor("x", torch.tensor([5]), dtype="float", low=0, high=1)


# ----------------------------------------------------------------------------- positive_int

@pytest.mark.parametrize("ok", [1, 2, 10**9])
def test_positive_int_ok(ok):
    assert validate.positive_int("n", ok) == ok


@pytest.mark.parametrize("bad", [1.0, "3", True, False, None, np.float64(2.0)])
def test_positive_int_type(bad):
    with pytest.raises(TypeError, match="count must be an int"):
        validate.positive_int("count", bad)


@pytest.mark.parametrize("bad", [0, -1, -100])
def test_positive_int_value(bad):
    with pytest.raises(ValueError, match=f"count must be at least 1, got {bad}"):
        validate.positive_int("count", bad)


# ----------------------------------------------------------------------------- choice

def test_choice_ok():
    assert validate.choice("mode", "b", ("a", "b")) == "b"
    assert validate.choice("mode", "digits", {"digits": 8, "mnist": 28}) == "digits"


def test_choice_bad():
    with pytest.raises(ValueError, match=r"mode must be one of \['a', 'b'\], got 'c'"):
        validate.choice("mode", "c", ("b", "a"))
