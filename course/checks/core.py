"""The machinery behind every exercise check: run, compare, explain in plain words.

An :class:`Exercise` names a chapter's function, builds its inputs from the course
model (visible cases, and fresh hidden ones for grading), and knows the likely
mistakes. :func:`check` runs the student's function on every case and compares it
with the reference in ``solutions`` or, where ``solutions`` is not installed (a
classroom release), with the expected values shipped beside each chapter's checks
(``course/chapters/<chapter>/expected.pt``).
It prints one verdict line, then evidence and a likely cause, and never raises:
a stub just reports "not implemented yet" so the notebook goes on.
"""

from __future__ import annotations

import importlib
import os
import traceback
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor

from course.checks.relations import describe_relation

CHAPTERS_DIR = Path(__file__).resolve().parents[1] / "chapters"
DEFERRED_ENV = "COURSE_HIDDEN_TESTS"   # "deferred": the grader checks hidden cases out of the kernel


@dataclass
class Case:
    label: str                      # e.g. "a batch of one", shown in messages
    args: tuple
    kwargs: dict = field(default_factory=dict)
    # For exercises that change their inputs (a training step): builds fresh args for every call,
    # so the student's function, the reference and each likely mistake start from the same state.
    fresh: Callable[[], tuple] | None = None
    # Call the function this many times on the same (fresh) args and compare every result: what
    # a state-changing exercise gets wrong only on its second call (gradients never zeroed).
    repeat: int = 1

    def call(self, fn):
        args = self.fresh() if self.fresh is not None else self.args
        if self.repeat > 1:
            return [fn(*args, **self.kwargs) for _ in range(self.repeat)]
        return fn(*args, **self.kwargs)


@dataclass
class Exercise:
    chapter: str                                            # module name in solutions/, e.g. "ch1_residual_stream"
    name: str                                               # the function's name
    cases: Callable[[Any, bool], list[Case]]                # (model, hidden) -> cases
    causes: list[tuple[Callable[..., Any], str]] = field(default_factory=list)  # (wrong variant, diagnosis)
    atol: float = 1e-4
    rtol: float = 1e-4
    # Applied to both answers before comparing, where order or form may legitimately differ.
    canonical: Callable[[Any], Any] | None = None

    def reference(self) -> Callable | None:
        try:
            return getattr(importlib.import_module(f"solutions.{self.chapter}"), self.name)
        except ImportError:
            return None


@dataclass
class CheckResult:
    name: str
    status: str                     # "pass", "fail" or "not implemented"
    message: str

    @property
    def passed(self) -> bool:
        return self.status == "pass"

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        return self.message

    def _ipython_display_(self):    # the message is printed already; show nothing more
        pass

    def require(self) -> "CheckResult":
        """Raise AssertionError with the message unless the check passed (for graded cells)."""
        if not self.passed:
            raise AssertionError(self.message)
        return self


def expected_path(chapter: str) -> Path:
    """Where the reference's outputs on a chapter's visible cases ship: beside its checks."""
    return CHAPTERS_DIR / chapter / "expected.pt"


def chapter_checks(chapter: str):
    """The checks module of ``chapter`` (a slug such as ``"ch1_residual_stream"``)."""
    return importlib.import_module(f"course.chapters.{chapter}.checks")


@lru_cache(maxsize=1)
def course_model():
    """The bundled model on the CPU, loaded once per process for all checks."""
    import course

    return course.load_model("course-gpt2", device="cpu")


def _expected(ex: Exercise) -> list | None:
    path = expected_path(ex.chapter)
    if not path.exists():
        return None
    return torch.load(path, weights_only=True).get(ex.name)


def expected_outputs(ex: Exercise, model=None) -> list:
    """The reference's outputs on the visible cases (what the build ships for fallback)."""
    model = model or course_model()
    ref = ex.reference()
    with torch.no_grad():
        return [_compact(_to_cpu(c.call(ref))) for c in ex.cases(model, False)]


def _compact(x):
    """Half precision for shipping (the fallback compares with a looser tolerance)."""
    if isinstance(x, Tensor) and x.is_floating_point():
        return x.half()
    if isinstance(x, (tuple, list)):
        return type(x)(_compact(v) for v in x)
    return x


