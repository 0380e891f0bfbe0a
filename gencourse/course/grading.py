"""`gencourse grade`: score learners' lab notebooks check by check.

Each notebook is run with nbval in lax mode (`pytest --nbval-lax`) in a
subprocess, on a copy in a temporary folder (the learner's file is only read),
with `GENCOURSE_PROFILE=fast` unless the variable is already set, a timeout
per cell and one per notebook. A small pytest plugin (grade_plugin.py)
records each cell's outcome. The checks a lab must contain, their points and
the hash of their source come from gencourse/checks/manifest.json, written by
`gencourse labs` from the solutions; a notebook's lab is found by its file
name (NN_name.ipynb), or else by the check ids in its cells' metadata.

No score depends on what the learner's kernel prints or decides. Each check
saves a record of what the learner's code returned on the check's inputs
(see gencourse/checks/__init__.py); the plugin collects it right after the
check cell; this process, where no learner code runs, judges it with the
same check logic (`gencourse.checks.judge`), on inputs drawn from a seed
that is fresh for each grading run. Before running anything, the learner's
own code (cells that differ from the lab's) is read (scan.py) for calls of
an exercise's reference answer and for changes to the checks.

Each check gets one status:

    passed       the grader's judgement of the record: right    points
    failed       the judgement found it wrong (or no record:    0
                 the check did not run its own code)
    errored      the check cell raised something else (a        0
                 NameError, ...) before the check could judge
    not reached  the kernel died, or the cell or notebook       0
                 timed out, before the check finished
    tampered     its source differs from the solution's, or     0, flagged
                 the learner's code changes the checks
    reference    the exercise calls the package's own answer    0, flagged
    missing      no cell carries the check's id                 0

A notebook that could not be graded (missing, not JSON, not a notebook, an
unknown lab, a kernel that would not start) is reported as NOT GRADED, never
as passed.

Exit codes (documented in `gencourse grade --help` too):

    0  the pass mark was met (points earned / points possible >= pass mark,
       over all notebooks; default 0.5)
    1  the pass mark was not met
    2  bad command line
    3  a notebook file is missing
    4  a file is not JSON
    5  a file is JSON but not a notebook
    6  a notebook belongs to no known lab
    7  grader-internal trouble (the kernel cannot start, pytest crashed)

When several notebooks are graded, the others are still graded and
reported; the exit code is the first problem's code (7 wins over all).
"""

import base64
import importlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import nbformat

from gencourse.course import labs, protocol, scan

EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2
EXIT_MISSING, EXIT_NOT_JSON, EXIT_NOT_NOTEBOOK, EXIT_UNKNOWN_LAB, EXIT_INTERNAL = 3, 4, 5, 6, 7
DEFAULT_PASS_MARK = 0.5
DEFAULT_CELL_TIMEOUT = 600.0  # seconds per cell
DEFAULT_TIMEOUT = 1800.0  # seconds per notebook
KERNEL_STARTUP = 60.0  # seconds nbval waits for the kernel to start
MESSAGE_CHARS = 300  # a check's message is cut to this length


