"""The grader's reading of a learner's code (gencourse.course.scan), on small cells: no kernel needed."""

import pytest

from gencourse.course import scan

REFS = {"diffusion.ddpm_step": ("gencourse.diffusion.NoiseSchedule.step",),
        "toolkit.pixel_probabilities": ("gencourse.baselines.pixel_probabilities",)}
EXERCISES = {"diffusion.ddpm_step": 3, "toolkit.pixel_probabilities": 1}
FUNCTIONS = {"diffusion.ddpm_step": "ddpm_step", "toolkit.pixel_probabilities": "pixel_probabilities"}
SETUP = "from gencourse import baselines, diffusion\nfrom gencourse.checks import toolkit as checks"


def findings(source, owner=3):
    cells = [(0, SETUP, False), (1, source, True)]
    return scan.scan(cells, EXERCISES, {1: owner}, FUNCTIONS, REFS)


@pytest.mark.parametrize("source", [
    "def ddpm_step(schedule, xt, eps, t, noise):\n    return schedule.step(xt, eps, t, noise=noise)",
    "def ddpm_step(s, xt, eps, t, noise):\n    return getattr(s, 'step')(xt, eps, t, noise=noise)",
    "ddpm_step = lambda s, *a: diffusion.NoiseSchedule.step(s, *a)",
])
def test_a_method_reference_called_on_the_given_object_is_found(source):
    assert 3 in findings(source).references


def test_an_optimiser_step_elsewhere_is_not_a_reference():
    assert findings("def train(model, opt):\n    opt.step()", owner=1).references == {}


@pytest.mark.parametrize("source, owner", [
    ("def pixel_probabilities(x):\n    return baselines.pixel_probabilities(x)", 1),
    ("from gencourse.baselines import pixel_probabilities", 1),
    ("import gencourse.baselines as b\n\ndef pixel_probabilities(x):\n    return b.pixel_probabilities(x)", 1),
    ("pixel_probabilities = baselines.pixel_probabilities", 2),   # bound in another exercise's cell
])
def test_a_function_reference_is_found(source, owner):
    assert 1 in findings(source, owner).references


def test_a_reference_of_another_exercise_is_allowed():
    assert findings("def ddpm_step(s, x):\n    return baselines.pixel_probabilities(x)").references == {}


def test_changing_a_check_is_tampering_with_that_check():
    found = findings("checks.pixel_probabilities = lambda fn: print('ok')")
    assert set(found.tampered) == {"toolkit.pixel_probabilities"}


@pytest.mark.parametrize("source", [
    "import gencourse.checks as c\nc.call = lambda *a: 0",
    "import gencourse\nsetattr(gencourse.checks, 'judge', None)",
    "import sys\nsys.modules['gencourse.checks'] = None",
    "import os\nfolder = os.environ['GENCOURSE_CHECK_RECORDS']",
])
def test_changing_the_checks_machinery_is_tampering_with_every_check(source):
    assert set(findings(source).tampered) == {"*"}


def test_patching_builtins_or_torch_is_noted_not_penalised():
    found = findings("import builtins, torch\nbuiltins.print = None\ntorch.allclose = lambda *a: True")
    assert found.tampered == {} and found.references == {}
    assert [n.split(":")[0] for n in found.notes] == ["code cell 1 assigns to builtins.print",
                                                      "code cell 1 assigns to torch.allclose"]


def test_cells_that_are_not_python_are_skipped():
    assert findings("%timeit 1\ndef ddpm_step(:") == scan.Findings()