def _to_cpu(x):
    if isinstance(x, Tensor):
        return x.detach().cpu()
    if isinstance(x, (tuple, list)):
        return type(x)(_to_cpu(v) for v in x)
    return x


# -- comparing --------------------------------------------------------------------------

def _fmt_index(idx: tuple[int, ...]) -> str:
    return "[" + ", ".join(map(str, idx)) + "]"


def return_names(fn) -> tuple[str, ...] | None:
    """The names a function returns as a tuple (``return loss, fvu`` -> ("loss", "fvu")), where its
    source says so plainly; else None. Lets a message say "fvu" where it would say "item 1"."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(fn)))
    except (OSError, TypeError, SyntaxError):
        return None
    found = {tuple(e.id for e in node.value.elts) for node in ast.walk(tree)
             if isinstance(node, ast.Return) and isinstance(node.value, ast.Tuple)
             and all(isinstance(e, ast.Name) for e in node.value.elts)}
    return found.pop() if len(found) == 1 else None


def compare(got, want, atol: float, rtol: float, names: tuple[str, ...] | None = None) -> str | None:
    """None when ``got`` matches ``want``; else one or two sentences saying how it differs."""
    if isinstance(want, Tensor):
        if not isinstance(got, Tensor):
            if want.dim() == 0 and isinstance(got, (int, float)):
                return (f"you returned a {type(got).__name__}, expected a 0-d tensor: keep the result a tensor "
                        f"(leave out .item() or float()).")
            return f"you returned a {type(got).__name__}, expected a tensor of shape {list(want.shape)}."
        if got.shape != want.shape:
            hint = ""
            if sorted(got.shape) == sorted(want.shape):
                hint = " The same sizes in another order: check the order of your dimensions (a transpose?)."
            elif got.numel() == want.numel():
                hint = " The same number of entries: check how you reshape."
            return f"shape is {list(got.shape)}, expected {list(want.shape)}.{hint}"
        if got.is_floating_point() != want.is_floating_point():
            return f"dtype is {got.dtype}, expected {want.dtype}."
        want = want.detach().cpu()   # a reference computed live sits on the model's device
        want = want.float() if want.dtype == torch.float16 else want
        got = got.detach().to("cpu", want.dtype)
        if torch.isnan(got).any() and not torch.isnan(want).any():
            where = _fmt_index(tuple(torch.nonzero(torch.isnan(got))[0].tolist()))
            return f"shape is right {list(want.shape)}, but your result has NaN (first at {where})."
        bad = ~torch.isclose(got, want, atol=atol, rtol=rtol, equal_nan=True)
        if bad.any() and want.dim() == 0:
            return f"you gave {got.item():.4g}, expected {want.item():.4g}."
        if bad.any():
            diff = (got.double() - want.double()).abs().nan_to_num(float("inf"))
            err = torch.where(bad, diff, torch.zeros_like(diff))
            idx = tuple(int(i) for i in torch.unravel_index(err.flatten().argmax(), err.shape))
            return (f"shape is right {list(want.shape)}, values differ at {int(bad.sum())} of {bad.numel()} entries; "
                    f"the largest difference is at {_fmt_index(idx)}: you gave {got[idx].item():.4g}, expected "
                    f"{want[idx].item():.4g}.")
        return None
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"expected a {type(want).__name__} of {len(want)} items, got {type(got).__name__}."
        for i, (g, w) in enumerate(zip(got, want)):
            why = compare(g, w, atol, rtol)
            if why:
                named = names is not None and len(names) == len(want)
                return f"`{names[i]}` (returned value {i + 1} of {len(want)}): {why}" if named else f"item {i}: {why}"
        return None
    if isinstance(want, float):
        return None if abs(float(got) - want) <= atol + rtol * abs(want) else f"you gave {got}, expected {want:.4g}."
    return None if got == want else f"you gave {got!r}, expected {want!r}."


_LIBRARY_PARTS = ("site-packages", "dist-packages", f"{os.sep}torch{os.sep}", f"{os.sep}lib{os.sep}python")
_COURSE_DIR = str(Path(__file__).resolve().parents[1])


def _student_frame(tb) -> traceback.FrameSummary:
    """The last frame of a traceback that is the student's code: not a library's (torch,
    site-packages), nor the course's own machinery; the last frame where there is none."""
    frames = traceback.extract_tb(tb)
    for frame in reversed(frames):
        name = str(frame.filename)
        # A __torch_function__ frame is a tensor subclass's or a torch function mode's dispatch.
        if (not any(part in name for part in _LIBRARY_PARTS) and not name.startswith(_COURSE_DIR)
                and frame.name != "__torch_function__"):
            return frame
    return frames[-1]


