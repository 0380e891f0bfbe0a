"""Labs generated from solutions: regions, hints, numbering, header, stability, --check."""

import json
import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from gencourse.course import cli, labs

REPO = Path(__file__).resolve().parents[1]

SQUARE = '''\
def square(x):
    # BEGIN SOLUTION: return "x" squared
    # HINT: use *
    y = x * x
    return y
    # END SOLUTION'''

TOP_LEVEL = '''\
import math
# BEGIN SOLUTION
# HINT: a float
# HINT: from math
value = math.pi
# END SOLUTION
print(value)'''


def check_meta(check, points, exercise):
    return {"gencourse": {"check": check, "points": points, "exercise": exercise}}


def solution_notebook():
    """A small solution: two exercise cells with outputs, two check cells."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                               "language": "python"}})
    nb.cells = [
        new_markdown_cell("# Lab 7: fake"),
        new_code_cell(SQUARE, execution_count=1, outputs=[new_output("stream", text="hi\n")]),
        new_code_cell("checks.square(square)", metadata=check_meta("fake.square", 2, 1)),
        new_code_cell(TOP_LEVEL, execution_count=2, metadata={"execution": {"t": "2026-01-01"}}),
        new_code_cell("checks.value (value)", metadata=check_meta("fake.value", 1, 2)),
    ]
    for i, cell in enumerate(nb.cells):
        cell.id = f"sol-{i}"
    return nb


@pytest.fixture
def course(tmp_path):
    """A course root holding solutions/07_fake.ipynb, with labs generated."""
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution_notebook(), tmp_path / "solutions" / "07_fake.ipynb")
    assert cli.main(["labs", "--root", str(tmp_path)]) == 0
    return tmp_path


def lab_of(root):
    return nbformat.read(root / "labs" / "07_fake.ipynb", as_version=4)


def test_region_becomes_hints_and_raise_at_its_indent():
    source, regions = labs.transform_source(SQUARE, 7, 1)
    assert source == ('def square(x):\n    # HINT: use *\n'
                      '    raise NotImplementedError("Exercise 7.1: return \\"x\\" squared")')
    assert [r.k for r in regions] == [1]
    compile(source, "cell", "exec")  # still valid Python


def test_top_level_region_numbered_from_first_k_and_lines_after_kept():
    source, regions = labs.transform_source(TOP_LEVEL, 3, 5)
    assert source.splitlines() == ["import math", "# HINT: a float", "# HINT: from math",
                                   'raise NotImplementedError("Exercise 3.5")', "print(value)"]
    assert regions[0].what == ""


CLASS_BODY = '''class Coin:
    """A coin."""
    # BEGIN SOLUTION: the whole class
    # HINT: keep p
    def __init__(self, p):
        self.p = p

    def flip(self):
        return self.p
    # END SOLUTION
'''


def test_region_of_methods_becomes_an_init_that_raises():
    source, regions = labs.transform_source(CLASS_BODY, 0, 4)
    assert source.splitlines() == ["class Coin:", '    """A coin."""', "    # HINT: keep p",
                                   "    def __init__(self, *args, **kwargs):",
                                   '        raise NotImplementedError("Exercise 0.4: the whole class")']
    space = {}
    exec(compile(source, "cell", "exec"), space)            # the class is defined ...
    with pytest.raises(NotImplementedError, match="Exercise 0.4"):
        space["Coin"](0.5)                                   # ... and building it says what to write
    assert labs.transform_source(CLASS_BODY, 0, 4, filled={4})[0].count("def ") == 2


def test_filled_region_keeps_solution_code_without_markers():
    source, _ = labs.transform_source(SQUARE, 7, 1, filled={1})
    assert source == "def square(x):\n    y = x * x\n    return y"


@pytest.mark.parametrize("bad", ["# BEGIN SOLUTION\nx = 1", "x = 1\n# END SOLUTION",
                                 "# BEGIN SOLUTION\n# BEGIN SOLUTION\n# END SOLUTION"])
def test_unbalanced_regions_are_errors(bad):
    with pytest.raises(labs.LabError, match="SOLUTION"):
        labs.transform_source(bad, 1, 1)


def test_lab_has_header_cleared_outputs_and_numbered_exercises(course):
    lab = lab_of(course)
    header = lab.cells[0]
    assert header.cell_type == "markdown" and "solutions/07_fake.ipynb" in header.source
    assert "gencourse labs" in header.source and "make labs" in header.source
    code = [c for c in lab.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    assert 'NotImplementedError("Exercise 7.1: return \\"x\\" squared")' in code[0].source
    assert 'NotImplementedError("Exercise 7.2")' in code[2].source
    assert "execution" not in code[2].metadata
    assert [c.id for c in lab.cells[1:]] == [f"sol-{i}" for i in range(5)]
    assert lab.metadata.kernelspec.name == "python3"


def test_manifest_lists_checks_with_hash_points_exercise(course):
    manifest = json.loads((course / labs.MANIFEST).read_text())
    entry = manifest["07_fake"]["checks"]
    lab = lab_of(course)
    assert entry["fake.square"] == {"sha256": labs.source_hash("checks.square(square)  \n"),
                                    "points": 2, "exercise": 1, "function": "square",
                                    "cells": [lab.cells[2].id], "references": []}
    assert entry["fake.value"]["exercise"] == 2 and entry["fake.value"]["points"] == 1


def test_manifest_holds_the_hashes_of_the_labs_own_code(course):
    """The grader tells the learner's code from the lab's by these hashes (checks excluded)."""
    manifest = json.loads((course / labs.MANIFEST).read_text())
    code = [c for c in lab_of(course).cells if c.cell_type == "code" and "gencourse" not in c.metadata]
    assert manifest["07_fake"]["code"] == sorted({labs.source_hash(c.source) for c in code})


def test_generation_is_byte_stable(course):
    first = (course / "labs" / "07_fake.ipynb").read_bytes()
    assert labs.generate(course)[Path("labs/07_fake.ipynb")] == first
    assert cli.main(["labs", "--root", str(course)]) == 0
    assert (course / "labs" / "07_fake.ipynb").read_bytes() == first


def test_check_passes_on_fresh_generation(course):
    assert cli.main(["labs", "--root", str(course), "--check"]) == 0


def test_check_detects_hand_edit_missing_lab_and_orphan(course, capsys):
    lab = course / "labs" / "07_fake.ipynb"
    lab.write_bytes(lab.read_bytes().replace(b"Exercise 7.1", b"Exercise 7.9"))
    shutil.copy(lab, course / "labs" / "08_orphan.ipynb")
    assert cli.main(["labs", "--root", str(course), "--check"]) == 1
    out = capsys.readouterr().out
    assert "labs/07_fake.ipynb: differs" in out and "labs/08_orphan.ipynb: orphan" in out
    lab.unlink()
    assert cli.main(["labs", "--root", str(course), "--check"]) == 1
    assert "labs/07_fake.ipynb: missing" in capsys.readouterr().out
    assert lab.exists() is False  # --check writes nothing


def test_check_detects_stale_manifest(course, capsys):
    (course / labs.MANIFEST).write_text("{}\n")
    assert cli.main(["labs", "--root", str(course), "--check"]) == 1
    assert "manifest.json" in capsys.readouterr().out


@pytest.mark.parametrize("meta, match", [
    (check_meta("square", 2, 1), "<lab>.<name>"),
    (check_meta("fake.square", "2", 1), "points"),
    (check_meta("fake.square", 2, 3), "exercise"),
    (check_meta("fake.other", 2, 1), "does not call"),
])
def test_bad_check_metadata_is_a_clear_error(tmp_path, capsys, meta, match):
    nb = solution_notebook()
    nb.cells[2].metadata = meta
    (tmp_path / "solutions").mkdir()
    nbformat.write(nb, tmp_path / "solutions" / "07_fake.ipynb")
    assert cli.main(["labs", "--root", str(tmp_path)]) == 2
    assert match in capsys.readouterr().err


def test_repo_labs_match_a_fresh_generation():
    if not list((REPO / "solutions").glob("*.ipynb")):
        pytest.skip("solutions/ is empty")
    assert cli.main(["labs", "--root", str(REPO), "--check"]) == 0, "run `make labs`"


def test_unreadable_solution_is_a_clear_error(tmp_path, capsys):
    (tmp_path / "solutions").mkdir()
    (tmp_path / "solutions" / "01_broken.ipynb").write_text("{oops")
    assert cli.main(["labs", "--root", str(tmp_path)]) == 2
    assert "01_broken.ipynb: not a readable notebook" in capsys.readouterr().err


def test_execute_stores_outputs_without_timestamps_and_refuses_labs(tmp_path, capsys):
    """`gencourse execute` re-runs a solution in place: outputs stored, no per-cell timestamps (which would
    turn every re-execution into a diff of every cell), and a learner's lab is never rewritten."""
    (tmp_path / "solutions").mkdir()
    path = tmp_path / "solutions" / "99_tiny.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("print(6 * 7)")]), path)
    assert cli.main(["execute", str(path)]) == 0
    cell = nbformat.read(path, as_version=4).cells[0]
    assert cell.outputs[0].text == "42\n"
    assert "execution" not in cell.metadata
    (tmp_path / "labs").mkdir()
    lab = tmp_path / "labs" / "99_tiny.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell("print(1)")]), lab)
    before = lab.read_bytes()
    assert cli.main(["execute", str(lab)]) == 2
    assert "only existing notebooks in solutions/" in capsys.readouterr().err
    assert lab.read_bytes() == before


