"""Learners who try to forge a score: each attempt, on the real lab 00, earns nothing it did not earn.

Every notebook below starts from the generated lab (its exercises untouched, or filled wrongly) and adds
one attempt. All are graded in one run of `gencourse grade --jobs 2`; the grader judges each check's
record in its own process, on inputs drawn for this run.
"""

import base64
import copy
import os

import nbformat
import pytest
from nbformat.v4 import new_code_cell

from gencourse import baselines, checks
from gencourse.checks import toolkit
from gencourse.course import grading, labs

from test_grading import REPO, real_lab_00

LAB = "00_toolkit"
RIGHT_1 = ("def pixel_probabilities(x):\n"
           "    return (x.sum(dim=0) + 1) / (x.shape[0] + 2)")
RIGHT_2 = ("def bernoulli_nll(probs, x):\n"
           "    p = probs.expand_as(x)\n"
           "    return -(x * p.log() + (1 - x) * (1 - p).log()).flatten(1).sum(1)")
WRONG_1 = "def pixel_probabilities(x):\n    return x.mean(dim=0)"     # no smoothing
WRONG_2 = RIGHT_2.replace("sum(1)", "sum(1) / 64")                      # averaged over pixels


def index_of(nb, text):
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code" and text in c.source)


def with_cell(nb, before, source):
    """A copy of nb with a code cell inserted before the first cell containing `before`."""
    nb = copy.deepcopy(nb)
    nb.cells.insert(index_of(nb, before), new_code_cell(source))
    return nb


def with_exercises(nb, first, second):
    nb = copy.deepcopy(nb)
    nb.cells[index_of(nb, "def pixel_probabilities")].source = first
    nb.cells[index_of(nb, "def bernoulli_nll")].source = second
    return nb


def recorded_answer(tmp_path):
    """The bytes of a record of the right answer to exercise 0.1, made in advance (seed 0)."""
    folder = tmp_path / "made-in-advance"
    folder.mkdir()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(checks.RECORDS_ENV, str(folder))
        patch.setenv(checks.SEED_ENV, "0")
        toolkit.pixel_probabilities(baselines.pixel_probabilities)
    return (folder / "toolkit.pixel_probabilities.pt").read_bytes()


FIRST_CHECK = "checks.pixel_probabilities(pixel_probabilities)"


def attempts(lab, forged_record):
    record = base64.b64encode(forged_record).decode("ascii")
    return {
        "patched_checks": with_cell(lab, FIRST_CHECK, (
            "import gencourse.checks.toolkit as t\n"
            "t.pixel_probabilities = lambda fn: print('\\u2713 pixel probabilities are right')\n"
            "t.bernoulli_nll = lambda fn: print('\\u2713 Bernoulli negative log-likelihood is right')")),
        "patched_check_calls_reference": with_cell(lab, FIRST_CHECK, (
            "from gencourse import baselines\n"
            "from gencourse.checks import toolkit as t\n"
            "t.pixel_probabilities = lambda fn, check=t.pixel_probabilities: check(\n"
            "    baselines.pixel_probabilities)")),
        "patched_print": with_cell(lab, FIRST_CHECK, (
            "import builtins\n"
            "_print = builtins.print\n"
            "builtins.print = lambda *a, **k: _print('\\u2713 right')")),
        "patched_allclose": with_cell(with_exercises(lab, WRONG_1, WRONG_2), FIRST_CHECK, (
            "import torch\n"
            "torch.allclose = lambda *a, **k: True")),
        "fake_success_line": with_cell(lab, FIRST_CHECK, (
            "print('\\u2713 pixel probabilities are right, smoothing included')\n"
            "print('\\u2713 Bernoulli negative log-likelihood is right')")),
        "writes_to_graders_folder": with_cell(lab, FIRST_CHECK, (
            "import base64, json, pathlib\n"
            f"record = base64.b64decode('{record}')\n"
            "for folder in [pathlib.Path('.'), *pathlib.Path('.').rglob('*')]:\n"
            "    if folder.is_dir():\n"
            "        (folder / 'toolkit.pixel_probabilities.pt').write_bytes(record)\n"
            "pathlib.Path('results.jsonl').write_text(json.dumps({'cell': 17, 'phase': 'call'}))")),
        "calls_reference": with_exercises(lab, (
            "from gencourse import baselines\n\n"
            "def pixel_probabilities(x):\n"
            "    return baselines.pixel_probabilities(x)"), RIGHT_2),
        "rebinds_to_reference": with_cell(with_exercises(lab, WRONG_1, RIGHT_2), FIRST_CHECK,
                                          "pixel_probabilities = baselines.pixel_probabilities"),
        "honest": with_exercises(lab, RIGHT_1, RIGHT_2),
    }


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    real_lab_00()
    folder = tmp_path_factory.mktemp("forgery")
    lab = nbformat.read(REPO / "labs" / f"{LAB}.ipynb", as_version=4)
    paths = []
    for name, nb in attempts(lab, recorded_answer(folder)).items():
        (folder / name).mkdir()
        path = folder / name / f"{LAB}.ipynb"
        path.write_bytes(labs.to_bytes(nb))
        paths.append(path)
    report = grading.grade(paths, jobs=2)
    return {p.parent.name: n for p, n in zip(paths, report["notebooks"])}