def _error_hint(e: Exception) -> str:
    """A sentence for errors whose cause in these notebooks is known."""
    if "does not require grad" in str(e):
        return ("\n  Likely cause: gradients are off in this notebook; wrap the forward pass and "
                "torch.autograd.grad in `with torch.enable_grad():`.")
    return ""


def _first_differing(got, want, atol: float, rtol: float):
    """The first pair of tensors (in nested tuples and lists) where ``got`` differs from ``want``."""
    if isinstance(want, (tuple, list)) and isinstance(got, (tuple, list)) and len(got) == len(want):
        for g, w in zip(got, want):
            if compare(g, w, atol, rtol):
                return _first_differing(g, w, atol, rtol)
        return None
    if isinstance(want, float) and isinstance(got, (int, float, Tensor)):
        return torch.as_tensor(got, dtype=torch.float64), torch.tensor(want, dtype=torch.float64)
    return (got, want) if isinstance(got, Tensor) and isinstance(want, Tensor) else None


def _tensors_in(args) -> list[Tensor]:
    """The tensors among a call's arguments (directly, or in a list, tuple or dict of them)."""
    out = []
    for a in args:
        if isinstance(a, Tensor):
            out.append(a)
        elif isinstance(a, (list, tuple)):
            out += [x for x in a if isinstance(x, Tensor)]
        elif isinstance(a, dict):
            out += [x for x in a.values() if isinstance(x, Tensor)]
    return out


def _same(a: Tensor, b: Tensor) -> bool:
    """Equal shapes and entries, a NaN counting as equal to a NaN (an input may hold them)."""
    if a.shape != b.shape:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    return bool(((a == b) | (a.isnan() & b.isnan())).all())


def _call_watching_inputs(case: Case, fn):
    """``case.call(fn)``, and whether ``fn`` changed one of its tensor arguments in place (which
    would change what the reference sees next, and the student's own variables)."""
    if case.fresh is not None:       # a state-changing exercise: its inputs are built anew for each call
        return case.call(fn), None
    tensors = _tensors_in(case.args) + _tensors_in(case.kwargs.values())
    before = [t.detach().clone() for t in tensors]
    try:
        result = case.call(fn)
    finally:
        changed = next((i for i, (t, b) in enumerate(zip(tensors, before)) if not _same(t.detach(), b)), None)
        for t, b in zip(tensors, before):            # put the inputs back for the reference
            if t.shape == b.shape:
                with torch.no_grad():
                    t.copy_(b)
    return result, changed


def _distance(got, alt) -> float:
    """The largest absolute difference between two answers (nested tensors and numbers); inf if
    they cannot be compared."""
    if isinstance(alt, (tuple, list)) and isinstance(got, (tuple, list)) and len(got) == len(alt):
        return max((_distance(g, a) for g, a in zip(got, alt)), default=0.0)
    try:
        g = torch.as_tensor(got, dtype=torch.float64).cpu()
        a = torch.as_tensor(alt, dtype=torch.float64).cpu()
        if g.shape != a.shape:
            return float("inf")
        return float((g - a).abs().nan_to_num(0.0).max()) if g.numel() else 0.0
    except Exception:
        return float("inf")


def _likely_cause(ex: Exercise, got, case: Case) -> str | None:
    """The listed mistake that reproduces ``got`` (within ten times the tolerance); where several
    do, the closest, so two nearly equal variants are told apart by which one the answer is."""
    matches = []
    for order, (wrong, diagnosis) in enumerate(ex.causes):
        try:
            with torch.no_grad():
                alt = case.call(wrong)
            if compare(got, alt, ex.atol * 10, ex.rtol * 10) is None:
                matches.append((_distance(got, _to_cpu(alt)), order, diagnosis))
        except Exception:   # a cause that does not apply to this case says nothing
            continue
    return min(matches)[2] if matches else None


