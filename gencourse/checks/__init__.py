"""Graded checks, one module per lab (gencourse.checks.<lab>.<check>).

A check prints one short line when the learner's code is right, and raises
AssertionError with a message that says what is wrong and where to look when
it is not, including when the exercise still raises NotImplementedError.
Checks compare with the package's reference under a fixed seed, with numeric
tolerances, never exact strings.

This module is the one place for what every check does:

    call, expect_tensor      run the learner's function, check what it returns
    close, first_difference  compare with the reference, within RTOL and ATOL
    recognise, mismatch      name the usual mistake ("slip"), else where the answer first differs
    seeded, fixed            inputs and models from their own seed, the learner's random state untouched
    passed                   the one line printed when the answer is right
    use                      the learner's function where it passes its check, else the package's reference
    graded, observe, judge   the record a grader judges (below)

How a score is established outside the learner's kernel
-------------------------------------------------------
A check runs in the learner's kernel and gives feedback there; nothing it
prints or raises is trusted. Every public check is `@graded`: while it runs,
`call` records what the learner's function returned (or the error it raised)
and `observe` records what the check reads off the objects the learner's code
touched (a model's weights after a training step, the gradient of a returned
loss). Under `gencourse grade` the record is saved (with `torch.save`, only
tensors, numbers, strings and containers) to the folder named by
GENCOURSE_CHECK_RECORDS. The grader's own process, where no learner code has
run, loads it with `torch.load(weights_only=True)` and runs the same check
function again in replay mode (`judge`): `call` and `observe` return the
recorded values instead of running anything, so the verdict comes from the
same check logic, on the same inputs, with the real torch. The inputs are
fresh for each grading run: `seeded` and `fixed` add GENCOURSE_CHECK_SEED to
every seed, so a record made in advance (or copied from another learner)
does not fit. With GENCOURSE_CHECK_SELFTEST=1 (set by the tests) every check
replays its own record at once and fails loudly if kernel and grader disagree.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import importlib
import io
import math
import os
import warnings
from pathlib import Path

import torch

from ..course.protocol import RECORDS_ENV, SEED_ENV, SELFTEST_ENV  # noqa: F401  (re-exported)

RTOL, ATOL = 1e-4, 1e-5   # float32 arithmetic done in another order stays well within these


# ----------------------------------------------------------------------------- calling the learner's code

def call(exercise: str, fn, *args, **kwargs):
    """Call the learner's `fn`; turn "not written yet" and crashes into teaching messages.

    The one place where a check runs learner code. Inside a `@graded` check it records what came
    back; when the grader replays the check, it returns the recorded value and runs nothing.
    """
    session = _SESSION.get()
    if session is not None and session.replaying:
        return session.replay("call", exercise)
    try:
        result = _call(exercise, fn, *args, **kwargs)
    except AssertionError as err:
        if session is not None:
            session.add("raised", exercise, str(err))
        raise
    if session is not None:
        session.add("call", exercise, encode(result))
    return result


def _call(exercise: str, fn, *args, **kwargs):
    if not callable(fn):
        raise AssertionError(f"Exercise {exercise}: expected a function, got {type(fn).__name__}; "
                             "run the cell that defines it first")
    name = getattr(fn, "__name__", "your function")
    try:
        return fn(*args, **kwargs)
    except NotImplementedError:
        raise AssertionError(f"Exercise {exercise} is not done yet: {name} still raises NotImplementedError. "
                             "Replace the `raise NotImplementedError(...)` line with your code.") from None
    except Exception as err:
        raise AssertionError(f"Exercise {exercise}: {name} raised {type(err).__name__}: {err}") from None


def observe(what: str, value):
    """`value` (or value() when it is a function), recorded for the grader; replayed from the record there.

    Wrap every reading of an object that the learner's code may have changed, or that needs the live
    result (a gradient through the returned loss): the grader cannot run the learner's code again.
    """
    session = _SESSION.get()
    if session is not None and session.replaying:
        return session.replay("observe", what)
    if callable(value):
        try:
            value = value()
        except Exception as err:
            message = f"while checking {what}: {type(err).__name__}: {err}"
            if session is not None:
                session.add("broke", what, message)
            raise RuntimeError(message) from None
    if session is not None:
        session.add("observe", what, encode(value))
    return value


def describe(value) -> str:
    """What a returned value is, for messages: its shape if a tensor, else its type."""
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else type(value).__name__


def expect_tensor(exercise: str, what: str, value, shape: tuple) -> torch.Tensor:
    """Assert that `value` is a float tensor of `shape`."""
    if not isinstance(value, torch.Tensor):
        raise AssertionError(f"Exercise {exercise}: {what} should be a torch.Tensor, got {type(value).__name__}")
    if tuple(value.shape) != tuple(shape):
        raise AssertionError(f"Exercise {exercise}: {what} should have shape {tuple(shape)}, got {tuple(value.shape)}")
    if not value.is_floating_point():
        raise AssertionError(f"Exercise {exercise}: {what} should hold floats, got {value.dtype}")
    if not torch.isfinite(value).all():
        raise AssertionError(f"Exercise {exercise}: {what} contains NaN or infinite values")
    return value


def passed(message: str) -> None:
    print(f"\u2713 {message}")


# ----------------------------------------------------------------------------- fixed inputs, untouched random state

def gradients(what: str, out, inputs: list) -> tuple:
    """d out / d each input through the learner's result, None where none reaches; recorded for the grader.

    `out` is built from what the learner's function returned (e.g. got.sum()); the grader replays the
    recorded gradients, since the graph behind `out` lives only in the learner's kernel.
    """
    def compute():
        if not isinstance(out, torch.Tensor) or not out.requires_grad:
            return (None,) * len(inputs)
        return tuple(torch.autograd.grad(out, inputs, allow_unused=True, retain_graph=True))
    return observe(what, compute)


def seeded(seed: int) -> torch.Generator:
    """A generator of its own: checks draw their inputs from it, never from the global random state.

    Under `gencourse grade` every seed is moved by the grading run's own offset (fresh inputs).
    """
    return torch.Generator().manual_seed(seed + seed_offset())


def fixed(build, seed: int = 0):
    """build() under torch.manual_seed(seed), without touching the learner's global random state."""
    with torch.random.fork_rng():
        torch.manual_seed(seed + seed_offset())
        return build()


