"""The grader's pytest plugin replaces a private method of nbval: fail loudly if nbval changed it."""

import inspect
from importlib.metadata import version

from nbval.kernel import RunningKernel

from gencourse.course import grade_plugin

# What gencourse/course/grade_plugin.py was written against (nbval 0.11.0): the method it
# replaces, and the ones its replacement calls.
WRITTEN_FOR = {
    "await_reply": "(self, msg_id, timeout=None)",
    "get_message": "(self, stream, timeout=None)",
    "is_alive": "(self)",
}


def test_nbval_kernel_api_the_grade_plugin_patches_is_unchanged():
    nbval = version("nbval")
    for name, expected in WRITTEN_FOR.items():
        method = getattr(RunningKernel, name, None)
        assert method is not None, (
            f"nbval {nbval} has no RunningKernel.{name}, which gencourse/course/grade_plugin.py "
            f"patches or calls: review that plugin before widening the nbval pin in pyproject.toml")
        found = str(inspect.signature(method))
        assert found == expected, (
            f"nbval {nbval} changed RunningKernel.{name}{expected} to {name}{found}: review "
            f"gencourse/course/grade_plugin.py before widening the nbval pin in pyproject.toml")
    assert str(inspect.signature(grade_plugin.await_reply)) == WRITTEN_FOR["await_reply"], (
        "grade_plugin.await_reply must keep the signature of the nbval method it replaces")