FIRST_TWO = ("pixel_probabilities", "bernoulli_nll")    # the exercises the attempts below fill in


def statuses(notebook, only=FIRST_TWO):
    """{name: (status, points)} of the checks of exercises 0.1 and 0.2 (the others are left undone)."""
    every = {c["id"].split(".")[1]: (c["status"], c["points"]) for c in notebook["checks"]}
    return {name: every[name] for name in only}


def later_checks(notebook):
    """(status, points, message) of the checks of the exercises that no attempt touches."""
    return [(c["status"], c["points"], c["message"]) for c in notebook["checks"] if c["exercise"] > 2]


def test_replaced_check_functions_score_nothing(graded):
    assert statuses(graded["patched_checks"]) == {"pixel_probabilities": ("tampered", 0),
                                                  "bernoulli_nll": ("tampered", 0)}


def test_a_check_replaced_by_one_that_judges_the_reference_scores_nothing(graded):
    assert statuses(graded["patched_check_calls_reference"])["pixel_probabilities"] == ("tampered", 0)


def test_a_patched_print_scores_nothing_and_is_noted(graded):
    nb = graded["patched_print"]
    assert nb["points"] == 0 and {s for s, _ in statuses(nb).values()} == {"failed"}
    assert any("builtins.print" in note for note in nb["notes"])


def test_a_patched_allclose_does_not_make_wrong_answers_right(graded):
    nb = graded["patched_allclose"]
    assert nb["points"] == 0 and {s for s, _ in statuses(nb).values()} == {"failed"}
    messages = {c["id"]: c["message"] for c in nb["checks"]}
    assert "plain frequency" in messages["toolkit.pixel_probabilities"]   # the grader's own allclose judged
    assert "average over the 64 pixels" in messages["toolkit.bernoulli_nll"]


def test_a_printed_success_line_scores_nothing(graded):
    assert graded["fake_success_line"]["points"] == 0


def test_records_written_by_the_learner_score_nothing(graded):
    nb = graded["writes_to_graders_folder"]
    assert nb["points"] == 0
    assert statuses(nb)["pixel_probabilities"] == ("failed", 0)


def test_calling_the_reference_scores_zero_for_that_exercise_only(graded):
    nb = graded["calls_reference"]
    assert statuses(nb) == {"pixel_probabilities": ("reference", 0), "bernoulli_nll": ("passed", 1)}
    message = nb["checks"][0]["message"]
    assert "gencourse.baselines.pixel_probabilities" in message and "write your own" in message


def test_binding_the_exercise_to_the_reference_in_another_cell_scores_zero(graded):
    assert statuses(graded["rebinds_to_reference"])["pixel_probabilities"] == ("reference", 0)


def test_an_honest_notebook_written_by_hand_scores_its_exercises(graded):
    assert statuses(graded["honest"]) == {"pixel_probabilities": ("passed", 1), "bernoulli_nll": ("passed", 1)}
    assert graded["honest"]["notes"] == []
    later = later_checks(graded["honest"])
    assert len(later) >= 3 and all(status == "failed" and points == 0 and "is not done yet" in message
                                   for status, points, message in later), later


def test_the_record_is_judged_on_the_runs_own_inputs(tmp_path):
    """A record made on other inputs (another seed) fails, even when it holds the right answer there."""
    data = recorded_answer(tmp_path)
    assert checks.judge("toolkit.pixel_probabilities", data, 0) == ("passed", "")
    status, message = checks.judge("toolkit.pixel_probabilities", data, 12345)
    assert status == "failed", message


def test_a_record_that_is_not_a_record_is_refused(tmp_path):
    import pickle
    evil = pickle.dumps(os.system)   # torch.load(weights_only=True) never unpickles a callable
    status, message = checks.judge("toolkit.pixel_probabilities", evil, 0)
    assert status == "failed" and "could not be read" in message