# ----------------------------------------------------------------------------- comparing with the reference

def _as_tensor(value) -> torch.Tensor | None:
    """A tensor for a tensor or a real number (float64 on the CPU, detached); None for anything else."""
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().double()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return torch.tensor(float(value), dtype=torch.float64)
    return None


def close(got, want, rtol: float = RTOL, atol: float = ATOL) -> bool:
    """True when `got` has the shape of `want` and every entry lies within atol + rtol * |want|.

    Tensors and plain numbers both work; dtypes and devices may differ. NaN is never close.
    """
    a, b = _as_tensor(got), _as_tensor(want)
    if a is None or b is None or a.shape != b.shape:
        return False
    return bool(torch.allclose(a, b, rtol=rtol, atol=atol))


def first_difference(got, want) -> tuple[tuple[int, ...], float, float]:
    """Where `got` and `want` (same shape) differ most: (index, got there, want there).

    The index is a position in every dimension, e.g. (2, 5) for row 2, column 5; () for a number.
    A NaN in `got` counts as the largest difference.
    """
    a, b = _as_tensor(got), _as_tensor(want)
    if a is None or b is None or a.shape != b.shape:
        raise ValueError(f"first_difference needs two tensors of one shape, got {describe(got)} and {describe(want)}")
    if a.dim() == 0:
        return (), float(a), float(b)
    gap = (a - b).abs().nan_to_num(nan=math.inf)
    index = tuple(int(i) for i in torch.unravel_index(gap.argmax(), gap.shape))
    return index, float(a[index]), float(b[index])


def position(index: tuple, dims: tuple | None = None) -> str:
    """An index for messages: "[2, 5]", or with names for the dimensions "(row 2, column 5)"."""
    if dims:
        return "(" + ", ".join(f"{name} {i}" for name, i in zip(dims, index)) + ")"
    return "[" + ", ".join(str(i) for i in index) + "]"


def _number(x: float) -> str:
    return f"{x:.5g}"


# ----------------------------------------------------------------------------- saying what is wrong

def recognise(got, want, slips, rtol: float = RTOL, atol: float = ATOL) -> str | None:
    """The message of the first slip (value, message) that `got` matches while not matching `want`."""
    if close(got, want, rtol, atol):
        return None
    for value, message in slips:
        if close(got, value, rtol, atol):
            return message
    return None


