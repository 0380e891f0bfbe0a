"""One training loop for every family: `fit(model, data, config)`, and `fit_or_load`.

Introduced in lab 00. Like minGPT's trainer, the loop knows nothing about any
model: a model answers `loss(batch) -> dict` (key "loss" plus named parts; see
`gencourse.contract`). A model whose update is not one loss (the GAN) overrides
`training_step(batch, optimizers, config) -> dict`, says which optimisers it
needs with `configure_optimizers(config)`, is validated by its own
`validation_step(batch) -> dict`, and may average only one submodule's weights
(`ema_module()`). EMA of the weights (Polyak averaging, used by diffusion
models and GANs), learning-rate warm-up and decay, and gradient clipping are
options of `TrainConfig`. `fit_or_load` caches trained weights so that the
chapters and a rebuild of the book do not train twice.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import warnings
from collections import defaultdict
from dataclasses import asdict, dataclass, is_dataclass

import torch
from torch.utils.data import DataLoader, Dataset, TensorDataset
from tqdm.auto import tqdm

import gencourse

from . import runtime, validate
from .data import unpack

LR_SCHEDULES = ("cosine", "constant")


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
    warmup: int = 0                   # linear learning-rate warm-up over this many steps (0: none)
    schedule: str = "cosine"          # after warm-up: 'cosine' decay to lr/10, or 'constant'
    checkpoint: str | None = None     # save the final weights here (a .pt path)
    progress: bool = True             # show a tqdm progress bar

    @classmethod
    def fast(cls, **changes) -> "TrainConfig":
        """A CPU budget: 1000 steps of 64 examples (lab 00)."""
        return cls(**changes)

    @classmethod
    def full(cls, **changes) -> "TrainConfig":
        """A GPU budget: 10000 steps of 128 examples with a short warm-up (lab 00)."""
        return cls(**{**dict(steps=10_000, batch_size=128, warmup=200), **changes})


class History:
    """What training recorded: per-step values by name, evaluation values by name, and the time."""

    def __init__(self):
        self.values: dict[str, list[float]] = defaultdict(list)
        self.eval_steps: list[int] = []
        self.seconds = 0.0            # wall-clock time of training

    def state(self) -> dict:
        """Plain lists and numbers, for a cache file that loads with weights_only=True."""
        return {"values": dict(self.values), "eval_steps": list(self.eval_steps), "seconds": self.seconds}

    @classmethod
    def from_state(cls, state: dict) -> "History":
        history = cls()
        history.values.update(state["values"])
        history.eval_steps, history.seconds = list(state["eval_steps"]), float(state["seconds"])
        return history

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


def _checked(model, out, what: str) -> dict:
    """The dict a model's loss, training_step or validation_step returned, checked."""
    name = f"{type(model).__name__}.{what}"
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"{name} must return a dict with key 'loss', got {type(out).__name__}")
    loss = out["loss"]
    if isinstance(loss, torch.Tensor) and loss.dim() != 0:
        raise ValueError(f"{name}['loss'] must be a scalar, got shape {tuple(loss.shape)}")
    if not math.isfinite(float(loss.detach() if isinstance(loss, torch.Tensor) else loss)):
        raise FloatingPointError("the loss became NaN or infinite: try a smaller learning rate or gradient clipping")
    return out


def _floats(logs: dict) -> dict[str, float]:
    """Plain floats: tensors would keep their graphs alive in History."""
    return {k: float(v.detach()) if isinstance(v, torch.Tensor) else float(v) for k, v in logs.items()}


class EMA:
    """An exponential moving average of a module's floating-point weights and buffers."""

    def __init__(self, module: torch.nn.Module, decay: float):
        if not 0 < decay < 1:
            raise ValueError(f"ema_decay must lie in (0, 1), got {decay}")
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items()}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        for k, v in module.state_dict().items():
            if v.is_floating_point():
                self.shadow[k].lerp_(v, 1 - self.decay)
            else:
                self.shadow[k].copy_(v)

    def load_into(self, module: torch.nn.Module) -> None:
        module.load_state_dict(self.shadow)


def ema_module(model: torch.nn.Module) -> torch.nn.Module:
    """The part of a model whose weights the EMA averages: `model.ema_module()` if it says, else all of it."""
    return model.ema_module() if hasattr(model, "ema_module") else model


