"""Shared test set-up: a headless matplotlib in this process, the fast profile unless told otherwise, one thread.

The backend is chosen with matplotlib.use, not MPLBACKEND: notebook kernels that nbval starts inherit the
environment, and they must keep the inline backend so that figures are displayed as in the stored outputs.
"""

import os

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
os.environ.setdefault("GENCOURSE_PROFILE", "fast")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine two threads per process
    slow every step severalfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