def mismatch(exercise: str, what: str, got, want, where: str = "", slips=(), *, dims: tuple | None = None,
             hint: str = "", rtol: float = RTOL, atol: float = ATOL) -> AssertionError:
    """The AssertionError to raise when `got` (the learner's `what`) differs from the reference `want`.

    If `got` matches one of the slips, a (value, message) sequence, the message is
    "Exercise {exercise}: {message}". Otherwise it names the first difference: for a number,
    "{what} is ..., expected ..."; for a tensor, the position where it differs most (`dims` names
    the dimensions: "(row 2, column 5)", else "[2, 5]"). `where` says for which inputs, `hint`
    how to find the mistake.
    """
    message = recognise(got, want, slips, rtol, atol)
    if message is not None:
        return AssertionError(f"Exercise {exercise}: {message}")
    at = f" {where}" if where else ""
    tail = f" {hint}" if hint else ""
    a, b = _as_tensor(got), _as_tensor(want)
    if a is None or b is None or a.shape != b.shape:
        return AssertionError(f"Exercise {exercise}: {what}{at} should have shape {describe(want)}, "
                              f"got {describe(got)}.{tail}")
    index, g, w = first_difference(a, b)
    if not index:
        return AssertionError(f"Exercise {exercise}: {what} is {_number(g)}, expected {_number(w)}{at}.{tail}")
    return AssertionError(f"Exercise {exercise}: your answer differs from the reference{at}: at position "
                          f"{position(index, dims)} of {what} you give {_number(g)}, expected {_number(w)}.{tail}")


# ----------------------------------------------------------------------------- training with the learner's code

def use(check, mine, reference, what: str):
    """`mine` if it passes `check` (run silently), else `reference`; prints one line saying which.

    Labs train with the learner's function only once it is right: a wrong loss would waste the
    training run and hide the lesson. `what` names the function for the message, e.g. "generator loss".
    """
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(mine)
    except AssertionError:
        target = getattr(reference, "func", reference)   # a functools.partial names its function
        module = getattr(target, "__module__", None) or "gencourse"
        name = getattr(target, "__qualname__", None) or getattr(target, "__name__", None) or type(target).__name__
        print(f"\u2717 your {what} does not pass its check yet, so the lab uses the package's reference: "
              f"{module}.{name}")
        return reference
    print(f"\u2713 from here on the lab uses your {what}")
    return mine


# ----------------------------------------------------------------------------- the record the grader judges

MAX_RECORD_BYTES = 64 * 2**20             # a record larger than this is not judged
_MAX_DEPTH, _MAX_ITEMS = 12, 10_000       # deeper or longer containers are recorded as opaque
_CHECKS: dict = {}                        # check id -> the undecorated check function
REFERENCES: dict = {}                     # check id -> dotted names of the package's answers to it
_SESSION: contextvars.ContextVar = contextvars.ContextVar("gencourse_check_session", default=None)


class RecordMismatch(AssertionError):
    """The record does not fit the check (edited, cut short, or written by something else)."""


def seed_offset() -> int:
    """The offset every check seed is moved by: the replayed record's, else GENCOURSE_CHECK_SEED, else 0."""
    session = _SESSION.get()
    if session is not None:
        return session.seed
    try:
        return int(os.environ.get(SEED_ENV, "0"))
    except ValueError:
        return 0


class _Session:
    """What one run of a check records (in the kernel) or replays (in the grader)."""

    def __init__(self, check_id: str, seed: int, events: list | None = None):
        self.check_id, self.seed = check_id, seed
        self.replaying = events is not None
        self.events = list(events) if events is not None else []
        self.position = 0

    def add(self, kind: str, label: str, payload) -> None:
        self.events.append((kind, label, payload))

    def replay(self, kind: str, label: str):
        if self.position >= len(self.events):
            raise RecordMismatch(f"the record of {self.check_id} ends before the check does")
        got_kind, got_label, payload = self.events[self.position]
        self.position += 1
        if got_kind == "raised" and kind == "call" and got_label == label:
            raise AssertionError(payload)
        if got_kind == "broke" and kind == "observe" and got_label == label:
            raise RuntimeError(payload)
        if (got_kind, got_label) != (kind, label):
            raise RecordMismatch(f"the record of {self.check_id} does not fit the check: it holds "
                                 f"{got_kind} {got_label!r} where the check expects {kind} {label!r}")
        return decode(payload)


