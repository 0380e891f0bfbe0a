"""The `gencourse` command: `labs`, `grade` and `workflow`.

    gencourse labs [--root DIR] [--check]      labs/ and the check manifest from solutions/
    gencourse grade NOTEBOOK... [options]      score lab notebooks (see course/grading.py)
    gencourse workflow                         print a GitHub Actions workflow for learners' repos
    gencourse execute SOLUTION...              maintainers: re-run solutions, storing their outputs
                                               (progress bars as text, see course/outputs.py)
"""

import argparse
import json
import sys
from pathlib import Path

from gencourse.course import grading, labs, outputs

GRADE_DESCRIPTION = """\
Run each notebook with nbval (lax mode) on a copy in a temporary folder (your
file is only read), with GENCOURSE_PROFILE=fast unless it is set, and score
its check cells against the course's manifest. Prints a table; --json and
--markdown write the full report."""

GRADE_EPILOG = """\
exit codes:
  0  pass mark met (points earned / points possible, over all notebooks)
  1  pass mark not met
  2  bad command line
  3  a notebook file is missing
  4  a file is not JSON
  5  a file is JSON but not a notebook
  6  a notebook belongs to no known lab (by file name NN_name or by its check cells)
  7  grader-internal trouble (the kernel cannot start, pytest crashed)
With several notebooks all are graded; the exit code is the first problem's
code, 7 before any other. Check statuses: passed, failed (AssertionError),
errored (any other exception), not reached (timeout, kernel died),
tampered (check cell changed: 0 points), missing (check cell deleted: 0 points).
"""

LABS_EPILOG = """\
exit codes: 0 up to date (or written), 1 --check found differences,
2 a solution notebook breaks the conventions (unbalanced regions, bad check metadata).
"""


def fraction(text):
    """argparse type: a number between 0 and 1."""
    value = float(text)
    if not 0 <= value <= 1:
        raise argparse.ArgumentTypeError("must be a fraction between 0 and 1, e.g. 0.5")
    return value


def positive(text):
    """argparse type: a number of seconds > 0."""
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a number of seconds > 0")
    return value


