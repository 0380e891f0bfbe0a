"""pytest plugin for `gencourse grade`: records what happened to each notebook cell.

`gencourse grade` (grading.py) runs `pytest --nbval-lax -p gencourse.course.grade_plugin`
on a copy of one notebook. nbval makes one test item per code cell and runs
them in one kernel; this plugin appends one JSON line per cell to the file
named by `--gencourse-results`:

    {"cell": 3, "phase": "call", "error": {"ename": ..., "evalue": ...},
     "exc": "...", "timed_out": false, "kernel_died": false, "skipped": null,
     "records": {"<check id>": "<base64 of the record file>"}}

`records` holds the check records (gencourse.checks.graded) that the kernel
saved in the folder `--gencourse-records` while this cell ran: the folder is
emptied before each cell and read right after it, so a record can only come
from the cell that wrote it.

It also makes two failures cheap that nbval alone waits out: a kernel that
dies (`os._exit(1)`) is noticed within a second, and `--gencourse-timeout`
caps the whole notebook (later cells are skipped as "not reached").
Not meant to be used by hand.
"""

import base64
import json
import time
from pathlib import Path
from queue import Empty

import pytest
from nbval.kernel import RunningKernel

MAX_TEXT = 2000  # characters kept of any exception text
MAX_RECORD = 64 * 2**20  # bytes of one check record kept (gencourse.checks.MAX_RECORD_BYTES)
DEADLINE = float("inf")  # time.monotonic() after which no cell may run


class KernelDied(RuntimeError):
    """The kernel process exited while a cell was running."""


def pytest_addoption(parser):
    group = parser.getgroup("gencourse", "gencourse grading")
    group.addoption("--gencourse-results", default=None, help="JSON-lines file for cell outcomes")
    group.addoption("--gencourse-timeout", type=float, default=None,
                    help="seconds for the whole notebook")
    group.addoption("--gencourse-records", default=None, help="the folder the kernel saves check records to")


def pytest_configure(config):
    global DEADLINE
    if config.option.gencourse_timeout:
        DEADLINE = time.monotonic() + config.option.gencourse_timeout
    RunningKernel.await_reply = await_reply


def await_reply(self, msg_id, timeout=None):
    """nbval's RunningKernel.await_reply, polling each second for a dead kernel.

    Raises queue.Empty at the cell timeout or the notebook deadline, as nbval
    expects, and KernelDied when the kernel process has exited.
    """
    end = min(DEADLINE, time.monotonic() + timeout if timeout else float("inf"))
    while True:
        remaining = end - time.monotonic()
        if remaining <= 0:
            raise Empty
        try:
            msg = self.get_message(stream="shell", timeout=min(1.0, remaining))
        except Empty:
            if not self.is_alive():
                raise KernelDied("the kernel died (it crashed or the code exited it)")
            continue
        if msg["parent_header"].get("msg_id") == msg_id:
            if msg["content"]["status"] == "aborted":
                raise RuntimeError("Kernel aborted execution request")
            return


def pytest_runtest_setup(item):
    if not hasattr(item, "cell_num"):
        return
    take_records(item.config.option.gencourse_records)  # nothing written before this cell counts
    if time.monotonic() >= DEADLINE:
        pytest.skip("the notebook's time limit was reached before this cell")
    item.gencourse_timed_out_before = item.parent.timed_out


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    path = item.config.option.gencourse_results
    if not path or not hasattr(item, "cell_num"):
        return
    if call.when == "call" or (call.when == "setup" and report.outcome != "passed"):
        line = record(item, call, report)
        line["records"] = take_records(item.config.option.gencourse_records)
        with open(path, "a", encoding="utf-8") as f:
            f.write(json.dumps(line) + "\n")


def take_records(folder):
    """{check id: base64 record} of the files in the records folder, which is left empty."""
    taken = {}
    if not folder or not Path(folder).is_dir():
        return taken
    for path in Path(folder).iterdir():
        try:
            if path.suffix == ".pt" and path.is_file() and path.stat().st_size <= MAX_RECORD:
                taken[path.stem] = base64.b64encode(path.read_bytes()).decode("ascii")
            path.unlink()
        except OSError:
            continue
    return taken


def record(item, call, report):
    """The JSON-able outcome of one cell."""
    exc = call.excinfo.value if call.excinfo else None
    skipped = None  # a cell nbval marked xfail (after a timeout) still ran: not skipped
    if report.skipped and not hasattr(report, "wasxfail"):
        skipped = short(getattr(exc, "msg", None) or str(exc or "skipped"))
    return {
        "cell": item.cell_num,
        "phase": call.when,
        "error": last_error(item.test_outputs or []),
        "exc": None if exc is None or skipped else short(f"{type(exc).__name__}: {exc}"),
        "timed_out": bool(item.parent.timed_out
                          and not getattr(item, "gencourse_timed_out_before", True)),
        "kernel_died": isinstance(exc, KernelDied) or "Kernel dead" in str(exc or ""),
        "skipped": skipped,
        "duration": round(call.duration, 3),
    }


def last_error(outputs):
    """ename/evalue of the last error output of a cell, or None."""
    errors = [o for o in outputs if o.get("output_type") == "error"]
    if not errors:
        return None
    return {"ename": short(errors[-1].get("ename", "")), "evalue": short(errors[-1].get("evalue", ""))}


def short(text):
    """At most MAX_TEXT characters of text."""
    text = str(text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + " ... [truncated]"