class Opaque:
    """Stands in for a value that is not recorded as itself (a module, an array): only its type's name."""

    def __init__(self, text: str = ""):
        self._text = text

    def __repr__(self) -> str:
        return self._text or f"<{type(self).__name__}>"


@functools.lru_cache(maxsize=None)
def _opaque_type(name: str) -> type:
    return type(name if name.isidentifier() else "object", (Opaque,), {})


def encode(value, depth: int = 0):
    """A value as nested tuples of plain data and tensors, which torch.load(weights_only=True) reads back."""
    if value is None or isinstance(value, (bool, str)):
        return ("py", value)
    if isinstance(value, int):
        return ("py", int(value))
    if isinstance(value, float):
        return ("py", float(value))
    if isinstance(value, torch.Tensor):
        return ("tensor", value.detach().to("cpu", copy=True), bool(value.requires_grad))
    if isinstance(value, torch.dtype):
        return ("dtype", str(value).removeprefix("torch."))
    if depth >= _MAX_DEPTH:
        return ("opaque", type(value).__name__, "")
    if dataclasses.is_dataclass(value) and not isinstance(value, type) and _ours(type(value)):
        return ("dataclass", type(value).__module__, type(value).__qualname__,
                [(f.name, encode(getattr(value, f.name), depth + 1)) for f in dataclasses.fields(value)])
    if isinstance(value, (list, tuple)) and len(value) <= _MAX_ITEMS and type(value) in (list, tuple):
        return (type(value).__name__, [encode(v, depth + 1) for v in value])
    if isinstance(value, dict) and len(value) <= _MAX_ITEMS and type(value) is dict:
        return ("dict", [(encode(k, depth + 1), encode(v, depth + 1)) for k, v in value.items()])
    return ("opaque", type(value).__name__, _short_repr(value))


def _ours(cls: type) -> bool:
    return cls.__module__ == "gencourse" or cls.__module__.startswith("gencourse.")


def _short_repr(value) -> str:
    try:
        text = repr(value)
    except Exception:
        return ""
    return text if len(text) <= 200 else text[:197] + "..."


def decode(data):
    """The value `encode` recorded; RecordMismatch for anything encode does not write."""
    try:
        kind = data[0]
        if kind == "py" and (data[1] is None or type(data[1]) in (bool, int, float, str)):
            return data[1]
        if kind == "tensor" and isinstance(data[1], torch.Tensor):
            tensor = data[1]
            return tensor.requires_grad_() if data[2] and tensor.is_floating_point() else tensor
        if kind == "dtype" and isinstance(getattr(torch, str(data[1]), None), torch.dtype):
            return getattr(torch, data[1])
        if kind in ("list", "tuple"):
            items = [decode(v) for v in data[1]]
            return items if kind == "list" else tuple(items)
        if kind == "dict":
            return {decode(k): decode(v) for k, v in data[1]}
        if kind == "dataclass":
            return _rebuild(data[1], data[2], {name: decode(v) for name, v in data[3]})
        if kind == "opaque":
            return _opaque_type(str(data[1]))(str(data[2]))
    except RecordMismatch:
        raise
    except Exception as err:
        raise RecordMismatch(f"the record holds a value it cannot hold ({type(err).__name__}: {err})") from None
    raise RecordMismatch(f"the record holds a value it cannot hold (kind {str(data[0])[:40]!r})")


def _rebuild(module: str, qualname: str, fields: dict):
    """One of gencourse's own dataclasses, from its recorded fields (no other class is ever built)."""
    if not (module == "gencourse" or module.startswith("gencourse.")) or not qualname.isidentifier():
        raise RecordMismatch(f"the record names a class outside gencourse: {module}.{qualname}")
    cls = getattr(importlib.import_module(module), qualname, None)
    if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
        raise RecordMismatch(f"the record names {module}.{qualname}, which is not a gencourse dataclass")
    return cls(**fields)


def graded(*references: str):
    """Mark a check function as graded: record its run in the kernel, replay it in the grader.

    `references` name the package's own answers to the exercise ("gencourse.baselines.bernoulli_nll", or a
    method: "gencourse.diffusion.NoiseSchedule.step"): the grader gives 0 to an exercise whose cells call
    them. The check's id is "<module>.<name>", as in the check cells' metadata and the manifest.
    """
    if not references or not all(isinstance(r, str) and r.startswith("gencourse.") for r in references):
        raise TypeError("graded(...) takes the dotted names of the exercise's references in gencourse")

    def decorate(check):
        check_id = f"{check.__module__.rsplit('.', 1)[-1]}.{check.__name__}"
        _CHECKS[check_id], REFERENCES[check_id] = check, tuple(references)
        return _graded(check, check_id)
    return decorate


