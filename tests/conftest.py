"""Shared test set-up: headless matplotlib, the fast profile unless told otherwise, one thread,
every check replayed as the grader would judge it, and one build of the book per session (`book_build`).

The backend is chosen with matplotlib.use, not MPLBACKEND: notebook kernels that nbval starts inherit the
environment, and they must keep the inline backend so that figures are displayed as in the stored outputs.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import matplotlib
import pytest
import torch

matplotlib.use("Agg")
ROOT = Path(__file__).resolve().parents[1]
os.environ.setdefault("GENCOURSE_PROFILE", "fast")
# Every graded check replays its own record at once and fails if the grader would judge it otherwise
# (gencourse.checks.judge); notebook kernels that nbval starts inherit it too.
os.environ.setdefault("GENCOURSE_CHECK_SELFTEST", "1")


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine two threads per process
    slow every step severalfold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# -------------------------------------------------------------------------- the book, built once

BUILD_TIMEOUT = 1800  # seconds; a cold build takes a few minutes


def _jupyter_book():
    exe = Path(sys.executable).parent / ("jupyter-book.exe" if os.name == "nt" else "jupyter-book")
    return str(exe) if exe.exists() else shutil.which("jupyter-book")


@pytest.fixture(scope="session")
def book_build(tmp_path_factory):
    """(exit code, log, html folder) of one clean build of the whole book for the session.

    Runs `jupyter-book build <repo> --all -W -n --keep-going --path-output <tmp>` with the
    jupyter-book next to this Python, into a temporary folder (so it never touches `make book`'s
    _build/). tests/test_book.py reads the HTML; tests/test_browser.py opens it in Chromium.
    """
    exe = _jupyter_book()
    if exe is None:
        pytest.skip("jupyter-book is not installed next to this Python")
    out = tmp_path_factory.mktemp("book")
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    proc = subprocess.run(
        [exe, "build", str(ROOT), "--all", "-W", "-n", "--keep-going", "--path-output", str(out)],
        capture_output=True, text=True, timeout=BUILD_TIMEOUT, env=dict(os.environ, PATH=path))
    return proc.returncode, proc.stdout + "\n" + proc.stderr, out / "_build" / "html"
