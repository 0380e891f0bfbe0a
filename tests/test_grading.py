"""`gencourse grade` on synthetic labs (fast), then on the real lab 00 (when it exists)."""

import copy
import importlib
import json
import re
import sys
import time
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gencourse.course import cli, grading, labs

REPO = Path(__file__).resolve().parents[1]

FAKE_CHECKS = '''\
from gencourse.checks import call, graded

@graded("gencourse.fake.square")
def square(f):
    assert call("7.1", f, 3) == 9, "square(3) should be 9: multiply x by itself"
    print("square: ok")

@graded("gencourse.fake.square")
def square_float(f):
    assert call("7.1", f, 0.5) == 0.25, "square(0.5) should be 0.25"
    print("square_float: ok")

@graded("gencourse.fake.cube")
def cube(f):
    assert call("7.2", f, 2) == 8, "cube(2) should be 8: x * x * x"
    print("cube: ok")
'''


def meta(check, points, exercise):
    return {"gencourse": {"check": check, "points": points, "exercise": exercise}}


def fake_solution(checks_dir):
    """Lab 7: exercise 1 (square, two checks), exercise 2 (cube, one check)."""
    nb = new_notebook()
    nb.cells = [
        new_markdown_cell("# Lab 7"),
        new_code_cell(f"import sys\nsys.path.insert(0, {str(checks_dir)!r})\nimport fakechecks as checks"),
        new_code_cell("def square(x):\n    # BEGIN SOLUTION: return x squared\n    return x * x\n    # END SOLUTION"),
        new_code_cell("checks.square(square)", metadata=meta("fakechecks.square", 2, 1)),
        new_code_cell("checks.square_float(square)", metadata=meta("fakechecks.square_float", 1, 1)),
        new_code_cell("def cube(x):\n    # BEGIN SOLUTION: return x cubed\n    return x ** 3\n    # END SOLUTION"),
        new_code_cell("checks.cube(cube)", metadata=meta("fakechecks.cube", 3, 2)),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    return nb


def cell_with(nb, text):
    """Index of the first cell whose source contains text."""
    return next(i for i, c in enumerate(nb.cells) if text in c.source)


def variants(solution):
    """name -> notebook: the submissions graded in one run."""
    lab = labs.make_lab(solution, "07_fake")
    tampered, deleted, syntax, died, big, loop = (copy.deepcopy(solution) for _ in range(6))
    tampered.cells[cell_with(tampered, "checks.square(")].source = "print('square: ok')"
    del deleted.cells[cell_with(deleted, "checks.cube(")]
    syntax.cells[cell_with(syntax, "def cube")].source = "def cube(x)\n    return x ** 3"
    died.cells.insert(cell_with(died, "def cube"), new_code_cell("import os\nos._exit(1)"))
    big.cells.insert(cell_with(big, "def cube"), new_code_cell("print('x' * 20_000_000)"))
    loop.cells[cell_with(loop, "def square")].source = "def square(x):\n    while True:\n        pass"
    tagged = copy.deepcopy(lab)  # nbval's raises-exception tag must not turn an error into a pass
    for cell in tagged.cells:
        if "gencourse" in cell.metadata:
            cell.metadata["tags"] = ["raises-exception"]
    return {"07_fake_solution": solution, "07_fake": lab, "07_fake_one": labs.make_lab(solution, "07_fake", {1}),
            "renamed_copy": solution, "07_fake_tampered": tampered, "07_fake_deleted": deleted,
            "07_fake_syntax": syntax, "07_fake_died": died, "07_fake_big": big, "07_fake_loop": loop,
            "07_fake_tagged": tagged}


@pytest.fixture(scope="module")
def course(tmp_path_factory):
    """Folder with the fake checks, the manifest and every submission variant."""
    root = tmp_path_factory.mktemp("course")
    (root / "fakechecks.py").write_text(FAKE_CHECKS)
    sys.path.insert(0, str(root))
    importlib.import_module("fakechecks")  # the grader judges the records with these checks
    solution = fake_solution(root)
    manifest = {"07_fake": labs.lab_entry(labs.make_lab(solution, "07_fake"), "07_fake", 2)}
    (root / "manifest.json").write_text(json.dumps(manifest))
    for name, nb in variants(solution).items():
        (root / f"{name}.ipynb").write_bytes(labs.to_bytes(nb))
    return root


@pytest.fixture(scope="module")
def graded(course):
    """One grading run over every variant but the endless loop: {name: notebook report}."""
    names = [p.stem for p in sorted(course.glob("*.ipynb")) if p.stem != "07_fake_loop"]
    before = {n: (course / f"{n}.ipynb").read_bytes() for n in names}
    report = grading.grade([course / f"{n}.ipynb" for n in names], course / "manifest.json")
    after = {n: (course / f"{n}.ipynb").read_bytes() for n in names}
    return {"report": report, "unchanged": before == after,
            **{Path(n["path"]).stem: n for n in report["notebooks"]}}


def statuses(notebook):
    return {c["id"]: c["status"] for c in notebook["checks"]}


def test_solution_scores_full_marks(graded):
    assert graded["07_fake_solution"]["points"] == graded["07_fake_solution"]["max_points"] == 6
    assert set(statuses(graded["07_fake_solution"]).values()) == {"passed"}


def test_untouched_lab_fails_every_check_with_its_own_message(graded):
    checks = graded["07_fake"]["checks"]
    assert graded["07_fake"]["points"] == 0
    assert {c["status"] for c in checks} == {"failed"}
    message = {c["id"]: c["message"] for c in checks}
    assert message["fakechecks.square"].startswith("Exercise 7.1 is not done yet: square still raises")
    assert message["fakechecks.cube"].startswith("Exercise 7.2 is not done yet: cube still raises")


def test_nbval_tags_on_check_cells_are_ignored(graded):
    assert set(statuses(graded["07_fake_tagged"]).values()) == {"failed"}


def test_one_exercise_filled_passes_exactly_its_checks(graded):
    assert statuses(graded["07_fake_one"]) == {"fakechecks.square": "passed", "fakechecks.square_float": "passed",
                                               "fakechecks.cube": "failed"}


def test_renamed_submission_found_by_its_check_ids(graded):
    assert graded["renamed_copy"]["lab"] == "07_fake" and graded["renamed_copy"]["points"] == 6


def test_tampered_check_scores_zero_and_is_flagged(graded):
    square = next(c for c in graded["07_fake_tampered"]["checks"] if c["id"] == "fakechecks.square")
    assert square["status"] == "tampered" and square["points"] == 0 and "changed" in square["message"]
    assert graded["07_fake_tampered"]["points"] == 4


def test_deleted_check_counts_as_failed(graded):
    assert statuses(graded["07_fake_deleted"])["fakechecks.cube"] == "missing"
    assert graded["07_fake_deleted"]["points"] == 3 and graded["07_fake_deleted"]["max_points"] == 6


def test_syntax_error_is_reported(graded):
    nb = graded["07_fake_syntax"]
    assert statuses(nb)["fakechecks.cube"] == "errored" and nb["points"] == 3
    assert any("SyntaxError" in e for e in nb["cell_errors"])


def test_kernel_death_leaves_later_checks_not_reached(graded):
    nb = graded["07_fake_died"]
    assert statuses(nb) == {"fakechecks.square": "passed", "fakechecks.square_float": "passed", "fakechecks.cube": "not reached"}
    assert "kernel" in nb["checks"][-1]["message"] and nb["exit_code"] == 0


def test_megabytes_of_output_are_not_stored(graded):
    assert graded["07_fake_big"]["points"] == 6
    assert len(json.dumps(graded["report"])) < 50_000


def test_learners_files_are_never_written(graded):
    assert graded["unchanged"]


def test_report_totals_and_exit_code(graded):
    report = graded["report"]
    assert report["max_points"] == 6 * len([n for n in report["notebooks"]])
    assert report["exit_code"] == (0 if report["score"] >= 0.5 else 1)


def test_endless_loop_times_out_and_later_checks_still_run(course, capsys):
    path = course / "07_fake_loop.ipynb"
    start = time.monotonic()
    code = cli.main(["grade", str(path), "--cell-timeout", "2", "--manifest", str(course / "manifest.json")])
    assert time.monotonic() - start < 30
    out = capsys.readouterr().out
    assert "not reached" in out and "timed out" in out
    assert "passed" in out  # exercise 2 does not depend on the endless loop
    assert code == 0  # 3 of 6 points


def test_a_cell_that_times_out_is_shown_beside_the_check_after_it(course, tmp_path, capsys):
    """An exercise cell that ends in an endless loop: its function exists, so its check may pass, but the
    table and the Markdown report say, beside that check, that the cell before it timed out."""
    nb = nbformat.read(course / "07_fake_solution.ipynb", as_version=4)
    nb.cells[cell_with(nb, "def square")].source = "def square(x):\n    return x * x\n\nwhile True:\n    pass"
    path = tmp_path / "07_fake.ipynb"
    path.write_bytes(labs.to_bytes(nb))
    cli.main(["grade", str(path), "--cell-timeout", "2", "--manifest", str(course / "manifest.json"),
              "--markdown", str(tmp_path / "g.md")])
    out = capsys.readouterr().out.splitlines()
    square = next(i for i, line in enumerate(out) if line.strip().endswith("fakechecks.square"))
    assert "before it, code cell 1: timed out" in out[square - 1]
    assert "before it, code cell 1: timed out" in next(line for line in (tmp_path / "g.md").read_text()
                                                       .splitlines() if "`fakechecks.square`" in line)


def test_jobs_grade_in_parallel_with_the_same_verdicts(course, capsys):
    names = ["07_fake_solution", "07_fake", "07_fake_one"]
    paths = [str(course / f"{n}.ipynb") for n in names]
    one = grading.grade(paths, course / "manifest.json", jobs=1, seed=7)
    two = grading.grade(paths, course / "manifest.json", jobs=2, seed=7)
    assert [statuses(n) for n in one["notebooks"]] == [statuses(n) for n in two["notebooks"]]
    assert [n["path"] for n in two["notebooks"]] == paths  # in the order given
    assert cli.main(["grade", *paths, "--jobs", "0"]) == grading.EXIT_USAGE


def test_notebook_timeout_stops_the_run(course, capsys):
    report = grading.grade([course / "07_fake_loop.ipynb"], course / "manifest.json", timeout=3)
    assert {c["status"] for c in report["notebooks"][0]["checks"]} == {"not reached"}


def test_cli_writes_json_and_markdown(course, tmp_path, capsys):
    code = cli.main(["grade", str(course / "07_fake.ipynb"), "--manifest", str(course / "manifest.json"),
                     "--json", str(tmp_path / "g.json"), "--markdown", str(tmp_path / "g.md")])
    assert code == grading.EXIT_FAIL
    report = json.loads((tmp_path / "g.json").read_text())
    assert report["points"] == 0 and report["exit_code"] == 1
    md = (tmp_path / "g.md").read_text()
    assert "| Check | Exercise | Status | Points | Message |" in md and "NotImplementedError" in md
    assert "NOT PASSED" in capsys.readouterr().out


@pytest.mark.parametrize("name, content, code", [
    ("07_fake.ipynb", None, grading.EXIT_MISSING),
    ("07_fake.ipynb", b"{not json", grading.EXIT_NOT_JSON),
    ("07_fake.ipynb", b"[1, 2]", grading.EXIT_NOT_NOTEBOOK),
    ("07_fake.ipynb", b'{"cells": "nope"}', grading.EXIT_NOT_NOTEBOOK),
    ("07_fake.ipynb", b'{"cells": [1], "nbformat": 4, "nbformat_minor": 5}', grading.EXIT_NOT_NOTEBOOK),
    ("99_other.ipynb", labs.to_bytes(new_notebook()), grading.EXIT_UNKNOWN_LAB),
])
def test_bad_input_gets_a_report_and_its_exit_code(course, tmp_path, capsys, name, content, code):
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    assert cli.main(["grade", str(path), "--manifest", str(course / "manifest.json"),
                     "--json", str(tmp_path / "g.json")]) == code
    out = capsys.readouterr()
    assert "problem:" in out.out and "Traceback" not in out.out + out.err
    last = out.out.strip().splitlines()[-1]
    assert "NOT GRADED" in last and ": PASSED" not in last, last  # never summed up as passed
    report = json.loads((tmp_path / "g.json").read_text())
    notebook = report["notebooks"][0]
    assert notebook["exit_code"] == code and notebook["problem"]
    assert report["verdict"] == notebook["verdict"] == "NOT GRADED" and not report["passed"]
    assert cli.main(["grade", str(path), "--manifest", str(course / "manifest.json"),
                     "--markdown", str(tmp_path / "g.md")]) == code
    assert "NOT GRADED" in (tmp_path / "g.md").read_text().splitlines()[0]


def test_grader_trouble_is_exit_7_with_a_report(course, monkeypatch, capsys):
    crash = [grading.sys.executable, "-c", "import sys; print('boom'); sys.exit(3)"]
    monkeypatch.setattr(grading, "pytest_command", lambda *args: crash)
    assert cli.main(["grade", str(course / "07_fake.ipynb"),
                     "--manifest", str(course / "manifest.json")]) == grading.EXIT_INTERNAL
    out = capsys.readouterr().out
    assert "pytest stopped with exit code 3" in out and "boom" in out


def test_missing_manifest_is_exit_7_without_traceback(course, tmp_path, capsys):
    assert cli.main(["grade", str(course / "07_fake.ipynb"),
                     "--manifest", str(tmp_path / "none.json")]) == grading.EXIT_INTERNAL
    err = capsys.readouterr().err
    assert "no check manifest" in err and "Traceback" not in err


def test_bad_options_are_usage_errors(course):
    with pytest.raises(SystemExit) as e:
        cli.main(["grade", str(course / "07_fake.ipynb"), "--pass-mark", "50"])
    assert e.value.code == grading.EXIT_USAGE


def test_grade_help_documents_exit_codes(capsys):
    with pytest.raises(SystemExit):
        cli.main(["grade", "--help"])
    out = capsys.readouterr().out
    assert "exit codes" in out and "not JSON" in out and "internal" in out


def test_workflow_template_is_valid_yaml(capsys):
    yaml = pytest.importorskip("yaml")
    assert cli.main(["workflow"]) == 0
    text = capsys.readouterr().out
    workflow = yaml.safe_load(text)
    assert "push" in workflow.get("on", workflow.get(True))
    assert "GENCOURSE_REF" in workflow["env"]
    steps = workflow["jobs"]["grade"]["steps"]
    assert any(s.get("if") == "always()" and "GITHUB_STEP_SUMMARY" in s.get("run", "") for s in steps)
    install = next(s["run"] for s in steps if "pip install" in s.get("run", ""))
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in install  # PyTorch's CPU build
    # gencourse and the course's pinned environment (requirements.txt) come from the same repository and ref
    package = re.search(r'"gencourse @ git\+https://github\.com/([\w.-]+/[\w.-]+)@([^"]+)"', install)
    pinned = re.search(r'-r "https://raw\.githubusercontent\.com/([\w.-]+/[\w.-]+)/([^/"]+)/requirements\.txt"',
                       install)
    assert package and pinned, "the workflow must install gencourse and requirements.txt at GENCOURSE_REF"
    assert package.groups() == pinned.groups() == ("gencourse/gencourse", "${GENCOURSE_REF}")
    assert re.search(r"^torch==", (REPO / "requirements.txt").read_text(), re.M), "requirements.txt pins torch"


# ---------------------------------------------------------------- the real lab 00

LAB00 = "00_toolkit"


def real_lab_00():
    solution = REPO / "solutions" / f"{LAB00}.ipynb"
    if not solution.exists():
        pytest.skip(f"solutions/{LAB00}.ipynb does not exist yet")
    return solution


@pytest.fixture(scope="module")
def graded_lab00(tmp_path_factory):
    """The solution, the untouched lab and one-exercise-filled labs, graded in one run."""
    solution_path = real_lab_00()
    folder = tmp_path_factory.mktemp("lab00")
    solution = nbformat.read(solution_path, as_version=4)
    manifest = grading.load_manifest()
    paths = [solution_path, REPO / "labs" / f"{LAB00}.ipynb"]
    first = (folder / "first" / f"{LAB00}.ipynb")
    first.parent.mkdir()
    first.write_bytes(labs.to_bytes(labs.make_lab(solution, LAB00, {1})))
    report = grading.grade(paths + [first], manifest)
    return dict(zip(["solution", "lab", "first"], report["notebooks"])), manifest[LAB00]


def test_lab00_solution_scores_full_marks(graded_lab00):
    notebooks, _ = graded_lab00
    assert notebooks["solution"]["max_points"] > 0
    assert notebooks["solution"]["points"] == notebooks["solution"]["max_points"], notebooks["solution"]


def test_lab00_untouched_lab_fails_every_check(graded_lab00):
    notebooks, _ = graded_lab00
    assert {c["status"] for c in notebooks["lab"]["checks"]} <= {"failed", "errored"}
    assert notebooks["lab"]["points"] == 0
    for check in notebooks["lab"]["checks"]:  # each names its own exercise
        assert f"Exercise 0.{check['exercise']}" in check["message"], check


def test_lab00_first_exercise_filled_passes_exactly_its_checks(graded_lab00):
    notebooks, entry = graded_lab00
    passed = {c["id"] for c in notebooks["first"]["checks"] if c["status"] == "passed"}
    assert passed == {i for i, spec in entry["checks"].items() if spec["exercise"] == 1}
