"""Argument checks shared by every module: clear errors that name the argument.

A learner who passes the wrong thing should read what was wrong and what was
expected, never get a silent wrong answer or a traceback from deep in torch.
"""

from __future__ import annotations

import torch


def tensor(name: str, x, *, ndim: int | tuple[int, ...] | None = None, dtype: str | None = None,
           low: float | None = None, high: float | None = None, shape: tuple | None = None) -> torch.Tensor:
    """Check that `x` is a tensor of the expected rank, kind and range; return it.

    dtype is 'float' (any floating dtype), 'int' (any integer dtype) or None.
    shape may hold None for free sizes, e.g. (None, 1, 8, 8).
    """
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if x.dim() not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {tuple(x.shape)}")
    if shape is not None:
        ok = x.dim() == len(shape) and all(s is None or s == d for s, d in zip(shape, x.shape))
        if not ok:
            want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
            raise ValueError(f"{name} must have shape {want}, got {tuple(x.shape)}")
    if dtype == "float" and not x.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got {x.dtype}")
    if dtype == "int" and (x.is_floating_point() or x.is_complex() or x.dtype == torch.bool):
        raise TypeError(f"{name} must be an integer tensor (e.g. torch.long), got {x.dtype}")
    if x.numel() and (low is not None or high is not None):
        if x.is_floating_point() and not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = x.min().item(), x.max().item()
        if (low is not None and lo < low) or (high is not None and hi > high):
            raise ValueError(f"{name} must lie in [{low}, {high}], got values in [{lo:.4g}, {hi:.4g}]")
    return x


def instance(name: str, value, cls: type):
    """Check that `value` is a `cls` (e.g. a model's config dataclass); return it."""
    if not isinstance(value, cls):
        raise TypeError(f"{name} must be a {cls.__module__}.{cls.__name__}, got {type(value).__name__}")
    return value


def positive_int(name: str, value) -> int:
    """Check that `value` is an int >= 1; return it."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1:
        raise ValueError(f"{name} must be at least 1, got {value}")
    return value


def choice(name: str, value, options) -> str:
    """Check that `value` is one of `options`; return it."""
    if value not in options:
        raise ValueError(f"{name} must be one of {sorted(options)}, got {value!r}")
    return value
