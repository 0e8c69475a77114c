"""The independent re-check: a student's functions on hidden inputs, judged outside their process.

nbgrader runs the student's notebook and its test cells in one kernel, where the
student's code could have redefined ``assert``, the checks or ``torch.testing``. The
re-check does not trust that kernel:

1. a fresh sandboxed process (:mod:`course.grading.sandbox`: no ``solutions``, no
   course directory, capped memory) runs the notebook's locked set-up cells and the
   student's solution cells, then calls each exercise function on the hidden cases
   and only *writes the outputs* to files (tensors, loaded back with
   ``weights_only=True``: no code travels back);
2. this process, which never runs student code, computes the reference outputs on the
   same inputs and compares.

The verdict per exercise decides the hidden half of each graded cell.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import nbformat
import torch

from course.checks import core

# Runs inside the sandbox. Everything it needs is captured before the student's code runs.
HARNESS = r'''
import json, os, signal, sys, traceback
import torch
_save, _dumps, _open = torch.save, json.dumps, open
OUT = sys.argv[1]
CELL_SECONDS, CALL_SECONDS = int(sys.argv[2]), int(sys.argv[3])
spec = json.load(_open(os.path.join(OUT, "spec.json")))

class _Late(BaseException):
    pass

def _alarm(signum, frame):
    raise _Late()

signal.signal(signal.SIGALRM, _alarm)
ns = {"__name__": "__main__"}
for source in spec["setup"]:
    exec(compile(source, "<setup cell>", "exec"), ns)
cell_errors = {}
for index, (name, source) in enumerate(spec["solutions"].items()):
    if index >= spec.get("run_cells", len(spec["solutions"])):
        cell_errors[name] = ("this cell ended the Python process (os._exit or similar)"
                             if index == spec["run_cells"] else "it was not run: an earlier cell ended the process")
        continue
    with _open(os.path.join(OUT, "progress.json"), "w") as f:   # which cell is running, if the process dies
        f.write(_dumps({"cell": index}))
    signal.alarm(CELL_SECONDS)
    try:
        exec(compile(source, f"<your cell {name}>", "exec"), ns)
    except BaseException as e:
        cell_errors[name] = "it took longer than %d s" % CELL_SECONDS if isinstance(e, _Late) else f"{type(e).__name__}: {e}"
    finally:
        signal.alarm(0)
import importlib
checks = importlib.import_module("course.chapters." + spec["chapter"] + ".checks")
from course.checks.core import course_model
model = course_model()
for name in spec["exercises"]:
    fn = ns.get(name)
    # A cell may raise after defining its function (sys.exit at the end, say): judge the function.
    result = {"error": None if callable(fn) else (cell_errors.get(name) or f"there is no function called {name}")}
    if result["error"] is None:
        outputs = []
        try:
            with torch.no_grad():
                for case in checks.EXERCISES[name].cases(model, True):
                    signal.alarm(CALL_SECONDS)
                    try:
                        out = case.call(fn)
                    finally:
                        signal.alarm(0)
                    outputs.append(out.detach().cpu() if isinstance(out, torch.Tensor) else out)
            _save(outputs, os.path.join(OUT, name + ".pt"))
        except _Late:
            result["error"] = "it took longer than %d s on one input" % CALL_SECONDS
        except BaseException as e:
            result["error"] = f"{type(e).__name__}: {e}"
    with _open(os.path.join(OUT, name + ".json"), "w") as f:
        f.write(_dumps(result))
'''


# Student code runs on one thread. Grading already runs two processes per student (the
# notebook and this re-check) and several students at once; torch's default of a
# thread per core would make them spin against each other for the same cores.
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@dataclass
class Verdict:
    exercise: str
    passed: bool
    message: str


def notebook_parts(source_nb: Path, submitted_nb: Path) -> dict:
    """The set-up cells (from the instructor's source) and the solution cells (from the submission)."""
    source = nbformat.read(source_nb, as_version=4)
    setup = [c.source for c in source.cells
             if c.cell_type == "code" and c.metadata.get("course", {}).get("kind") in ("module", "setup")]
    # answer cells (graded by hand) are solution cells too, but hold no function to re-check
    exercises = [c.metadata["nbgrader"]["grade_id"] for c in source.cells
                 if c.metadata.get("nbgrader", {}).get("solution") and c.cell_type == "code"
                 and c.metadata.get("course", {}).get("kind", "exercise") == "exercise"]
    solutions = {}
    try:
        submitted = nbformat.read(submitted_nb, as_version=4)
        for c in submitted.cells:
            gid = c.get("metadata", {}).get("nbgrader", {}).get("grade_id")
            if gid in exercises and c.cell_type == "code":
                solutions[gid] = c.source
    except Exception:   # unreadable: every exercise is missing
        pass
    return {"setup": setup, "exercises": exercises, "solutions": solutions}


def reference_outputs(chapter: str, exercises: list[str]) -> dict[str, list]:
    """The reference's outputs on the hidden cases (computed here, never in the student's process)."""
    checks = core.chapter_checks(chapter)
    model = core.course_model()
    out = {}
    with torch.no_grad():
        for name in exercises:
            ex = checks.EXERCISES[name]
            ref = ex.reference()
            if ref is None:
                raise RuntimeError("the re-check needs the reference solutions installed (pip install -e .)")
            out[name] = [core._to_cpu(c.call(ref)) for c in ex.cases(model, True)]
    return out


@dataclass
class Recheck:
    verdicts: list[Verdict]
    process_ender: str | None     # the solution cell that ended the process (os._exit), if one did


def verify(chapter: str, source_nb: Path, submitted_nb: Path, hide: list[Path], references: dict | None = None,
           cell_seconds: int = 30, call_seconds: int = 30, memory_gib: float = 6.0) -> Recheck:
    parts = notebook_parts(source_nb, submitted_nb)
    references = references or reference_outputs(chapter, parts["exercises"])
    checks = core.chapter_checks(chapter)
    # Outside /tmp: the student's process gets a private /tmp, and the outputs must come back.
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="recheck-", dir=shm) as out:
        os.chmod(out, 0o777)
        harness = Path(out, "harness.py")
        harness.write_text(HARNESS)
        cmd = [sys.executable, "-m", "course.grading.sandbox", *sum((["--hide", str(p)] for p in hide), []),
               "--private-tmp", "--memory-gib", str(memory_gib), "--", sys.executable, str(harness), out,
               str(cell_seconds), str(call_seconds)]
        budget = 120 + cell_seconds * len(parts["solutions"]) + call_seconds * 4 * len(parts["exercises"])
        env = {**os.environ, "HF_HUB_OFFLINE": "1", **ONE_THREAD, "PYTHONPATH": str(Path(core.__file__).parents[2])}
        stopped, killer = _run_harness(cmd, Path(out), {**parts, "chapter": chapter}, budget, env)
        verdicts = []
        for name in parts["exercises"]:
            verdicts.append(_judge(checks.EXERCISES[name], Path(out), references[name],
                                   name in parts["solutions"], stopped))
    return Recheck(verdicts, killer)


