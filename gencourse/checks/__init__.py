"""Graded checks, one module per lab (gencourse.checks.<lab>.<check>).

A check prints one short line when the learner's code is right, and raises
AssertionError with a message that says what is wrong and where to look when
it is not, including when the exercise still raises NotImplementedError.
Checks compare with the package's reference under a fixed seed, with numeric
tolerances, never exact strings.

This module is the one place for what every check does:

    call, expect_tensor      run the learner's function, check what it returns
    close, first_difference  compare with the reference, within RTOL and ATOL
    recognise, mismatch      name the usual mistake ("slip"), else where the answer first differs
    seeded, fixed            inputs and models from their own seed, the learner's random state untouched
    passed                   the one line printed when the answer is right
    use                      the learner's function where it passes its check, else the package's reference
"""

from __future__ import annotations

import contextlib
import io
import math

import torch

RTOL, ATOL = 1e-4, 1e-5   # float32 arithmetic done in another order stays well within these


# ----------------------------------------------------------------------------- calling the learner's code

def call(exercise: str, fn, *args, **kwargs):
    """Call the learner's `fn`; turn "not written yet" and crashes into teaching messages."""
    if not callable(fn):
        raise AssertionError(f"Exercise {exercise}: expected a function, got {type(fn).__name__}; "
                             "run the cell that defines it first")
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise AssertionError(f"Exercise {exercise} is not done yet: {name} still raises NotImplementedError. "
                             "Replace the `raise NotImplementedError(...)` line with your code.") from None
    except Exception as err:
        raise AssertionError(f"Exercise {exercise}: {name} raised {type(err).__name__}: {err}") from None


def describe(value) -> str:
    """What a returned value is, for messages: its shape if a tensor, else its type."""
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def expect_tensor(exercise: str, what: str, value, shape: tuple) -> torch.Tensor:
    """Assert that `value` is a float tensor of `shape`."""
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"Exercise {exercise}: {what} should be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise AssertionError(f"Exercise {exercise}: {what} should have shape {tuple(shape)}, got {tuple(value.shape)}")
    if not value.is_floating_point():
        raise AssertionError(f"Exercise {exercise}: {what} should hold floats, got {value.dtype}")
    if not torch.isfinite(value).all():
        raise AssertionError(f"Exercise {exercise}: {what} contains NaN or infinite values")
    return value


def passed(message: str) -> None:
    print(f"\u2713 {message}")


# ----------------------------------------------------------------------------- fixed inputs, untouched random state

def seeded(seed: int) -> torch.Generator:
    """A generator of its own: checks draw their inputs from it, never from the global random state."""
    return torch.Generator().manual_seed(seed)


def fixed(build, seed: int = 0):
    """build() under torch.manual_seed(seed), without touching the learner's global random state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return build()


# ----------------------------------------------------------------------------- comparing with the reference

def _as_tensor(value) -> torch.Tensor | None:
    """A tensor for a tensor or a real number (float64 on the CPU, detached); None for anything else."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def close(got, want, rtol: float = RTOL, atol: float = ATOL) -> bool:
    """True when `got` has the shape of `want` and every entry lies within atol + rtol * |want|.

    Tensors and plain numbers both work; dtypes and devices may differ. NaN is never close.
    """
    a, b = _as_tensor(got), _as_tensor(want)
    if a is None or b is None or a.shape != b.shape:
        return False
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def first_difference(got, want) -> tuple[tuple[int, ...], float, float]:
    """Where `got` and `want` (same shape) differ most: (index, got there, want there).

    The index is a position in every dimension, e.g. (2, 5) for row 2, column 5; () for a number.
    A NaN in `got` counts as the largest difference.
    """
    a, b = _as_tensor(got), _as_tensor(want)
    if a is None or b is None or a.shape != b.shape:
        raise ValueError(f"first_difference needs two tensors of one shape, got {describe(got)} and {describe(want)}")
    if a.dim() == 0:
        return (), float(a), float(b)
    gap = (a - b).abs().nan_to_num(nan=math.inf)
    index = tuple(int(i) for i in torch.unravel_index(gap.argmax(), gap.shape))
    return index, float(a[index]), float(b[index])


def position(index: tuple, dims: tuple | None = None) -> str:
    """An index for messages: "[2, 5]", or with names for the dimensions "(row 2, column 5)"."""
    if dims:
        return "(" + ", ".join(f"{name} {i}" for name, i in zip(dims, index)) + ")"
    return "[" + ", ".join(str(i) for i in index) + "]"


def _number(x: float) -> str:
    return f"{x:.5g}"


# ----------------------------------------------------------------------------- saying what is wrong

def recognise(got, want, slips, rtol: float = RTOL, atol: float = ATOL) -> str | None:
    """The message of the first slip (value, message) that `got` matches while not matching `want`."""
    if close(got, want, rtol, atol):
        return None
    for value, message in slips:
        if close(got, value, rtol, atol):
            return message
    return None


def mismatch(exercise: str, what: str, got, want, where: str = "", slips=(), *, dims: tuple | None = None,
             hint: str = "", rtol: float = RTOL, atol: float = ATOL) -> AssertionError:
    """The AssertionError to raise when `got` (the learner's `what`) differs from the reference `want`.

    If `got` matches one of the slips, a (value, message) sequence, the message is
    "Exercise {exercise}: {message}". Otherwise it names the first difference: for a number,
    "{what} is ..., expected ..."; for a tensor, the position where it differs most (`dims` names
    the dimensions: "(row 2, column 5)", else "[2, 5]"). `where` says for which inputs, `hint`
    how to find the mistake.
    """
    message = recognise(got, want, slips, rtol, atol)
    if message is not None:
        return AssertionError(f"Exercise {exercise}: {message}")
    at = f" {where}" if where else ""
    tail = f" {hint}" if hint else ""
    a, b = _as_tensor(got), _as_tensor(want)
    if a is None or b is None or a.shape != b.shape:
        return AssertionError(f"Exercise {exercise}: {what}{at} should have shape {describe(want)}, "
                              f"got {describe(got)}.{tail}")
    index, g, w = first_difference(a, b)
    if not index:
        return AssertionError(f"Exercise {exercise}: {what} is {_number(g)}, expected {_number(w)}{at}.{tail}")
    return AssertionError(f"Exercise {exercise}: your answer differs from the reference{at}: at position "
                          f"{position(index, dims)} of {what} you give {_number(g)}, expected {_number(w)}.{tail}")


# ----------------------------------------------------------------------------- training with the learner's code

def use(check, mine, reference, what: str):
    """`mine` if it passes `check` (run silently), else `reference`; prints one line saying which.

    Labs train with the learner's function only once it is right: a wrong loss would waste the
    training run and hide the lesson. `what` names the function for the message, e.g. "generator loss".
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(mine)
    except AssertionError:
        target = getattr(reference, "func", reference)   # a functools.partial names its function
        module = getattr(target, "__module__", None) or "gencourse"
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__name__
        print(f"\u2717 your {what} does not pass its check yet, so the lab uses the package's reference: "
              f"{module}.{name}")
        return reference
    print(f"\u2713 from here on the lab uses your {what}")
    return mine