class InputProblem(Exception):
    """A notebook that cannot be graded; `code` is the exit code it maps to."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


@dataclass
class CheckResult:
    id: str
    exercise: int
    max_points: int
    status: str = "not reached"
    message: str = ""
    points: int = 0
    cell_errors: list = field(default_factory=list)  # errors and timeouts in the cells before it


@dataclass
class NotebookReport:
    path: str
    lab: str = None
    checks: list = field(default_factory=list)
    problem: str = None  # why the notebook could not be graded (or trouble while running)
    exit_code: int = EXIT_PASS  # nonzero when the notebook could not be graded
    cell_errors: list = field(default_factory=list)  # errors in non-check cells
    notes: list = field(default_factory=list)  # what the scan of the learner's code noticed
    seconds: float = 0.0

    @property
    def graded(self):
        """False when the notebook could not be graded at all (its problem says why)."""
        return self.exit_code not in (EXIT_MISSING, EXIT_NOT_JSON, EXIT_NOT_NOTEBOOK, EXIT_UNKNOWN_LAB,
                                      EXIT_INTERNAL)

    @property
    def points(self):
        return sum(c.points for c in self.checks)

    @property
    def max_points(self):
        return sum(c.max_points for c in self.checks)


# ---------------------------------------------------------------- inputs

def load_manifest(path=None):
    """The check manifest: lab stem -> {check id -> {sha256, points, exercise}}."""
    path = Path(path) if path else Path(__file__).parents[1] / "checks" / "manifest.json"
    if not path.is_file():
        raise RuntimeError(f"no check manifest at {path} (`gencourse labs` writes it)")
    return json.loads(path.read_text(encoding="utf-8"))


def read_notebook(path):
    """The notebook at path (nbformat 4); InputProblem if it is not one."""
    path = Path(path)
    if not path.is_file():
        raise InputProblem(EXIT_MISSING, f"{path}: no such file")
    try:
        data = json.loads(path.read_bytes())
    except (ValueError, UnicodeDecodeError) as e:
        raise InputProblem(EXIT_NOT_JSON, f"{path}: not a notebook, the file is not valid JSON ({short(e)})")
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise InputProblem(EXIT_NOT_NOTEBOOK, f"{path}: JSON, but not a Jupyter notebook (no 'cells' list)")
    try:  # lenient on purpose: a notebook Colab or Jupyter saved slightly off-schema still counts
        nb = nbformat.reads(json.dumps(data), as_version=4)
        if not all(isinstance(c, dict) and "cell_type" in c and "source" in c for c in nb.cells):
            raise ValueError("a cell without 'cell_type' or 'source'")
    except Exception as e:  # nbformat raises several kinds
        raise InputProblem(EXIT_NOT_NOTEBOOK, f"{path}: not a valid notebook ({short(e)})")
    return nb


def identify_lab(path, nb, manifest):
    """The manifest key of a notebook: its file stem, else the lab sharing most check ids."""
    stem = Path(path).stem
    if stem in manifest:
        return stem
    ids = {meta["check"] for _, _, meta in labs.check_cells(nb) if isinstance(meta["check"], str)}
    overlap = {lab: len(ids & set(entry["checks"])) for lab, entry in manifest.items()}
    best = max(overlap, key=overlap.get, default=None)
    if best is None or overlap[best] == 0:
        raise InputProblem(EXIT_UNKNOWN_LAB, f"{path}: not a known lab (expected one of "
                           f"{', '.join(sorted(manifest)) or 'none'}, by name or by its check cells)")
    return best


def find_checks(nb, entry):
    """For each expected check: its code-cell index, or a final CheckResult if tampered/missing."""
    found = {}
    for index, cell, meta in labs.check_cells(nb):
        if isinstance(meta["check"], str):
            found.setdefault(meta["check"], (index, cell))
    located, results = {}, {}
    for check_id, spec in entry.items():
        result = CheckResult(check_id, spec["exercise"], spec["points"])
        results[check_id] = result
        if check_id not in found:
            result.status, result.message = "missing", "the check cell was deleted (or its metadata was)"
        elif labs.source_hash(found[check_id][1].source) != spec["sha256"]:
            result.status, result.message = "tampered", "the check cell's code was changed: restore it from the lab"
        else:
            located[found[check_id][0]] = result
    return located, sorted(results.values(), key=lambda r: (r.exercise, r.id))


# ---------------------------------------------------------------- running

def prepared_copy(nb, folder):
    """Write the notebook to run into folder: outputs cleared, nbval tags off check cells."""
    nb = nbformat.from_dict(json.loads(json.dumps(nb)))
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if "gencourse" in cell.metadata:
                cell.metadata.pop("tags", None)  # e.g. raises-exception would hide a failure
    path = Path(folder) / "notebook.ipynb"
    path.write_text(nbformat.writes(nb), encoding="utf-8")
    return path


def pytest_command(path, results, records, cell_timeout, timeout):
    """The pytest command line that runs one notebook under nbval and our plugin."""
    return [sys.executable, "-m", "pytest", "-p", "nbval.plugin", "-p", "gencourse.course.grade_plugin",
            "-p", "no:cacheprovider", "--nbval-lax", "--nbval-current-env",
            f"--nbval-cell-timeout={cell_timeout}", f"--nbval-kernel-startup-timeout={KERNEL_STARTUP}",
            f"--gencourse-results={results}", f"--gencourse-timeout={timeout}",
            f"--gencourse-records={records}",
            "-c", str(path.parent / "pytest.ini"), "--rootdir", str(path.parent),
            "-q", "--tb=no", "--no-header", "-W", "ignore", path.name]


def subprocess_env(records=None, seed=0, jobs=1):
    """The environment of the run: fast profile by default, no outside pytest options, the folder
    for check records and the run's seed offset (inherited by the kernel). With several jobs, each
    kernel gets its share of the cores: more threads than cores make every job wait on the others."""
    env = dict(os.environ)
    env.setdefault("GENCOURSE_PROFILE", "fast")
    if jobs > 1:
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(name, str(max(1, (os.cpu_count() or 1) // jobs)))
    env["PYTEST_DISABLE_PLUGIN_AUTOLOAD"] = "1"
    for name in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS", "PYTEST_XDIST_WORKER", protocol.SELFTEST_ENV):
        env.pop(name, None)
    if records:
        env[protocol.RECORDS_ENV] = str(records)
    env[protocol.SEED_ENV] = str(seed)
    return env


def run_notebook(nb, cell_timeout, timeout, seed=0, jobs=1):
    """Run nb under nbval in a temp folder; return ({code cell: record}, problem or None, internal?).

    The kernel works in one folder (the notebook, and the records folder it writes to); the plugin's
    results go to another that the kernel is not told about.
    """
    with tempfile.TemporaryDirectory(prefix="gencourse-grade-") as folder, \
            tempfile.TemporaryDirectory(prefix="gencourse-judge-") as private:
        path = prepared_copy(nb, folder)
        (path.parent / "pytest.ini").write_text("[pytest]\n")
        records = Path(folder) / ".records"
        records.mkdir()
        results, log = Path(private) / "results.jsonl", Path(private) / "pytest.log"
        command = pytest_command(path, results, records, cell_timeout, timeout)
        with open(log, "wb") as out:
            rc = run_killable(command, folder, out, timeout + KERNEL_STARTUP + 30, subprocess_env(records, seed, jobs))
        cells = read_records(results)
        tail = log.read_bytes()[-1500:].decode("utf-8", "replace")
    if rc is None:
        return cells, f"stopped after {timeout:g} s, the notebook's time limit", False
    if rc not in (0, 1, 5):
        return cells, f"pytest stopped with exit code {rc}: {tail.strip()[-600:]}", True
    if cells and all(r["phase"] == "setup" and r["exc"] for r in cells.values()):
        return cells, f"the kernel could not start: {next(iter(cells.values()))['exc']}", True
    return cells, None, False


def run_killable(command, cwd, out, limit, env=None):
    """Run command with a hard time limit; its process group is killed past it. None if killed."""
    proc = subprocess.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                            env=env or subprocess_env(), start_new_session=True)
    try:
        return proc.wait(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return None


def read_records(path):
    """The plugin's JSON lines as {code cell index: record}."""
    if not path.exists():
        return {}
    records = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue  # a line cut short by a kill
        records[record["cell"]] = record
    return records


