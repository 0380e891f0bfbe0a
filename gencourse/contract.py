"""The family contract: what every generative model in the course answers (lab 00).

Every family's model is an `nn.Module` with
- `loss(batch) -> dict`: key "loss" (what `train.fit` minimises) plus its named
  parts ("recon", "kl", ...). A model with a likelihood also reports "nll",
  the negative log-likelihood (or its bound) in nats per example.
- `sample(n, *, generator=None, **condition) -> Tensor`: n examples in the
  data's own range ([0, 1] for images, token ids for text), drawn under
  `torch.no_grad()` in eval mode, the model's mode restored afterwards.
  Conditions are keywords (`y=labels`, `guidance=2.0`, `prompt=tokens`).
  A trajectory (every intermediate state) is a separate function of the
  family's module, never a flag that changes what `sample` returns.
- `likelihood`: "exact", "bound" or None; where not None,
  `log_prob(x) -> (N,)` in nats ("bound": a lower bound on log p(x)).
A model whose update is not one loss (the GAN) overrides
`training_step(batch, optimizers, config)` and `validation_step(batch)`, and
may average only one submodule's weights (`ema_module()`).

Keras models meet the same contract through Keras' own API: `train_step` and
`test_step` return {"loss": ...} from one `loss_terms(batch)` method (Keras
keeps `self.loss` for its compiled loss), and `sample` is the same.

`tests/test_contract.py` checks every model of every family against this.
"""

from __future__ import annotations

import functools
from contextlib import contextmanager
from typing import Protocol, runtime_checkable

import torch

from . import validate

LIKELIHOODS = ("exact", "bound", None)


@runtime_checkable
class GenerativeModel(Protocol):
    """The interface every family's model meets (see the module docstring)."""

    likelihood: str | None

    def loss(self, batch) -> dict[str, torch.Tensor]: ...

    def sample(self, n: int, *, generator: torch.Generator | None = None, **condition) -> torch.Tensor: ...


@contextmanager
def evaluating(model: torch.nn.Module):
    """Run a block in eval mode without gradients, then put the model back as it was (lab 00)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def sampler(method):
    """Decorate a model's `sample(self, n, *, generator=None, **condition)`: it checks n, and runs
    under `evaluating(self)` (no gradients, eval mode, the mode restored) (lab 00)."""

    @functools.wraps(method)
    def sample(self, n: int, *, generator: torch.Generator | None = None, **condition) -> torch.Tensor:
        validate.positive_int("n", n)
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
        with evaluating(self):
            return method(self, n, generator=generator, **condition)

    return sample