# -- the check --------------------------------------------------------------------------

def check(ex: Exercise, fn: Callable, hidden: bool = False, quiet: bool = False, model=None) -> CheckResult:
    """Run ``fn`` on every case and compare it with the reference (or the shipped values)."""
    name = ex.name
    model = model or course_model()

    def done(status, message):
        result = CheckResult(name, status, message)
        if not quiet:
            print(message)
        return result

    if not callable(fn):
        return done("fail", f"✗ {name}: expected a function, got {type(fn).__name__}. Pass the function itself, not its result.")
    ref = ex.reference()
    cases = ex.cases(model, hidden)
    if ref is None:
        if hidden and os.environ.get(DEFERRED_ENV) == "deferred":
            # Grading in the sandbox: the grader runs the hidden cases outside the notebook
            # (course.grading.verify) and that verdict decides the cell's score.
            return done("pass", f"… hidden tests for {name} are run by the grader outside this notebook")
        if hidden:
            return done("fail", f"✗ {name}: the hidden tests need the reference implementation (solutions), "
                                "which this environment does not have.")
        wants = _expected(ex)
        if wants is None:
            return done("fail", f"✗ {name}: no reference and no shipped expected values; reinstall the course.")
    for i, case in enumerate(cases):
        try:
            with torch.no_grad():
                got, changed = _call_watching_inputs(case, fn)
        except NotImplementedError:
            return done("not implemented", f"… {name} not implemented yet")
        except Exception as e:   # the student's error, told in one line plus where it happened
            frame = _student_frame(e.__traceback__)
            return done("fail", f"✗ {name} raised {type(e).__name__} on {case.label}: {e}\n"
                                f"  (line {frame.lineno}: {frame.line}){_error_hint(e)}")
        if changed is not None:
            return done("fail", f"✗ {name} changed its input in place on {case.label} (a tensor it was given is "
                                "different after the call): work on a copy, or write x = x - m rather than x -= m, "
                                "so the caller's tensors stay as they were.")
        with torch.no_grad():
            want = _to_cpu(case.call(ref)) if ref is not None else wants[i]
        # Shipped values are half precision: compare them more loosely.
        tol = (ex.atol, ex.rtol) if ref is not None else (max(ex.atol, 1e-2), max(ex.rtol, 1e-2))
        got = _to_cpu(got)
        if ex.canonical is not None:
            try:
                got, want = ex.canonical(got), ex.canonical(want)
            except Exception as e:
                return done("fail", f"✗ {name} on {case.label}: your result has the wrong form ({e}).")
        why = compare(got, want, *tol, names=return_names(ref) if ref is not None else None)
        if why:
            cause = _likely_cause(ex, got, case)
            if cause is None:          # no listed mistake: say how the answer relates to the right one
                pair = _first_differing(got, want, *tol)
                cause = describe_relation(*pair) if pair is not None else None
            msg = f"✗ {name} on {case.label}: {why}"
            if cause:
                msg += f"\n  Likely cause: {cause}"
            return done("fail", msg)
    source = "the reference" if ref is not None else "the expected values"
    return done("pass", f"✓ {name} matches {source} on {len(cases)} inputs")


def exercise_functions(exercises: dict[str, Exercise]) -> dict[str, Callable]:
    """``{name: check_function}`` for a chapter's exercises; a chapter's checks module
    exposes them under the exercises' own names (``check.logit_lens(logit_lens)``)."""
    def make(ex: Exercise):
        def run(fn, hidden: bool = False, quiet: bool = False) -> CheckResult:
            return check(ex, fn, hidden=hidden, quiet=quiet)
        run.__name__ = run.__qualname__ = ex.name
        run.__doc__ = f"Check your ``{ex.name}`` on several inputs; prints one line of verdict (and why, if wrong)."
        return run
    return {name: make(ex) for name, ex in exercises.items()}
