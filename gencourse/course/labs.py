"""Generate student labs from solution notebooks, and the check manifest.

`solutions/NN_name.ipynb` is the only notebook a person edits. Code that
learners must write sits between two comment lines, indented like the code
around them:

    # BEGIN SOLUTION: what to write
    # HINT: an optional hint, kept in the lab
    x = the_answer()
    # END SOLUTION

`gencourse labs` writes `labs/NN_name.ipynb` in which region k of lab N becomes
the hint lines, then `raise NotImplementedError("Exercise N.k: what to write")`
(regions are numbered 1, 2, ... in order of appearance). A region inside a class
body whose code starts with a method (`def` or a decorator) is the class's whole
body: it becomes the hints and an `__init__` that raises, so the class exists
and building it says what to write. Outputs and execution
counts are cleared and a first markdown cell says the file is generated. The
output is byte-stable: the same solution always gives the same bytes.

Check cells are code cells with metadata
`{"gencourse": {"check": "<lab>.<name>", "points": <int>, "exercise": <k>}}`.
Their ids, points, exercises, source hashes, the name of the function each
one is given, and the ids of the cells that hold its exercise's TODOs go to
`gencourse/checks/manifest.json`, with the hashes of the lab's other code
cells (so that the grader can tell the learner's code from the lab's). The
grader (grading.py) trusts it. Its layout:

    {"NN_name": {"checks": {"<lab>.<name>": {"sha256", "points", "exercise",
                                             "function", "cells", "references"}},
                 "code": [sha256 of each other code cell]}}
`gencourse labs --check` writes nothing and reports every lab (and the
manifest) that differs from a fresh generation.
"""

import ast
import copy
import hashlib
import importlib
import json
import re
import textwrap
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

BEGIN = re.compile(r"^(?P<indent>[ \t]*)# BEGIN SOLUTION(?::[ \t]*(?P<what>.*?))?[ \t]*$")
BEGIN_LINES = re.compile(r"^[ \t]*# BEGIN SOLUTION", re.MULTILINE)
END = re.compile(r"^[ \t]*# END SOLUTION[ \t]*$")
HINT = re.compile(r"^[ \t]*# HINT:")
STEM = re.compile(r"^(?P<number>\d\d)_\w+$")
MANIFEST = Path("gencourse") / "checks" / "manifest.json"
LINE_LIMIT = 100  # a code line of a lab is shorter than this, so that it fits its box in the book

HEADER = """\
**Generated file.** This lab is generated from `solutions/{stem}.ipynb` by
`gencourse labs`; do not edit it by hand. Maintainers: edit the solution and
run `make labs`. Learners: fill in every cell that raises `NotImplementedError`,
then run the check cells."""


class LabError(ValueError):
    """A solution notebook breaks the conventions (unbalanced region, bad check metadata)."""


@dataclass
class Region:
    """One exercise region: its number k, what to write, the solution lines."""
    k: int
    what: str
    cell_index: int
    lines: list = field(default_factory=list)


# ---------------------------------------------------------------- regions

def exercise_message(lab_number, k, what):
    """The NotImplementedError text of exercise N.k."""
    return f"Exercise {lab_number}.{k}: {what}" if what else f"Exercise {lab_number}.{k}"


def todo_lines(indent, lab_number, k, what, hints, methods=False):
    """What replaces a region: the hints, then the raise, at the region's indent; for a region of
    `methods` (a class body), the raise sits in an `__init__` so that the class is still defined."""
    text = exercise_message(lab_number, k, what).replace("\\", "\\\\").replace('"', '\\"')
    out = [indent + h.lstrip() for h in hints]
    if methods:
        return out + [f"{indent}def __init__(self, *args, **kwargs):"] + raise_lines(indent + " " * 4, text)
    return out + raise_lines(indent, text)


def defines_methods(region, indent):
    """Whether a region's code opens with a method (`def` or a decorator) at its own indent."""
    code = [line for line in region.lines if line.strip() and not line.lstrip().startswith("#")]
    return bool(code) and bool(indent) and re.match(re.escape(indent) + r"(def |async def |@)", code[0]) is not None


def raise_lines(indent, text):
    """`raise NotImplementedError("text")`, wrapped at spaces to stay under LINE_LIMIT."""
    line = f'{indent}raise NotImplementedError("{text}")'
    if len(line) < LINE_LIMIT:
        return [line]
    inner = indent + " " * 4
    pieces = textwrap.wrap(text, LINE_LIMIT - len(inner) - 4, drop_whitespace=False,
                           break_long_words=False, break_on_hyphens=False)
    return ([f"{indent}raise NotImplementedError("] + [f'{inner}"{p}"' for p in pieces[:-1]]
            + [f'{inner}"{pieces[-1]}")'])


