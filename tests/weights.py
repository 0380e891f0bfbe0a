"""Small helpers shared by the families' unit tests: seeded generators and snapshots of weights."""

import torch


def gen(seed: int = 0) -> torch.Generator:
    """A CPU generator of its own, seeded."""
    return torch.Generator().manual_seed(seed)


def snapshot(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of every parameter, by name."""
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def same(a: dict, b: dict) -> bool:
    """Two snapshots hold equal tensors under every name of the first."""
    return all(torch.equal(a[k], b[k]) for k in a)
