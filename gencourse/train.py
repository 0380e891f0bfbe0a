"""One training loop for every family: `fit(model, data, config)`.

Introduced in lab 00. Like minGPT's trainer, the loop knows nothing about any
model: a model answers `loss(batch) -> dict` (key "loss" plus named parts),
and a model whose update is not one loss (the GAN) overrides
`training_step(batch, optimizers) -> dict` and may say which optimisers it
needs with `configure_optimizers(config)`. EMA of the weights (Polyak
averaging, used by diffusion models) and gradient clipping are options.
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from dataclasses import dataclass

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

from . import validate


@dataclass
class TrainConfig:
    steps: int = 1000                 # optimiser steps (not epochs): the same budget on any data size
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0         # AdamW's decoupled weight decay
    grad_clip: float | None = 1.0     # clip the global gradient norm; None to switch off
    ema_decay: float | None = None    # e.g. 0.999: keep an average of the weights, loaded at the end
    seed: int = 0                     # shuffling order (the model's init is seeded by the caller)
    eval_every: int = 0               # every this many steps, average the loss on val_data (0: never)
    eval_batches: int = 10            # how many batches of val_data that average uses
    warmup: int = 0                   # linear learning-rate warm-up steps, then cosine decay to lr/10
    checkpoint: str | None = None     # save the final weights here (a .pt path)
    progress: bool = True             # show a tqdm progress bar


class History:
    """What training recorded: per-step values by name, plus evaluation values by name."""

    def __init__(self):
        self.values: dict[str, list[float]] = defaultdict(list)
        self.eval_steps: list[int] = []

    def log(self, values: dict[str, float]) -> None:
        for k, v in values.items():
            self.values[k].append(v)

    def __getitem__(self, key: str) -> list[float]:
        if key not in self.values:
            raise KeyError(f"history has no {key!r}; it has {sorted(self.values)}")
        return self.values[key]

    def final(self, key: str = "loss", last: int = 50) -> float:
        """Mean of the last `last` recorded values of `key` (a steadier number than the last step)."""
        validate.positive_int("last", last)
        v = self[key][-last:]
        return sum(v) / len(v)

    def plot(self, keys=None, ax=None, smooth: int = 20, title: str | None = "training"):
        """Loss curves of the recorded series (default: every per-step series)."""
        from .plot import loss_curves

        keys = keys or [k for k in self.values if not k.startswith("val_")]
        per_step = [k for k in keys if not k.startswith("val_")]  # validation series have their own x: eval_steps
        fig = loss_curves({k: self[k] for k in per_step}, ax=ax, smooth=smooth, title=title)
        ax = fig.axes[0] if ax is None else ax
        for k in self.values:
            if k.startswith("val_") and (k in keys or k[4:] in keys):
                ax.plot(self.eval_steps, self.values[k], "o-", label=k)
        ax.legend()
        return fig

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={self.final(k, 1):.4g}" for k in self.values)
        return f"History({parts})"


def unpack(batch):
    """A batch as (x, y): y is None for unlabelled data (lab 00)."""
    if isinstance(batch, (list, tuple)):
        return (batch[0], batch[1] if len(batch) > 1 else None)
    return batch, None


def as_dataset(data) -> Dataset:
    """Accept a Dataset, or a tensor whose first axis indexes examples."""
    if isinstance(data, torch.Tensor):
        return TensorDataset(data)
    if isinstance(data, Dataset):
        return data
    raise TypeError(f"data must be a torch Dataset or a tensor of examples, got {type(data).__name__}")


def batches(data, batch_size: int, seed: int):
    """Endless shuffled batches (the order fixed by `seed`); single tensors come unwrapped."""
    dataset = as_dataset(data)
    if len(dataset) == 0:
        raise ValueError("data is empty")
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) >= batch_size,
                        generator=torch.Generator().manual_seed(seed))
    while True:
        for batch in loader:
            yield batch[0] if isinstance(batch, (list, tuple)) and len(batch) == 1 else batch


def to_device(batch, device):
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(b, device) for b in batch)
    return batch.to(device)


def step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, grad_clip: float | None) -> None:
    """Backpropagate one loss and update with one optimiser, clipping its parameters' gradients."""
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    if grad_clip:
        params = [p for group in optimizer.param_groups for p in group["params"]]
        torch.nn.utils.clip_grad_norm_(params, grad_clip)
    optimizer.step()