def lr_factor(i: int, config: TrainConfig) -> float:
    """The learning rate at step i as a fraction of config.lr: linear warm-up over config.warmup
    steps, then config.schedule ('cosine' decays to 1/10 by the last step) (lab 00)."""
    if i < config.warmup:
        return (i + 1) / config.warmup
    if config.schedule == "constant":
        return 1.0
    progress = (i - config.warmup) / max(1, config.steps - config.warmup)
    return 0.1 + 0.45 * (1 + math.cos(math.pi * progress))


def _validation_fn(model):
    """What scores a validation batch: the model's validation_step, else its loss, else None."""
    if hasattr(model, "validation_step"):
        return lambda batch: _checked(model, model.validation_step(batch), "validation_step(batch)")
    if hasattr(model, "loss"):
        return lambda batch: _checked(model, model.loss(batch), "loss(batch)")
    return None


@torch.no_grad()
def evaluate_loss(model, data, batch_size: int, max_batches: int) -> dict[str, float]:
    """Average of the model's validation values (`validation_step`, else `loss`) over up to
    `max_batches` batches of `data`, in a fixed order, in eval mode (lab 00)."""
    score = _validation_fn(model)
    if score is None:
        raise TypeError(f"{type(model).__name__} has neither validation_step(batch) nor loss(batch) to validate with")
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
        for k, v in _floats(score(to_device(batch, device))).items():
            totals[k] += v
        n += 1
    model.train(was_training)
    return {k: v / n for k, v in totals.items()}


def _check_fit_args(model, config) -> TrainConfig:
    config = config or TrainConfig()
    validate.instance("config", config, TrainConfig)
    validate.positive_int("config.steps", config.steps)
    validate.positive_int("config.batch_size", config.batch_size)
    validate.choice("config.schedule", config.schedule, LR_SCHEDULES)
    if isinstance(config.warmup, bool) or not isinstance(config.warmup, int) or config.warmup < 0:
        raise ValueError(f"config.warmup must be an int >= 0 (0: no warm-up), got {config.warmup!r}")
    if config.grad_clip is not None and config.grad_clip < 0:  # a negative norm would flip the gradients
        raise ValueError(f"config.grad_clip must be a positive number or None, got {config.grad_clip}")
    if not isinstance(model, torch.nn.Module) or not (hasattr(model, "loss") or hasattr(model, "training_step")):
        raise TypeError("model must be an nn.Module with loss(batch) -> dict "
                        "or training_step(batch, optimizers, config) -> dict")
    return config


def _train_step(model, batch, optimizers, config: TrainConfig) -> dict[str, float]:
    """One update: the model's own training_step, or one optimiser step on loss(batch)["loss"]."""
    if hasattr(model, "training_step"):
        return _floats(_checked(model, model.training_step(batch, optimizers, config),
                                "training_step(batch, optimizers, config)"))
    out = _checked(model, model.loss(batch), "loss(batch)")
    step(out["loss"], optimizers[0], config.grad_clip)
    return _floats(out)


def fit(model: torch.nn.Module, data, config: TrainConfig | None = None, val_data=None, hook=None) -> History:
    """Train `model` on `data` for config.steps steps; return the History (lab 00).

    data: a Dataset or a tensor of examples; batches go to the model's device.
    With val_data and config.eval_every, the model's validation values are
    recorded as "val_<name>". With config.ema_decay, the averaged weights (of
    `ema_module(model)`) are loaded into the model at the end. The one hook,
    `hook(step, model, logs)`, runs after every update (step counts from 1):
    chapter 3 uses it to take snapshots of a GAN during training.
    """
    if hook is not None and not callable(hook):
        raise TypeError(f"hook must be a function hook(step, model, logs) or None, got {type(hook).__name__}")
    config = _check_fit_args(model, config)
    score = _validation_fn(model)
    if val_data is not None and config.eval_every and score is None:
        warnings.warn(f"{type(model).__name__} has neither validation_step(batch) nor loss(batch): "
                      "val_data is not scored; define validation_step to validate it", stacklevel=2)
    validating = val_data is not None and config.eval_every and score is not None
    device = next(model.parameters()).device
    if hasattr(model, "configure_optimizers"):
        optimizers = list(model.configure_optimizers(config))
    else:
        optimizers = [torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)]
    schedulers = [torch.optim.lr_scheduler.LambdaLR(o, lambda i: lr_factor(i, config)) for o in optimizers]
    averaged = ema_module(model)
    ema = EMA(averaged, config.ema_decay) if config.ema_decay else None
    history = History()
    stream = batches(data, config.batch_size, config.seed)
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(config.steps), disable=not config.progress, mininterval=0.5)
    for i in bar:
        logs = _train_step(model, to_device(next(stream), device), optimizers, config)
        for s in schedulers:
            s.step()
        if ema:
            ema.update(averaged)
        history.log(logs)
        if hook is not None:
            hook(i + 1, model, logs)
        if validating and ((i + 1) % config.eval_every == 0 or i + 1 == config.steps):
            history.eval_steps.append(i + 1)
            values = evaluate_loss(model, val_data, config.batch_size, config.eval_batches)
            history.log({f"val_{k}": v for k, v in values.items()})
        if i % 10 == 0 or i + 1 == config.steps:
            bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)
    if ema:
        ema.load_into(averaged)
    model.eval()
    history.seconds = time.perf_counter() - start
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