def verdict(record, cell_timeout):
    """(status, message) of a check cell from its plugin record (None: never ran)."""
    if record is None:
        return "not reached", "the notebook stopped before this check (see the notebook's problems)"
    if record["skipped"]:
        return "not reached", record["skipped"]
    if record["timed_out"]:
        return "not reached", f"timed out (cell limit {cell_timeout:g} s, or the notebook's): an endless loop?"
    if record["kernel_died"] and "dead on test start" in (record["exc"] or ""):
        return "not reached", "the kernel had died in an earlier cell (a crash, or exit() in the code)"
    if record["kernel_died"]:
        return "not reached", "the kernel died while this cell ran (a crash, or exit() in the code)"
    if record["error"]:
        error = record["error"]
        status = "failed" if error["ename"] == "AssertionError" else "errored"
        return status, short(f"{error['ename']}: {error['evalue']}")
    if record["exc"]:
        return "errored", short(record["exc"])
    return "passed", ""


def cell_problems(records, check_cells, cell_timeout, limit=5):
    """[(code cell index, description)] of errors and timeouts in cells that are not checks."""
    problems = []
    for index in sorted(records):
        status, message = verdict(records[index], cell_timeout)
        if status != "passed" and index not in check_cells:
            problems.append((index, f"code cell {index}: {message}"))
        if status == "not reached":
            break  # the cells after it tell nothing new
    return problems[:limit]


def judged(record, check_id, seed, cell_timeout):
    """(status, message) of one check: the grader's judgement of its record, else what its cell did."""
    status, message = verdict(record, cell_timeout)
    data = (record or {}).get("records", {}).get(check_id)
    if data is not None and status != "not reached":  # a cell cut short leaves a record cut short
        with JUDGING:  # one at a time: a judgement captures sys.stdout
            return importlib.import_module("gencourse.checks").judge(check_id, base64.b64decode(data), seed)
    if status == "passed":  # the cell ran, but the check's own code did not
        return "failed", ("the check cell ran but the check left no record, so nothing was judged: was "
                          "gencourse.checks changed before it ran?")
    return status, message


JUDGING = threading.Lock()