def parser():
    """The argument parser of every subcommand."""
    p = argparse.ArgumentParser(prog="gencourse", description="Tools of the gencourse course.")
    sub = p.add_subparsers(dest="command", required=True)
    lab = sub.add_parser("labs", help="generate labs/ and the check manifest from solutions/",
                         epilog=LABS_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    lab.add_argument("--root", default=".", help="the course repository (default: the current folder)")
    lab.add_argument("--check", action="store_true",
                     help="write nothing; exit 1 naming every file that differs from a fresh generation")
    g = sub.add_parser("grade", help="grade lab notebooks check by check", description=GRADE_DESCRIPTION,
                       epilog=GRADE_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    g.add_argument("notebooks", nargs="+", metavar="NOTEBOOK")
    g.add_argument("--json", metavar="FILE", help="write the full report as JSON")
    g.add_argument("--markdown", metavar="FILE", help="write a Markdown summary (e.g. for $GITHUB_STEP_SUMMARY)")
    g.add_argument("--pass-mark", type=fraction, default=grading.DEFAULT_PASS_MARK, metavar="P",
                   help="fraction of all points needed to pass, 0..1 (default %(default)s)")
    g.add_argument("--cell-timeout", type=positive, default=grading.DEFAULT_CELL_TIMEOUT, metavar="S",
                   help="seconds a cell may run (default %(default)g)")
    g.add_argument("--timeout", type=positive, default=grading.DEFAULT_TIMEOUT, metavar="S",
                   help="seconds a whole notebook may run (default %(default)g)")
    g.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="grade N notebooks at a time, each in its own kernel and folder (default 1)")
    g.add_argument("--seed", type=int, default=None, metavar="N",
                   help="the seed that moves every check's inputs (default: fresh for each run; the report "
                        "records it, so that a teacher can grade again on the same inputs)")
    g.add_argument("--manifest", help=argparse.SUPPRESS)  # tests: a manifest other than the package's
    sub.add_parser("workflow", help="print the GitHub Actions workflow that grades labs on every push")
    ex = sub.add_parser("execute", help="maintainers: run solution notebooks and store their outputs in place")
    ex.add_argument("notebooks", nargs="+", metavar="SOLUTION")
    ex.add_argument("--cell-timeout", type=positive, default=grading.DEFAULT_CELL_TIMEOUT, metavar="S")
    return p


def run_labs(args):
    """`gencourse labs`: write (or with --check, compare) labs and manifest."""
    try:
        files = labs.generate(args.root)
    except labs.LabError as e:
        print(f"gencourse labs: {e}", file=sys.stderr)
        return 2
    problems = labs.differences(args.root, files)
    if args.check:
        for problem in problems:
            print(f"out of date: {problem}")
        if problems:
            print("run `make labs` (gencourse labs) and commit the result", file=sys.stderr)
        return 1 if problems else 0
    for path in labs.write(args.root, files):
        print(f"wrote {path}")
    for problem in problems:
        if "orphan" in problem:
            print(f"warning: {problem}", file=sys.stderr)
    return 0


def run_grade(args):
    """`gencourse grade`: grade, print a table, write the reports; return the exit code."""
    inputs = {Path(n).resolve() for n in args.notebooks}
    for option, out in (("--json", args.json), ("--markdown", args.markdown)):
        if out and Path(out).resolve() in inputs:
            print(f"gencourse grade: {option} {out} would overwrite a notebook being graded; "
                  "choose another file name", file=sys.stderr)
            return 2
    try:
        if args.jobs < 1:
            print("gencourse grade: --jobs must be at least 1", file=sys.stderr)
            return 2
        report = grading.grade(args.notebooks, args.manifest, args.pass_mark,
                               args.cell_timeout, args.timeout, jobs=args.jobs, seed=args.seed)
        print(grading.to_table(report))
        if args.json:
            Path(args.json).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        if args.markdown:
            Path(args.markdown).write_text(grading.to_markdown(report), encoding="utf-8")
    except Exception as e:  # the grader's own trouble: one clear line, never a traceback
        print(f"gencourse grade: internal error: {type(e).__name__}: {grading.short(e)}", file=sys.stderr)
        return grading.EXIT_INTERNAL
    return report["exit_code"]


def run_workflow(args):
    """`gencourse workflow`: print the grading workflow template."""
    sys.stdout.write((Path(__file__).parent / "templates" / "grade-labs.yml").read_text(encoding="utf-8"))
    return 0


def run_execute(args):
    """`gencourse execute`: re-run solution notebooks top to bottom and store their outputs.

    Only notebooks in a folder named solutions/ are accepted: a learner's lab is never rewritten.
    """
    import time

    import nbformat
    from nbclient import NotebookClient

    paths = [Path(n) for n in args.notebooks]
    bad = [str(p) for p in paths if p.resolve().parent.name != "solutions" or not p.is_file()]
    if bad:
        print(f"gencourse execute: only existing notebooks in solutions/ are executed in place, not {bad}",
              file=sys.stderr)
        return 2
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=args.cell_timeout, kernel_name="python3", record_timing=False,
                       resources={"metadata": {"path": str(path.parent)}}).execute()
        for cell in nb.cells:  # timestamps would make every re-execution a diff of every cell
            cell.metadata.pop("execution", None)
        outputs.widgets_as_text(nb)  # progress bars as text: the book reads them offline
        nbformat.write(nb, path)
        print(f"executed {path} in {time.perf_counter() - start:.0f} s")
    return 0


def main(argv=None):
    args = parser().parse_args(argv)
    commands = {"labs": run_labs, "grade": run_grade, "workflow": run_workflow, "execute": run_execute}
    return commands[args.command](args)


if __name__ == "__main__":
    sys.exit(main())
