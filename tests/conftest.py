"""Shared test set-up: a headless matplotlib and the fast profile unless told otherwise."""

import os

os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("GENCOURSE_PROFILE", "fast")