def transform_source(source, lab_number, first_k, filled=(), where="cell"):
    """Replace the regions of one cell's source; return (new source, regions).

    Regions whose number is in `filled` keep their solution code (without the
    marker and hint lines): that is how tests build "one exercise done" labs.
    """
    out, regions, current, indent = [], [], None, ""
    for line in source.split("\n"):
        begin, end = BEGIN.match(line), END.match(line)
        if begin:
            if current is not None:
                raise LabError(f"{where}: nested '# BEGIN SOLUTION'")
            indent = begin.group("indent")
            current = Region(first_k + len(regions), begin.group("what") or "", -1)
        elif end:
            if current is None:
                raise LabError(f"{where}: '# END SOLUTION' without '# BEGIN SOLUTION'")
            out += region_output(current, indent, lab_number, filled)
            regions.append(current)
            current = None
        elif current is not None:
            current.lines.append(line)
        else:
            out.append(line)
    if current is not None:
        raise LabError(f"{where}: '# BEGIN SOLUTION' without '# END SOLUTION'")
    return "\n".join(out), regions


def region_output(region, indent, lab_number, filled):
    """The lines a region becomes in the lab: its code if filled, else the TODO."""
    hints = [line for line in region.lines if HINT.match(line)]
    if region.k in filled:
        return [line for line in region.lines if not HINT.match(line)]
    return todo_lines(indent, lab_number, region.k, region.what, hints, defines_methods(region, indent))


# ---------------------------------------------------------------- notebooks

def lab_number(stem):
    """N of a lab called NN_name; LabError for any other name."""
    match = STEM.match(stem)
    if not match:
        raise LabError(f"{stem}.ipynb: solution names must look like NN_name.ipynb")
    return int(match.group("number"))


def cell_id(cell, index):
    """A solution cell's id, or a stable one derived from its position."""
    return cell.get("id") or f"cell-{index}"


def make_lab(solution, stem, filled=()):
    """The lab notebook (a NotebookNode) for a solution notebook; pure function."""
    number = lab_number(stem)
    lab = nbformat.v4.new_notebook()
    lab.nbformat_minor = max(5, solution.get("nbformat_minor", 5))
    lab.metadata = copy.deepcopy({k: v for k, v in solution.metadata.items() if k != "widgets"})
    header = nbformat.v4.new_markdown_cell(HEADER.format(stem=stem))
    header.id = "gencourse-generated"
    lab.cells.append(header)
    k = 1
    for index, cell in enumerate(solution.cells):
        new = copy.deepcopy(cell)
        new.id = cell_id(cell, index)
        new.metadata.pop("execution", None)
        if cell.cell_type == "code":
            where = f"{stem}.ipynb, code cell {index}"
            new.source, regions = transform_source(cell.source, number, k, filled, where)
            k += len(regions)
            new.outputs, new.execution_count = [], None
        lab.cells.append(new)
    return lab


def to_bytes(nb):
    """A notebook's file bytes in nbformat's fixed layout (sorted keys, indent 1)."""
    text = nbformat.writes(nb, version=4)
    return (text if text.endswith("\n") else text + "\n").encode("utf-8")


def count_regions(nb):
    """How many exercise regions a solution notebook has."""
    return sum(len(BEGIN_LINES.findall(c.source)) for c in nb.cells if c.cell_type == "code")


# ---------------------------------------------------------------- manifest

def source_hash(source):
    """sha256 of a cell source with trailing whitespace stripped from each line."""
    normal = "\n".join(line.rstrip() for line in source.splitlines())
    return hashlib.sha256(normal.encode("utf-8")).hexdigest()


def check_cells(nb):
    """(code cell index, cell, metadata) for each cell marked as a graded check."""
    found, code_index = [], 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        meta = cell.get("metadata", {}).get("gencourse")
        if isinstance(meta, dict) and "check" in meta:
            found.append((code_index, cell, meta))
        code_index += 1
    return found


def lab_checks(lab, stem, n_exercises):
    """Manifest entry of one lab: check id -> {sha256, points, exercise}; validated."""
    entry = {}
    for index, cell, meta in check_cells(lab):
        where = f"{stem}.ipynb, check cell {meta.get('check')!r}"
        validate_check(meta, cell.source, n_exercises, where)
        if meta["check"] in entry:
            raise LabError(f"{where}: the same check id is used twice")
        entry[meta["check"]] = {"sha256": source_hash(cell.source), "points": meta["points"],
                                "exercise": meta["exercise"], "function": checked_function(cell.source, meta["check"]),
                                "cells": []}
    return entry


