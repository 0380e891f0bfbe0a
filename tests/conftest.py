"""Shared test set-up: a headless matplotlib in this process and the fast profile unless told otherwise.

The backend is chosen with matplotlib.use, not MPLBACKEND: notebook kernels that nbval starts inherit the
environment, and they must keep the inline backend so that figures are displayed as in the stored outputs.
"""

import os

import matplotlib

matplotlib.use("Agg")
os.environ.setdefault("GENCOURSE_PROFILE", "fast")
