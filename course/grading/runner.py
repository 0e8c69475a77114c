"""Grade a whole class: pre-flight, nbgrader in a sandboxed kernel, independent re-check, scores.

    python -m course.grading autograde ch1_residual_stream [--workers 2] [--course-dir autograder]

For each student (several at a time with ``--workers``):

1. :mod:`course.grading.preflight` repairs the submission so nbgrader can grade it;
2. ``nbgrader autograde --student S`` runs the notebook in the sandboxed kernel
   (``course.grading.sandbox``: no reference solutions, no course directory, capped
   memory, a per-cell timeout); visible tests decide in the notebook, hidden tests are
   deferred;
3. alongside, :mod:`course.grading.verify` re-checks every exercise on the hidden
   inputs outside the student's process (and finds any cell that ends the process,
   which is then replaced, and nbgrader run again, so the cells before it are graded).

Then, one student at a time in the gradebook, a graded cell whose exercise failed the
re-check is set to zero, with the reason as a comment the student sees in the
feedback. A student whose grading failed altogether gets zero and a note; the batch
always finishes. ``grading_report.json`` and ``grades.csv`` are written in the course
directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import course
from course.grading import nbgrader_service, preflight, verify

KERNEL = "inside-gpt2-sandbox"
BIN = Path(sys.executable).parent


@dataclass
class StudentResult:
    student: str
    score: float = 0.0
    max_score: float = 0.0
    notes: list[str] = field(default_factory=list)
    exercises: dict[str, str] = field(default_factory=dict)   # exercise -> re-check message
    seconds: float = 0.0
    error: str | None = None


def hidden_paths(course_dir: Path, extra: list[Path] = ()) -> list[Path]:
    """What student code must not see: the course directory, the reference, each chapter's lesson
    (its checks, findings and expected values stay: the notebooks import them), the book, and any
    ``extra`` directories (other copies of the course on the grading machine)."""
    repo = Path(course.__file__).resolve().parents[1]
    lessons = sorted((repo / "course" / "chapters").glob("*/lesson.py"))
    paths = [course_dir.resolve(), repo / "solutions", *lessons, repo / "book",
             repo / "autograder", *(Path(p).resolve() for p in extra)]
    return [p for p in dict.fromkeys(paths) if p.exists()]


def write_kernel_spec(root: Path, hide: list[Path], memory_gib: float) -> Path:
    """A Jupyter kernel that starts ipykernel inside the sandbox; returns the JUPYTER_PATH entry."""
    spec = root / "kernels" / KERNEL
    spec.mkdir(parents=True, exist_ok=True)
    argv = [sys.executable, "-m", "course.grading.sandbox", *sum((["--hide", str(p)] for p in hide), []),
            "--private-tmp", "--memory-gib", str(memory_gib), "--",
            sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({
        "argv": argv, "display_name": "Inside GPT-2 (grading sandbox)", "language": "python",
        "env": {"COURSE_HIDDEN_TESTS": "deferred", "HF_HUB_OFFLINE": "1", **verify.ONE_THREAD,
                "PYTHONPATH": str(Path(course.__file__).resolve().parents[1])},
    }, indent=1))
    return root


def _env(jupyter_path: Path | None = None) -> dict:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "HF_HUB_OFFLINE": "1"}
    if jupyter_path:
        env["JUPYTER_PATH"] = f"{jupyter_path}{os.pathsep}{env.get('JUPYTER_PATH', '')}"
    return env


def nbgrader(course_dir: Path, args: list[str], jupyter_path: Path | None = None, timeout: float = 3600):
    return subprocess.run([str(BIN / "nbgrader"), *args], cwd=course_dir, env=_env(jupyter_path),
                          capture_output=True, text=True, timeout=timeout)


def _autograde_one(worker: nbgrader_service.Worker, course_dir, assignment, student, cell_timeout, source_nb,
                   release_nb, hide, references, memory_gib) -> StudentResult:
    start = time.monotonic()
    result = StudentResult(student)
    sub = course_dir / "submitted" / student / assignment
    try:
        result.notes += preflight.prepare(sub, assignment, source_nb, release_nb)
    except Exception as e:   # never let one student's files stop the class
        result.error = f"the submission could not be prepared ({type(e).__name__}: {e})"
    if result.error is None:
        # The re-check and nbgrader are independent: run them side by side. If the re-check
        # finds a cell that ends the Python process (which stops nbgrader's kernel, and with it
        # the grading of everything before that cell), replace that cell and grade again.
        notebook = sub / f"{assignment}.ipynb"
        budget = cell_timeout * 60 + 600
        with ThreadPoolExecutor(max_workers=1) as side:
            pending = side.submit(verify.verify, assignment, source_nb, notebook, hide, references,
                                  cell_seconds=cell_timeout, call_seconds=cell_timeout, memory_gib=memory_gib)
            ok, log = worker.autograde(assignment, student, timeout=budget)
            recheck = pending.result()
        for v in recheck.verdicts:
            result.exercises[v.exercise] = ("✓ " if v.passed else "✗ ") + v.message
        if recheck.process_ender:
            result.notes.append(preflight.neutralize(notebook, recheck.process_ender))
            ok, log = worker.autograde(assignment, student, timeout=budget)
        if not ok:
            tail = log.strip().splitlines()[-1:] or ["no output"]
            result.error = f"nbgrader could not grade the notebook ({tail[0][:200]})"
    result.seconds = time.monotonic() - start
    return result


def _record(course_dir: Path, assignment: str, results: list[StudentResult]) -> None:
    """Apply the re-check to the gradebook: failed exercises score zero, with the reason as a comment."""
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        for res in results:
            try:
                submission = gb.find_submission_notebook(assignment, assignment, res.student)
            except MissingEntry:
                res.error = res.error or "nbgrader has no record of this submission"
                res.notes.append(f"The notebook could not be graded: {res.error}. Score: 0.")
                continue
            failed = {name for name, msg in res.exercises.items() if msg.startswith("✗")}
            if res.error:
                failed = set(res.exercises) | {g.cell.name[len("test_"):] for g in submission.grades}
            for grade in submission.grades:
                exercise = grade.cell.name[len("test_"):] if grade.cell.name.startswith("test_") else grade.cell.name
                if exercise in failed and grade.score:
                    grade.manual_score = 0.0
            for comment in submission.comments:
                lines = []
                if comment.cell.name in res.exercises:
                    lines.append(res.exercises[comment.cell.name])
                if res.notes and comment is submission.comments[0]:
                    lines = ["About your file: " + " ".join(res.notes)] + lines
                if res.error and comment is submission.comments[0]:
                    lines.insert(0, f"Grading stopped early: {res.error}. Parts that did not run score zero.")
                if lines:
                    comment.manual_comment = "\n".join(lines)
            gb.db.commit()
            res.score = float(submission.score)
            res.max_score = float(submission.max_score)


def autograde(course_dir: Path, assignment: str, workers: int = 1, cell_timeout: int = 120,
              students: list[str] | None = None, memory_gib: float = 6.0, also_hide: list[Path] = ()) -> list[StudentResult]:
    course_dir = Path(course_dir).resolve()
    source_nb = course_dir / "source" / assignment / f"{assignment}.ipynb"
    release_nb = course_dir / "release" / assignment / f"{assignment}.ipynb"
    if not source_nb.exists():
        raise FileNotFoundError(f"{source_nb} is missing: run `python -m course.build` and check the assignment name.")
    if not release_nb.exists():
        r = nbgrader(course_dir, ["generate_assignment", assignment, "--force"])
        if r.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment failed: {r.stderr[-500:]}")
    submitted = course_dir / "submitted"
    students = students or sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir())
    hide = hidden_paths(course_dir, also_hide)
    references = verify.reference_outputs(assignment, verify.notebook_parts(source_nb, source_nb)["exercises"])
    with tempfile.TemporaryDirectory(prefix="grading-kernel-") as tmp:
        jupyter_path = write_kernel_spec(Path(tmp), hide, memory_gib)
        # One nbgrader process per worker thread, reused for every student that thread grades.
        local, started = threading.local(), []

        def grade(student: str) -> StudentResult:
            if not hasattr(local, "worker"):
                local.worker = nbgrader_service.Worker(course_dir, KERNEL, cell_timeout, _env(jupyter_path))
                started.append(local.worker)
            return _autograde_one(local.worker, course_dir, assignment, student, cell_timeout,
                                  source_nb, release_nb, hide, references, memory_gib)

        try:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                results = list(pool.map(grade, students))
        finally:
            for w in started:
                w.close()
    _record(course_dir, assignment, results)
    (course_dir / "grading_report.json").write_text(json.dumps([asdict(r) for r in results], indent=2))
    nbgrader(course_dir, ["export", "--to", str(course_dir / "grades.csv")])
    return results


def main(argv=None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m course.grading", description="Grade a class, safely.")
    sub = ap.add_subparsers(dest="command", required=True)
    a = sub.add_parser("autograde", help="pre-flight, autograde in a sandbox, re-check, record")
    a.add_argument("assignment")
    a.add_argument("--course-dir", type=Path, default=Path("autograder"))
    a.add_argument("--workers", type=int, default=1)
    a.add_argument("--cell-timeout", type=int, default=120, help="seconds a cell may run")
    a.add_argument("--memory-gib", type=float, default=6.0, help="memory cap for student code")
    a.add_argument("--student", action="append", help="only these students (repeatable)")
    a.add_argument("--also-hide", action="append", type=Path, default=[],
                   help="another directory student code must not see (repeatable)")
    args = ap.parse_args(argv)
    results = autograde(args.course_dir, args.assignment, args.workers, args.cell_timeout, args.student,
                        args.memory_gib, args.also_hide)
    for r in results:
        flag = f"  ({r.error})" if r.error else ""
        print(f"{r.student:24s} {r.score:5.1f} / {r.max_score:4.1f}  {r.seconds:5.1f} s{flag}")
    print(f"graded {len(results)} submissions; scores in {args.course_dir / 'grades.csv'}, "
          f"details in {args.course_dir / 'grading_report.json'}")
    return 0
