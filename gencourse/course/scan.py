"""What the grader reads in a learner's code without running it.

Two questions, answered from the source of the code cells the learner wrote or
changed (a cell whose source is the lab's own is not the learner's):

- Does an exercise call the package's own answer to it? Each graded check names
  its references (`gencourse.checks.REFERENCES`, copied into the manifest, e.g.
  "gencourse.baselines.pixel_probabilities" or the method
  "gencourse.diffusion.NoiseSchedule.step"). Exercise k is flagged when a cell
  that belongs to it (the cell that held its TODO, or a cell the learner added
  before its check) uses one of them, or when any cell binds the function the
  check is given (a `def` or an assignment) to code that uses one.
- Does the learner's code change the checks? Assigning to, deleting or
  `setattr`-ing anything under `gencourse.checks`, touching `sys.modules`, or
  naming the grader's record folder or seed variable is tampering.

Changes to `builtins` or `torch` are noted but change no score: the grader
judges every check in its own process, with the real ones.

This is a reading of the code, not a proof: code that hides the name of what it
calls (strings put together at run time, exec) is not seen. `book/using.md`
says what the grader guards against and what it cannot.
"""

import ast
import re
import threading
from dataclasses import dataclass, field

from gencourse.course.protocol import RECORDS_ENV, SEED_ENV

MAGIC = re.compile(r"^\s*[%!].*$", re.MULTILINE)  # IPython magics and shell lines are not Python
PATCH_NOTED = ("builtins", "torch", "numpy")      # roots whose patching is reported, not penalised


@dataclass
class Findings:
    """What the scan found: exercises that call their reference, and tampering (check id or "*" for all)."""
    references: dict = field(default_factory=dict)   # exercise number -> "cell N uses gencourse...."
    tampered: dict = field(default_factory=dict)     # check id or "*" -> "cell N ..."
    notes: list = field(default_factory=list)        # harmless patches, said in the report


# CPython 3.11 keeps ast.parse's recursion counter in state that all threads share, so two notebooks
# scanned at once by `gencourse grade --jobs N` can fail with "SystemError: AST constructor recursion
# depth mismatch" (seen here on 3.11.7; see python/cpython#106905): one parse at a time.
_PARSING = threading.Lock()


def parse(source):
    """The cell's syntax tree, magics blanked out; None when it is not valid Python."""
    try:
        with _PARSING:
            return ast.parse(MAGIC.sub("", source))
    except (SyntaxError, ValueError):
        return None


def imported_names(trees):
    """{local name: dotted path} for every import in the notebook (`import gencourse.x as y`, `from a import b`)."""
    bound = {}
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.asname:
                        bound[alias.asname] = alias.name
                    else:
                        root = alias.name.split(".")[0]
                        bound[root] = root
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                for alias in node.names:
                    bound[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return bound


def dotted(node, bound):
    """The dotted path an expression names (`checks.toolkit.x` -> "gencourse.checks.toolkit.x"), or None."""
    if isinstance(node, ast.Name):
        return bound.get(node.id)
    if isinstance(node, ast.Attribute):
        base = dotted(node.value, bound)
        return f"{base}.{node.attr}" if base else None
    if isinstance(node, ast.Subscript):
        return dotted(node.value, bound)
    return None


def parameters(tree):
    """Names of the parameters of every function and lambda in a cell."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            a = node.args
            names |= {p.arg for p in a.posonlyargs + a.args + a.kwonlyargs}
            names |= {p.arg for p in (a.vararg, a.kwarg) if p}
    return names


def uses_reference(tree, reference, bound):
    """True when the code names `reference`: by its path, by an import of it, by getattr with its name,
    or, for a method ("...Class.method"), as that method of a function's parameter (`schedule.step`)."""
    parts = reference.split(".")
    name, is_method = parts[-1], parts[-2][:1].isupper()
    params = parameters(tree) if is_method else set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gencourse"):
            if any(alias.name == name for alias in node.names) and not is_method:
                return True
        if isinstance(node, (ast.Attribute, ast.Name)) and isinstance(node.ctx, ast.Load):
            path = dotted(node, bound)
            if path == reference or (is_method and path and path.endswith(".".join(parts[-2:]))):
                return True
            if is_method and isinstance(node, ast.Attribute) and node.attr == name \
                    and isinstance(node.value, ast.Name) and node.value.id in params:
                return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "getattr" \
                and len(node.args) > 1 and isinstance(node.args[1], ast.Constant) and node.args[1].value == name:
            return True
    return False


def bindings_of(tree, function):
    """The statements of a cell that bind `function` (its def, or an assignment to the name)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
            found.append(node)
        elif isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            if any(isinstance(n, ast.Name) and n.id == function for t in targets for n in ast.walk(t)):
                found.append(node)
    return found


def changed_paths(tree, bound):
    """(dotted path, how) for everything a cell assigns to, deletes or setattr's on an imported module."""
    found = []
    for node in ast.walk(tree):
        targets = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)):
            targets = [node.target]
        elif isinstance(node, ast.Delete):
            targets = node.targets
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("setattr", "delattr") and node.args:
            path = dotted(node.args[0], bound)
            if path:
                attr = node.args[1].value if len(node.args) > 1 and isinstance(node.args[1], ast.Constant) else "?"
                found.append((f"{path}.{attr}", node.func.id))
            continue
        for target in targets:
            for part in ast.walk(target):
                if isinstance(part, (ast.Attribute, ast.Subscript)):
                    path = dotted(part, bound)
                    if path:
                        found.append((path, "assigns to" if not isinstance(node, ast.Delete) else "deletes"))
                    break
    return found


def scan(cells, exercises, exercise_of, functions, references):
    """Findings for a notebook.

    cells: [(code cell index, source, written by the learner?)] in order; exercises: {check id: exercise
    number}; exercise_of: {code cell index: exercise number} for the learner's cells; functions: {check id:
    the name of the function its check cell passes}; references: {check id: (dotted reference, ...)}.
    """
    findings = Findings()
    trees = {index: parse(source) for index, source, _ in cells}
    bound = imported_names(t for t in trees.values() if t is not None)
    exercise_checks = {}
    for check_id, exercise in exercises.items():
        exercise_checks.setdefault(exercise, []).append(check_id)
    for index, source, learners in cells:
        tree = trees[index]
        if not learners or tree is None:
            continue
        where = f"code cell {index}"
        for exercise, ids in exercise_checks.items():
            for check_id in ids:
                refs = references.get(check_id, ())
                mine = exercise_of.get(index) == exercise
                bindings = [ast.Module(body=[b], type_ignores=[]) for b in bindings_of(tree, functions.get(check_id))]
                for ref in refs:
                    if (mine and uses_reference(tree, ref, bound)) or any(uses_reference(b, ref, bound)
                                                                          for b in bindings):
                        findings.references.setdefault(
                            exercise, f"{where} uses {ref}, the package's own answer to this exercise")
        for path, how in changed_paths(tree, bound):
            if path.startswith("gencourse.checks") or path.startswith("sys.modules"):
                check_id = ".".join(path.split(".")[2:4])
                key = check_id if check_id in references else "*"
                findings.tampered.setdefault(key, f"{where} {how} {path}")
            elif path.split(".")[0] in PATCH_NOTED:
                findings.notes.append(f"{where} {how} {path}: this changes no score, since the grader judges "
                                      "every check in its own process")
        if RECORDS_ENV in source or SEED_ENV in source:
            findings.tampered.setdefault("*", f"{where} names the grader's own variables")
    return findings