def learner_code(nb, entry):
    """[(code cell index, source, written by the learner?)] and {learner cell: exercise it belongs to}.

    A cell is the learner's when its source is not one of the lab's own cells (nor a check cell). It
    belongs to the exercise whose TODO it held (by cell id), else to the exercise of the next check.
    """
    lab_code = set(entry["code"])
    cell_exercise = {cid: spec["exercise"] for spec in entry["checks"].values() for cid in spec["cells"]}
    check_at = {i: meta["check"] for i, _, meta in labs.check_cells(nb)}
    cells, owners, pending, index = [], {}, [], 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        check = check_at.get(index)
        learners = check is None and labs.source_hash(cell.source) not in lab_code
        cells.append((index, cell.source, learners))
        if learners:
            if cell.get("id") in cell_exercise:
                owners[index] = cell_exercise[cell.get("id")]
            else:
                pending.append(index)
        if check in entry["checks"]:
            for i in pending:
                owners[i] = entry["checks"][check]["exercise"]
            pending = []
        index += 1
    return cells, owners


def apply_findings(report, findings, entry):
    """Zero the checks that the scan of the learner's code flags, and say why."""
    for result in report.checks:
        if result.status in ("tampered", "missing"):
            continue
        tampering = findings.tampered.get(result.id) or findings.tampered.get("*")
        if tampering:
            result.status, result.message, result.points = "tampered", f"{tampering}: the checks were changed", 0
        elif result.exercise in findings.references:
            result.status, result.points = "reference", 0
            result.message = f"{findings.references[result.exercise]}; write your own"
    report.notes = findings.notes[:5]


def grade_notebook(path, manifest, cell_timeout=DEFAULT_CELL_TIMEOUT, timeout=DEFAULT_TIMEOUT, seed=0, jobs=1):
    """The NotebookReport of one notebook; never raises for bad notebooks."""
    report, start = NotebookReport(str(path)), time.monotonic()
    try:
        nb = read_notebook(path)
        report.lab = identify_lab(path, nb, manifest)
    except InputProblem as e:
        report.problem, report.exit_code = str(e), e.code
        stem = Path(path).stem
        if stem in manifest:  # a known lab that is broken still counts its points as lost
            report.lab = stem
            report.checks = [CheckResult(i, s["exercise"], s["points"], "not reached", "the notebook could not be read")
                             for i, s in sorted(manifest[stem]["checks"].items(),
                                                key=lambda x: (x[1]["exercise"], x[0]))]
        return report
    entry = manifest[report.lab]
    located, report.checks = find_checks(nb, entry["checks"])
    cells, owners = learner_code(nb, entry)
    findings = scan.scan(cells, {c: s["exercise"] for c, s in entry["checks"].items()}, owners,
                         {c: s["function"] for c, s in entry["checks"].items()},
                         {c: s.get("references", ()) for c, s in entry["checks"].items()})
    records, problem, internal = run_notebook(nb, cell_timeout, timeout, seed, jobs)
    for index, result in located.items():
        result.status, result.message = judged(records.get(index), result.id, seed, cell_timeout)
        result.points = result.max_points if result.status == "passed" else 0
    apply_findings(report, findings, entry)
    problems = cell_problems(records, located, cell_timeout)
    report.cell_errors = [text for _, text in problems]
    for cell, text in problems:  # beside the first check after the cell that went wrong
        after = [i for i in sorted(located) if i > cell]
        if after:
            located[after[0]].cell_errors.append(text)
    if problem:
        report.problem = short(problem, 1000)
        report.exit_code = EXIT_INTERNAL if internal else EXIT_PASS
    report.seconds = round(time.monotonic() - start, 1)
    return report


def grade(paths, manifest=None, pass_mark=DEFAULT_PASS_MARK,
          cell_timeout=DEFAULT_CELL_TIMEOUT, timeout=DEFAULT_TIMEOUT, jobs=1, seed=None):
    """Grade notebooks, `jobs` at a time (each in its own kernel and folder); return the whole report as a
    JSON-able dict (with its exit code). `seed` moves every check's inputs; fresh for each run by default."""
    manifest = manifest if isinstance(manifest, dict) else load_manifest(manifest)
    seed = secrets.randbelow(2**31 - 1) + 1 if seed is None else int(seed)
    # the checks (and torch) are needed only to judge: import them while the first notebook runs
    threading.Thread(target=importlib.import_module, args=("gencourse.checks",), daemon=True).start()
    with ThreadPoolExecutor(max_workers=max(1, int(jobs))) as pool:
        notebooks = list(pool.map(lambda p: grade_notebook(p, manifest, cell_timeout, timeout, seed, jobs), paths))
    points = sum(n.points for n in notebooks)
    max_points = sum(n.max_points for n in notebooks)
    score = points / max_points if max_points else 0.0
    not_graded = sum(not n.graded for n in notebooks)
    report = {"points": points, "max_points": max_points, "score": round(score, 4),
              "pass_mark": pass_mark, "passed": not not_graded and max_points > 0 and score >= pass_mark,
              "not_graded": not_graded, "seed": seed,
              "notebooks": [notebook_dict(n, pass_mark) for n in notebooks]}
    report["verdict"] = "NOT GRADED" if not_graded else ("PASSED" if report["passed"] else "NOT PASSED")
    report["exit_code"] = exit_code(notebooks, report["passed"])
    return report