def test_a_long_exercise_message_is_wrapped_to_fit_the_page():
    """A lab's raise line stays under the page's line limit, and still says the whole message."""
    text = "Exercise 1.5: " + "gather each token's log-probability, " * 3 + "then negate"
    lines = labs.raise_lines("    ", text)
    assert len(lines) > 1 and all(len(line) < labs.LINE_LIMIT for line in lines)
    code = "\n".join(lines)
    with pytest.raises(NotImplementedError) as error:
        exec(compile("def f():\n" + code + "\nf()", "lab", "exec"), {})
    assert str(error.value) == text


def test_every_real_check_names_its_references_in_the_manifest():
    """The grader flags an exercise that calls its own reference; it reads the names from the manifest."""
    manifest = json.loads((Path(__file__).resolve().parents[1] / labs.MANIFEST).read_text())
    for lab, entry in manifest.items():
        for check_id, spec in entry["checks"].items():
            assert spec["references"] and all(r.startswith("gencourse.") for r in spec["references"]), check_id
            assert spec["function"] and spec["cells"], check_id


# ----------------------------------------------------------------------------- exercises at three levels

EXERCISE = re.compile(r"\*\*Exercise (\d+)\.(\d+)(?: (★{1,3}))?\.\*\*")
AT_THE_DESIGN = ("00_toolkit", "01_autoregressive", "02_diffusion")   # labs 03-06 follow when brought up to it


@pytest.mark.parametrize("stem", AT_THE_DESIGN)
def test_lab_has_graded_exercises_at_three_levels(stem):
    """design.md: at least five graded exercises, each marked with its level; two ★★ and a ★★★ at least."""
    nb = nbformat.read(REPO / "solutions" / f"{stem}.ipynb", as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    found = [(int(n), int(k), level) for n, k, level in EXERCISE.findall(text)]
    number = labs.lab_number(stem)
    assert [k for n, k, _ in found if n == number] == list(range(1, labs.count_regions(nb) + 1)), found
    levels = [level for _, _, level in found]
    assert all(levels), f"every exercise says its level (★, ★★ or ★★★): {found}"
    assert len(found) >= 5 and levels.count("★★") >= 2 and levels.count("★★★") >= 1, levels
    checked = {cell.metadata["gencourse"]["exercise"] for cell in nb.cells
               if cell.cell_type == "code" and "check" in cell.metadata.get("gencourse", {})}
    assert checked == {k for _, k, _ in found}, "every exercise has a graded check cell"
