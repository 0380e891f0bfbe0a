"""Keras 3 versions of the course's models, on the torch backend (no TensorFlow).

Import a family's module (e.g. `from gencourse.keras import autoregressive`) only in a
lab's Keras section: importing this package sets KERAS_BACKEND=torch before keras loads,
and refuses to go on if keras was already imported with another backend.
"""

import os
import sys

if "keras" in sys.modules and os.environ.get("KERAS_BACKEND", "torch") != "torch":
    raise ImportError(
        "keras was imported with KERAS_BACKEND=%r; restart the kernel and import gencourse.keras first"
        % os.environ.get("KERAS_BACKEND"))
os.environ["KERAS_BACKEND"] = "torch"