def notebook_dict(n, pass_mark=DEFAULT_PASS_MARK):
    """A NotebookReport as a JSON-able dict, with its totals and verdict."""
    d = asdict(n)
    d["points"], d["max_points"], d["graded"] = n.points, n.max_points, n.graded
    passed = n.max_points > 0 and n.points / n.max_points >= pass_mark
    d["verdict"] = "NOT GRADED" if not n.graded else ("PASSED" if passed else "NOT PASSED")
    return d


def exit_code(notebooks, passed):
    """7 if any grader trouble, else the first input problem's code, else 0/1."""
    codes = [n.exit_code for n in notebooks if n.exit_code]
    if EXIT_INTERNAL in codes:
        return EXIT_INTERNAL
    return codes[0] if codes else (EXIT_PASS if passed else EXIT_FAIL)


def short(text, limit=MESSAGE_CHARS):
    """text on one line, cut to limit characters."""
    text = re.sub(r"\s+", " ", str(text)).strip()
    return text if len(text) <= limit else text[: limit - 3] + "..."


# ---------------------------------------------------------------- reports

ICONS = {"passed": "✅", "failed": "❌", "errored": "💥", "not reached": "⏱️",
         "tampered": "🚫", "reference": "🚫", "missing": "❓"}


def total_line(report):
    """The last line of a report: points, score and the verdict (NOT GRADED when a notebook could not be)."""
    head = f"total {report['points']}/{report['max_points']}"
    if report["not_graded"]:
        n = report["not_graded"]
        return f"{head}: NOT GRADED ({n} of {len(report['notebooks'])} could not be graded; see the problems above)"
    return f"{head} ({report['score']:.0%}, pass mark {report['pass_mark']:.0%}): {report['verdict']}"


def to_markdown(report):
    """The report as Markdown for a GitHub job summary."""
    lines = [f"## Lab grades: {total_line(report)}", ""]
    for n in report["notebooks"]:
        lines += notebook_markdown(n)
    return "\n".join(lines) + "\n"


def notebook_markdown(n):
    """One notebook's section: title, problems, then a table of its checks."""
    lines = [f"### `{n['path']}` ({n['lab'] or 'unknown lab'}): {n['points']}/{n['max_points']} points, "
             f"{n['verdict']}", ""]
    if n["problem"]:
        lines += [f"> **Problem:** {md_cell(n['problem'])}", ""]
    unplaced = [e for e in n["cell_errors"] if not any(e in c["cell_errors"] for c in n["checks"])]
    lines += [f"- {md_cell(e)}" for e in unplaced + n["notes"]] + ([""] if unplaced + n["notes"] else [])
    if n["checks"]:
        lines += ["| Check | Exercise | Status | Points | Message |", "|---|---|---|---|---|"]
        for c in n["checks"]:
            before = "".join(f"<br>⚠️ before it, {md_cell(e)}" for e in c["cell_errors"])
            lines.append(f"| `{c['id']}` | {c['exercise']} | {ICONS[c['status']]} {c['status']} "
                         f"| {c['points']}/{c['max_points']} | {md_cell(c['message'])}{before} |")
        lines.append("")
    return lines


def md_cell(text):
    """text made safe inside a Markdown table cell."""
    return short(text).replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")


def to_table(report):
    """A short plain-text table for the terminal."""
    lines = []
    for n in report["notebooks"]:
        lines.append(f"{n['path']} [{n['lab'] or 'unknown lab'}]  {n['points']}/{n['max_points']}  {n['verdict']}")
        if n["problem"]:
            lines.append(f"  problem: {short(n['problem'], 200)}")
        for note in n["notes"]:
            lines.append(f"  note: {short(note, 200)}")
        for c in n["checks"]:
            for error in c["cell_errors"]:
                lines.append(f"  {'':<12}{'':>7} before it, {short(error, 120)}")
            lines.append(f"  {c['status']:<12}{c['points']:>3}/{c['max_points']:<3} {c['id']}"
                         + (f"  {short(c['message'], 100)}" if c["message"] else ""))
    lines.append(total_line(report))
    return "\n".join(lines)
