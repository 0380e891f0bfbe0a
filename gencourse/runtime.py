"""Where the code runs and how reproducibly: device, seeds, profiles.

Introduced in lab 00 ("The toolkit"). Library code never reads these as
globals: models take their device from their tensors; labs call `device()`
once and move data and models there.
"""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch

PROFILES = ("fast", "full")


def device() -> torch.device:
    """The best available device: CUDA, then Apple's MPS, then the CPU (lab 00)."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch (CPU and CUDA); return a CPU generator with that seed (lab 00).

    Pass the returned generator to `sample(..., generator=g)` to make samples
    reproducible independently of everything else that draws random numbers.
    """
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**32:
        raise ValueError(f"seed must be in [0, 2**32), got {seed}")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)  # also seeds every CUDA device
    return torch.Generator().manual_seed(seed)


def profile() -> str:
    """'fast' (CPU, small models, offline data) or 'full' (GPU, MNIST-scale) (lab 00).

    The environment variable GENCOURSE_PROFILE overrides the choice; otherwise
    'full' when CUDA is present, else 'fast'.
    """
    chosen = os.environ.get("GENCOURSE_PROFILE", "").strip().lower()
    if chosen:
        if chosen not in PROFILES:
            raise ValueError(
                f"GENCOURSE_PROFILE must be one of {PROFILES}, got {chosen!r}; "
                "unset it to let gencourse choose from the hardware"
            )
        return chosen
    return "full" if torch.cuda.is_available() else "fast"


def in_colab() -> bool:
    """True when running inside Google Colab (lab 00)."""
    return "google.colab" in sys.modules or "COLAB_RELEASE_TAG" in os.environ


def cache_dir() -> str:
    """The one folder gencourse writes to: GENCOURSE_CACHE, else ~/.cache/gencourse."""
    path = os.environ.get("GENCOURSE_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "gencourse")
    os.makedirs(path, exist_ok=True)
    return path
