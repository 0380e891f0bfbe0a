"""What every graded check must do, whatever its lab: used by the tests/test_checks_*.py files."""

import re

import pytest
import torch

from gencourse.checks import SEED_ENV


# Seed offsets a grading run may draw (GENCOURSE_CHECK_SEED): a right answer passes on any inputs.
GRADING_SEEDS = (0, 1_000_003, 2_147_483_000)


def passes_quietly(check, fn, capsys) -> None:
    """On a correct answer a check prints one line with a tick and leaves the learner's random state alone,
    on its own inputs and on the fresh inputs of any grading run."""
    for seed in GRADING_SEEDS:
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv(SEED_ENV, str(seed))
            torch.manual_seed(1234)
            before = torch.get_rng_state()
            check(fn)
        assert torch.equal(torch.get_rng_state(), before), "a check must leave the learner's random state alone"
        out = capsys.readouterr().out
        assert out.startswith("\u2713") and out.count("\n") == 1, f"grading seed {seed}: {out}"


def fails_untouched(check, exercise: str) -> None:
    """On an exercise that still raises NotImplementedError a check says it is not done yet."""
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {exercise}: ...")

    with pytest.raises(AssertionError, match=rf"Exercise {re.escape(exercise)} is not done yet"):
        check(stub)