def _checked_loss(model, batch) -> dict[str, torch.Tensor]:
    out = model.loss(batch)
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"{type(model).__name__}.loss(batch) must return a dict with key 'loss', got {type(out).__name__}")
    if out["loss"].dim() != 0:
        raise ValueError(f"{type(model).__name__}.loss(batch)['loss'] must be a scalar, got shape {tuple(out['loss'].shape)}")
    if not torch.isfinite(out["loss"]):
        raise FloatingPointError("the loss became NaN or infinite: try a smaller learning rate or gradient clipping")
    return out


class EMA:
    """An exponential moving average of a model's floating-point weights and buffers."""

    def __init__(self, model: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        for k, v in model.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v, 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def load_into(self, model: torch.nn.Module) -> None:
        model.load_state_dict(self.shadow)


def _lr_factor(i: int, config: TrainConfig) -> float:
    if config.warmup and i < config.warmup:
        return (i + 1) / config.warmup
    if not config.warmup:
        return 1.0
    progress = (i - config.warmup) / max(1, config.steps - config.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


@torch.no_grad()
def evaluate_loss(model, data, batch_size: int, max_batches: int) -> dict[str, float]:
    """Average of model.loss over up to `max_batches` batches of `data`, in a fixed order."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    loader = DataLoader(as_dataset(data), batch_size=batch_size, shuffle=False)
    totals: dict[str, float] = defaultdict(float)
    n = 0
    for i, batch in enumerate(loader):
        if i == max_batches:
            break
        batch = batch[0] if isinstance(batch, (list, tuple)) and len(batch) == 1 else batch
        for k, v in _checked_loss(model, to_device(batch, device)).items():
            totals[k] += float(v)
        n += 1
    model.train(was_training)
    return {k: v / n for k, v in totals.items()}


def fit(model: torch.nn.Module, data, config: TrainConfig | None = None, val_data=None) -> History:
    """Train `model` on `data` for config.steps steps; return the History (lab 00).

    data: a Dataset or a tensor of examples; batches go to the model's device.
    With config.ema_decay, the averaged weights are loaded into the model at the end.
    """
    config = config or TrainConfig()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a gencourse.train.TrainConfig, got {type(config).__name__}")
    validate.positive_int("config.steps", config.steps)
    validate.positive_int("config.batch_size", config.batch_size)
    if config.grad_clip is not None and config.grad_clip < 0:  # a negative norm would flip the gradients
        raise ValueError(f"config.grad_clip must be a positive number or None, got {config.grad_clip}")
    if not isinstance(model, torch.nn.Module) or not (hasattr(model, "loss") or hasattr(model, "training_step")):
        raise TypeError("model must be an nn.Module with loss(batch) -> dict or training_step(batch, optimizers)")
    device = next(model.parameters()).device
    if hasattr(model, "configure_optimizers"):
        optimizers = list(model.configure_optimizers(config))
    else:
        optimizers = [torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)]
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda i: _lr_factor(i, config)) for o in optimizers]
    ema = EMA(model, config.ema_decay) if config.ema_decay else None
    history = History()
    stream = batches(data, config.batch_size, config.seed)
    model.train()
    bar = tqdm(range(config.steps), disable=not config.progress, mininterval=0.5)
    for i in bar:
        batch = to_device(next(stream), device)
        if hasattr(model, "training_step"):
            logs = model.training_step(batch, optimizers)
            if not isinstance(logs, dict) or "loss" not in logs:
                raise TypeError(f"{type(model).__name__}.training_step(batch, optimizers) must return a dict "
                                f"with key 'loss', got {type(logs).__name__}")
            # plain floats: tensors would keep their graphs alive in History
            logs = {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in logs.items()}
        else:
            out = _checked_loss(model, batch)
            step(out["loss"], optimizers[0], config.grad_clip)
            logs = {k: float(v.detach()) for k, v in out.items()}
        for s in schedulers:
            s.step()
        if ema:
            ema.update(model)
        history.log(logs)
        if val_data is not None and config.eval_every and ((i + 1) % config.eval_every == 0 or i + 1 == config.steps):
            history.eval_steps.append(i + 1)
            history.log({f"val_{k}": v for k, v in evaluate_loss(model, val_data, config.batch_size, config.eval_batches).items()})
        if i % 10 == 0 or i + 1 == config.steps:
            bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
    if ema:
        ema.load_into(model)
    model.eval()
    if config.checkpoint:
        save(model, config.checkpoint)
    return history


def save(model: torch.nn.Module, path: str) -> None:
    """Save the model's weights (a state dict) to `path`."""
    torch.save(model.state_dict(), path)


def load(model: torch.nn.Module, path: str) -> torch.nn.Module:
    """Load weights saved by `save` into `model`, with weights_only=True (no code runs from the file)."""
    state = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
    model.load_state_dict(state)
    return model