TODO = re.compile(r'NotImplementedError\(\s*"Exercise \d+\.(?P<k>\d+)\b')


def lab_entry(lab, stem, n_exercises):
    """Manifest entry of one lab: its checks, each with the ids of its exercise's cells, and the hashes
    of the lab's other code cells."""
    checks = lab_checks(lab, stem, n_exercises)
    cells = {}
    for cell in lab.cells:
        if cell.cell_type == "code":
            for k in sorted({int(m.group("k")) for m in TODO.finditer(cell.source)}):
                cells.setdefault(k, []).append(cell.id)
    for check_id, spec in checks.items():
        spec["cells"] = cells.get(spec["exercise"], [])
        spec["references"] = list(references_of(check_id))
    marked = {id(cell) for _, cell, _ in check_cells(lab)}
    code = sorted({source_hash(c.source) for c in lab.cells if c.cell_type == "code" and id(c) not in marked})
    return {"checks": checks, "code": code}


def references_of(check_id):
    """The dotted names of the package's own answers to a check's exercise (gencourse.checks.graded)."""
    try:
        importlib.import_module(f"gencourse.checks.{check_id.split('.')[0]}")
    except ImportError:
        return ()
    return importlib.import_module("gencourse.checks").REFERENCES.get(check_id, ())


def checked_function(source, check):
    """The name of the function a check cell hands to its check (`checks.x.name(my_fn)` -> "my_fn")."""
    name = check.split(".")[1]
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == name \
                and node.args and isinstance(node.args[0], ast.Name):
            return node.args[0].id
    return None


def validate_check(meta, source, n_exercises, where):
    """Raise LabError unless a check cell's metadata follows the convention."""
    check, points, k = meta.get("check"), meta.get("points"), meta.get("exercise")
    if not isinstance(check, str) or not re.fullmatch(r"\w+\.\w+", check):
        raise LabError(f"{where}: 'check' must look like '<lab>.<name>'")
    if not isinstance(points, int) or isinstance(points, bool) or points < 0:
        raise LabError(f"{where}: 'points' must be an integer >= 0")
    if not isinstance(k, int) or isinstance(k, bool) or not 1 <= k <= n_exercises:
        raise LabError(f"{where}: 'exercise' must be an exercise number 1..{n_exercises}")
    if not re.search(r"\b" + check.split(".")[1] + r"\s*\(", source):
        raise LabError(f"{where}: the cell does not call {check.split('.')[1]}(...)")
    if BEGIN_LINES.search(source):
        raise LabError(f"{where}: a check cell cannot hold a solution region")


def manifest_bytes(manifest):
    """The manifest file's bytes (sorted keys, indent 2)."""
    return (json.dumps(manifest, sort_keys=True, indent=2) + "\n").encode("utf-8")


# ---------------------------------------------------------------- the repo

def generate(root):
    """Every lab and the manifest, as {relative path: bytes}; writes nothing."""
    root, files, manifest = Path(root), {}, {}
    for path in sorted((root / "solutions").glob("*.ipynb")):
        solution = read_solution(path)
        lab = make_lab(solution, path.stem)
        files[Path("labs") / path.name] = to_bytes(lab)
        manifest[path.stem] = lab_entry(lab, path.stem, count_regions(solution))
    files[MANIFEST] = manifest_bytes(manifest)
    return files


def read_solution(path):
    """A solution notebook; LabError naming the file if it cannot be read."""
    try:
        return nbformat.read(path, as_version=4)
    except Exception as e:  # bad JSON, not a notebook: nbformat raises several kinds
        raise LabError(f"{path.name}: not a readable notebook ({type(e).__name__}: {e})") from e


def differences(root, files):
    """Relative paths (as text, with the reason) that differ from `files`."""
    root, problems = Path(root), []
    for rel, data in files.items():
        target = root / rel
        if not target.exists():
            problems.append(f"{rel}: missing")
        elif target.read_bytes() != data:
            problems.append(f"{rel}: differs from a fresh generation")
    for path in sorted((root / "labs").glob("*.ipynb")):
        if Path("labs") / path.name not in files:
            problems.append(f"labs/{path.name}: orphan (no solutions/{path.name})")
    return problems


def write(root, files):
    """Write the generated files under root; return the paths that changed."""
    changed = []
    for rel, data in files.items():
        target = Path(root) / rel
        if not target.exists() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            changed.append(str(rel))
    return changed