def _run_harness(cmd, out: Path, spec: dict, budget: float, env: dict) -> tuple[str | None, str | None]:
    """Run the harness; if a student cell ended the process, run again without that cell and the
    ones after it, so that the exercises before it are still judged.

    Returns (why it stopped early or None, the name of the cell that ended the process or None).
    """
    names = list(spec["solutions"])
    killer = None
    for _ in range(2):
        (out / "spec.json").write_text(json.dumps(spec))
        (out / "progress.json").unlink(missing_ok=True)
        try:
            subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=budget, env=env)
        except subprocess.TimeoutExpired:
            return f"the re-check was stopped after {budget:.0f} s", killer
        if all((out / f"{n}.json").exists() for n in spec["exercises"]):   # not the exit code: os._exit(0) is 0
            return None, killer
        try:
            index = json.loads((out / "progress.json").read_text())["cell"]
        except (OSError, ValueError, KeyError):
            return "the process ended before any of your cells ran", killer
        if index >= spec.get("run_cells", len(names)):
            return "the process ended after your cells ran", killer
        killer = names[index]
        spec = {**spec, "run_cells": index}
    return "the process ended early", killer


def _judge(ex: core.Exercise, out: Path, wants: list, present: bool, stopped: str | None) -> Verdict:
    name = ex.name
    if not present:
        return Verdict(name, False, f"the cell that defines {name} is missing from the notebook.")
    try:
        status = json.loads((out / f"{name}.json").read_text())
    except (OSError, ValueError):
        why = stopped or "the notebook stopped before this function could be checked (did it exit the kernel?)"
        return Verdict(name, False, f"{name} could not be checked: {why}.")
    if status.get("error"):
        return Verdict(name, False, f"{name} failed on the hidden inputs: {status['error']}")
    try:
        gots = torch.load(out / f"{name}.pt", weights_only=True)
    except Exception:
        return Verdict(name, False, f"{name} returned something that is not a tensor or a number.")
    if not isinstance(gots, list) or len(gots) != len(wants):
        return Verdict(name, False, f"{name} did not return one answer per hidden input.")
    for i, (got, want) in enumerate(zip(gots, wants)):
        if ex.canonical is not None:
            try:
                got, want = ex.canonical(got), ex.canonical(want)
            except Exception as e:
                return Verdict(name, False, f"{name} on hidden input {i + 1}: the result has the wrong form ({e}).")
        ref = ex.reference()
        why = core.compare(got, want, ex.atol, ex.rtol, names=core.return_names(ref) if ref is not None else None)
        if why:
            return Verdict(name, False, f"{name} on hidden input {i + 1}: {why}")
    return Verdict(name, True, f"{name} passed the hidden tests.")
