"""Graded checks, one module per lab (gencourse.checks.<lab>.<check>).

A check prints one short line when the learner's code is right, and raises
AssertionError with a message that says what is wrong and where to look when
it is not, including when the exercise still raises NotImplementedError.
Checks compare with the package's reference under a fixed seed, with numeric
tolerances, never exact strings.
"""

from __future__ import annotations

import torch


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
