"""Structure every solution notebook must keep (the outputs themselves are compared by nbval)."""

import ast
import importlib
import inspect
import pathlib
import re

import nbformat
import pytest
import yaml

import gencourse

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOLUTIONS = sorted((ROOT / "solutions").glob("[0-9][0-9]_*.ipynb"))
REPO_URL = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_header_says_what_when_and_how_long(path):
    first = nbformat.read(path, as_version=4).cells[0]
    assert first.cell_type == "markdown"
    for needed in ("What you will build", "Prerequisites", "Run time"):
        assert needed in first.source, f"{path.name}: the opening cell must say '{needed}'"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_setup_cell_installs_from_the_configured_repository(path):
    setup = next(c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code")
    match = re.search(r'REPO = "([^"]+)"', setup.source)
    assert match, f"{path.name}: the first code cell must be the Colab setup cell defining REPO"
    assert match.group(1) == REPO_URL, f"{path.name}: setup cell installs from {match.group(1)}, _config.yml says {REPO_URL}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_cells_parse_and_ignored_outputs_are_followed_by_an_assertion(path):
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    for i, cell in enumerate(cells):
        ast.parse(cell.source)
        if "nbval-ignore-output" in cell.metadata.get("tags", []):
            following = [c for c in cells[i + 1:] if "nbval-ignore-output" not in c.metadata.get("tags", [])]
            assert following and re.search(r"^\s*assert\b", following[0].source, re.MULTILINE), (
                f"{path.name}: the cell after an ignored output must assert its figures:\n{cell.source[:200]}")


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_store_the_outputs_nbval_compares(path):
    """A solution saved without outputs passes nbval vacuously: every check cell must show its tick, and every
    cell that asserts must show what it printed."""
    cells = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"]
    silent = [c.source.splitlines()[-1] for c in cells
              if ("gencourse" in c.metadata or re.search(r"^print\(", c.source, re.MULTILINE)) and not c.outputs]
    assert not silent, f"{path.name}: re-execute it (gencourse execute); cells without outputs end with {silent[:3]}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.name)
def test_solutions_store_nothing_that_depends_on_the_machine(path):
    """nbval compares stderr and text: a stored warning names the file it came from, whose absolute path differs
    on every checkout (CI runs in another folder), so a warning in a stored output fails CI elsewhere."""
    root = str(ROOT)
    found = []
    for number, cell in enumerate(nbformat.read(path, as_version=4).cells):
        for output in cell.get("outputs", []):
            text = "".join(output.get("text", "")) + str(output.get("data", {}).get("text/plain", ""))
            if (output.get("name") == "stderr" and "Warning" in text) or root in text:
                found.append(f"cell {number}: {text.strip().splitlines()[0][:120]}")
    assert not found, f"{path.name} stores machine-dependent output; fix its cause and re-execute: {found}"


def _documented_objects():
    for info in pathlib.Path(gencourse.__file__).parent.glob("*.py"):
        module = importlib.import_module(f"gencourse.{info.stem}")
        for name, obj in vars(module).items():
            if not name.startswith("_") and getattr(obj, "__module__", None) == module.__name__:
                yield f"{module.__name__}.{name}", inspect.getdoc(obj) or ""


def test_docstring_references_to_labs_are_alive():
    labs = {p.name[:2] for p in SOLUTIONS}
    cited = [(name, n) for name, doc in _documented_objects() for n in re.findall(r"\blab (\d\d)\b", doc)]
    assert cited, "public functions should say which lab introduces them"
    dead = [(name, n) for name, n in cited if n not in labs]
    assert not dead, f"docstrings name labs that do not exist: {dead}"