# ----------------------------------------------------------------------------- train once, reuse everywhere

def _describe(value) -> object:
    """A JSON-able description of a config, tensor or data set, for the cache key."""
    if is_dataclass(value) and not isinstance(value, type):
        return {"type": type(value).__name__, **{k: _describe(v) for k, v in asdict(value).items()}}
    if isinstance(value, torch.Tensor):  # a fingerprint: shape, dtype, checksums of the values and their order
        flat = value.detach().double().flatten().cpu()
        weights = torch.linspace(0, 1, len(flat), dtype=torch.float64)
        return {"shape": list(value.shape), "dtype": str(value.dtype), "sum": round(float(flat.sum()), 6),
                "sq": round(float(flat.square().sum()), 6), "order": round(float((weights * flat).sum()), 6)}
    if hasattr(value, "tensors"):
        return [_describe(t) for t in value.tensors]
    if isinstance(value, (list, tuple)):
        return [_describe(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _describe(v) for k, v in value.items()}
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    fields = {k: _describe(v) for k, v in vars(value).items() if isinstance(v, (torch.Tensor, str, int, float))} \
        if hasattr(value, "__dict__") else {}
    return {"type": type(value).__name__, "len": len(value) if hasattr(value, "__len__") else None, **fields}


def cache_key(name: str, model: torch.nn.Module, data, config: TrainConfig, val_data=None) -> str:
    """What identifies a trained model: its name and config, the data, the training config (but
    not how it reports progress), the validation data, and the package version."""
    what_trains = {k: v for k, v in asdict(config).items() if k not in ("progress", "checkpoint")}
    described = {"name": name, "model": _describe(getattr(model, "config", type(model).__name__)),
                 "parameters": sum(p.numel() for p in model.parameters()), "data": _describe(data),
                 "train": _describe(what_trains), "val": _describe(val_data), "version": gencourse.__version__}
    return hashlib.sha256(json.dumps(described, sort_keys=True).encode()).hexdigest()[:16]


def fit_or_load(name: str, make_model, data, config: TrainConfig, val_data=None) -> tuple[torch.nn.Module, History]:
    """A trained model and its History: loaded from the cache folder when this name, model config,
    data, training config and package version were trained before, else trained by `fit` and saved
    (chapter 2). `make_model()` builds the untrained model (seed inside it for a reproducible init).

    The file lives in `runtime.cache_dir()/models` and loads with weights_only=True; an unreadable
    file is trained again. Chapters and the closing comparison share models through the name.
    """
    if not isinstance(name, str) or not name.strip(".") or not name.replace("-", "").replace("_", "").replace(
            ".", "").isalnum():
        raise ValueError(f"name must be a non-empty string of letters, digits, '-', '_' and '.', got {name!r}")
    if not callable(make_model) or isinstance(make_model, torch.nn.Module):
        raise TypeError("make_model must be a function that returns an untrained model, e.g. lambda: GPT(config), "
                        f"not {type(make_model).__name__}")
    model = make_model()
    config = _check_fit_args(model, config)
    folder = os.path.join(runtime.cache_dir(), "models")
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, f"{name}-{cache_key(name, model, data, config, val_data)}.pt")
    if os.path.exists(path):
        try:
            saved = torch.load(path, map_location=next(model.parameters()).device, weights_only=True)
            model.load_state_dict(saved["state"])
            return model.eval(), History.from_state(saved["history"])
        except Exception as err:  # a truncated or foreign file: train again
            warnings.warn(f"could not read the cached model {path} ({type(err).__name__}); training it again",
                          stacklevel=2)
    history = fit(model, data, config, val_data=val_data)
    torch.save({"state": model.state_dict(), "history": history.state()}, path + ".tmp")
    os.replace(path + ".tmp", path)  # never a half-written file under the final name
    return model, history