def _graded(check, check_id: str):

    @functools.wraps(check)
    def run(fn, *args, **kwargs):
        session = _Session(check_id, seed_offset())
        token = _SESSION.set(session)
        verdict = ("passed", "")
        try:
            session.add("args", check_id, (encode(args), encode(kwargs)))
            check(fn, *args, **kwargs)
        except AssertionError as err:
            verdict = ("failed", str(err))
            raise
        except Exception as err:
            verdict = ("errored", f"{type(err).__name__}: {err}")
            raise
        finally:
            _SESSION.reset(token)
            _finish(session, verdict)

    run.check_id = check_id
    return run


def _record_bytes(session: _Session) -> bytes:
    buffer = io.BytesIO()
    torch.save({"check": session.check_id, "seed": session.seed, "events": session.events}, buffer)
    return buffer.getvalue()


def _finish(session: _Session, verdict: tuple) -> None:
    """Save the record where the grader asked for it; under the self-test, replay it and compare."""
    folder = os.environ.get(RECORDS_ENV)
    selftest = os.environ.get(SELFTEST_ENV) == "1"
    if not folder and not selftest:
        return
    data = _record_bytes(session)
    if folder:
        Path(folder, f"{session.check_id}.pt").write_bytes(data)
    if selftest:
        replayed = judge(session.check_id, data, session.seed)
        if replayed != verdict:
            raise RuntimeError(f"check {session.check_id}: the grader's replay says {replayed}, the kernel said "
                               f"{verdict}: a check reads something it did not record (wrap it in observe)")


def judge(check_id: str, data: bytes, seed: int) -> tuple[str, str]:
    """(status, message) of a check from its record: "passed", "failed" or "errored". Runs no learner code.

    The record is loaded with torch.load(weights_only=True), so it can hold only tensors and plain data;
    the check function runs on the recorded values, on inputs drawn with `seed`, the grading run's offset.
    """
    check = _CHECKS.get(check_id) or _load_check(check_id)
    if check is None:
        return "errored", f"no graded check is called {check_id}"
    if len(data) > MAX_RECORD_BYTES:
        return "failed", f"the record of this check is larger than {MAX_RECORD_BYTES // 2**20} MB"
    try:
        with warnings.catch_warnings():   # a file made by pickle itself warns; it is refused all the same
            warnings.simplefilter("ignore")
            record = torch.load(io.BytesIO(data), weights_only=True)
        if not isinstance(record, dict) or record.get("check") != check_id or not isinstance(record.get("events"),
                                                                                              list):
            raise RecordMismatch(f"the record is not one of {check_id}")
        events = [tuple(e) for e in record["events"]]
        if not events or events[0][:2] != ("args", check_id):
            raise RecordMismatch(f"the record of {check_id} does not start with the check's inputs")
        args, kwargs = decode(events[0][2][0]), decode(events[0][2][1])
    except RecordMismatch as err:
        return "failed", str(err)
    except Exception as err:
        return "failed", f"the record could not be read ({type(err).__name__}: {str(err)[:200]})"
    session = _Session(check_id, seed, events[1:])
    token = _SESSION.set(session)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(_NotRun(), *args, **kwargs)
        if session.position != len(session.events):
            raise RecordMismatch(f"the record of {check_id} holds more than the check asked for")
    except AssertionError as err:
        return "failed", str(err)
    except Exception as err:
        return "errored", f"{type(err).__name__}: {err}"
    finally:
        _SESSION.reset(token)
    return "passed", ""


class _NotRun:
    """What a replayed check gets instead of the learner's function: calling it is a bug in the check."""

    __name__ = "your function"

    def __call__(self, *args, **kwargs):
        raise RuntimeError("a check called the learner's function directly; go through call(...)")


def _load_check(check_id: str):
    module = check_id.split(".")[0]
    if not module.isidentifier():
        return None
    try:
        importlib.import_module(f"{__name__}.{module}")
    except ImportError:
        return None
    return _CHECKS.get(check_id)
