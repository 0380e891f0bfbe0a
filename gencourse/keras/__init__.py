"""Keras 3 versions of the course's models, on the torch backend (no TensorFlow).

Import a family's module (e.g. `from gencourse.keras import autoregressive`) only in a
lab's Keras section: importing this package sets KERAS_BACKEND=torch before keras loads,
and refuses to go on if keras was already imported with another backend.
"""

import os
import sys

if "keras" in sys.modules and sys.modules["keras"].backend.backend() != "torch":
    raise ImportError(
        "keras was imported with the %r backend; restart the kernel and import gencourse.keras first"
        % sys.modules["keras"].backend.backend())
os.environ["KERAS_BACKEND"] = "torch"


def apply_gradients(optimizer, loss, weights: list) -> None:
    """Backpropagate `loss` and let a Keras optimizer update `weights` (only those) with their
    torch gradients: the core of a torch-style custom `train_step` (lab 02)."""
    import torch

    loss.backward()
    with torch.no_grad():
        optimizer.apply([w.value.grad for w in weights], weights)


def torch_update(model, loss) -> dict:
    """The end of a torch-style custom `train_step` (after `model.zero_grad()` and the forward pass):
    backpropagate `loss`, let the Keras optimizer apply the gradients, and track the mean loss.

    The model needs a `loss_tracker` (a keras.metrics.Mean) listed in its `metrics`.
    """
    apply_gradients(model.optimizer, loss, model.trainable_weights)
    model.loss_tracker.update_state(loss)
    return {"loss": model.loss_tracker.result()}


def tracked(model, terms: dict) -> dict:
    """The end of a custom `test_step`: track the mean of terms["loss"], so that `evaluate()`
    reports the loss averaged over batches, as `fit()` does."""
    model.loss_tracker.update_state(terms["loss"])
    return {"loss": model.loss_tracker.result()}
