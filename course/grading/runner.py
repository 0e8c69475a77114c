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
always finishes. The gradebook, ``grades.csv``, the graded students' feedback (rebuilt on a
regrade) and, under ``grading/<assignment>/``, a log written as it goes and a cumulative record
with per-exercise statistics (:mod:`course.grading.record`) are written in the course directory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

import course
from course.grading import nbgrader_service, preflight, record, verify

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
                   release_nb, hide, references, memory_gib, submission_timeout: float) -> StudentResult:
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
        # A notebook whose every exercise loops forever would cost a cell timeout each; the
        # submission as a whole gets at most ``submission_timeout`` seconds.
        budget = submission_timeout
        with ThreadPoolExecutor(max_workers=1) as side:
            pending = side.submit(verify.verify, assignment, source_nb, notebook, hide, references,
                                  cell_seconds=cell_timeout, call_seconds=cell_timeout, memory_gib=memory_gib)
            ok, log = worker.autograde(assignment, student, timeout=budget)
            recheck = pending.result()
        failed = {v.exercise for v in recheck.verdicts if not v.passed}
        calls = preflight.calls_between_answers(notebook, [v.exercise for v in recheck.verdicts])
        for v in recheck.verdicts:
            result.exercises[v.exercise] = ("✓ " if v.passed else "✗ ") + v.message
            upstream = [u for u in calls.get(v.exercise, []) if u in failed]
            if not v.passed and upstream:
                result.exercises[v.exercise] += (
                    f"\n  It calls your {', '.join(upstream)}, which failed {'its' if len(upstream) == 1 else 'their'} "
                    f"own tests: fixing {'that' if len(upstream) == 1 else 'those'} may fix this one too.")
        if recheck.process_ender:
            result.notes.append(preflight.neutralize(notebook, recheck.process_ender))
            ok, log = worker.autograde(assignment, student, timeout=budget)
        if not ok and log.startswith("nbgrader did not answer within"):
            result.error = (f"the notebook ran longer than the {submission_timeout:.0f} s allowed for a whole "
                            f"submission (each cell may run {cell_timeout} s); look for loops that never end")
        elif not ok:
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
              students: list[str] | None = None, memory_gib: float = 6.0, also_hide: list[Path] = (),
              submission_timeout: float | None = None, feedback: bool = True,
              progress=print) -> list[StudentResult]:
    """Grade ``students`` (default: every submission of ``assignment``); returns their results.

    Writes, in ``course_dir``: the gradebook (nbgrader's), ``grades.csv``, each graded student's
    feedback (rebuilt, also after a regrade, unless ``feedback=False``), and under
    ``grading/<assignment>/`` a log written as each student finishes and the cumulative record
    (:mod:`course.grading.record`). ``progress`` receives one line per finished student.
    """
    course_dir = Path(course_dir).resolve()
    submission_timeout = submission_timeout or max(600, 4 * cell_timeout)
    source_nb = course_dir / "source" / assignment / f"{assignment}.ipynb"
    release_nb = course_dir / "release" / assignment / f"{assignment}.ipynb"
    if not source_nb.exists():
        raise FileNotFoundError(f"{source_nb} is missing: run `python -m course.build` and check the assignment name.")
    if not release_nb.exists():
        r = nbgrader(course_dir, ["generate_assignment", assignment, "--force"])
        if r.returncode != 0:
            raise RuntimeError(f"nbgrader generate_assignment failed: {r.stderr[-500:]}")
    submitted = course_dir / "submitted"
    present = sorted(p.name for p in submitted.iterdir() if (p / assignment).is_dir()) if submitted.exists() else []
    missing = [s for s in students or [] if s not in present]
    if missing:
        raise FileNotFoundError(f"no submission of {assignment} for {', '.join(missing)} under {submitted}: "
                                f"check the id (submitted/<student>/{assignment}/), or collect it first")
    students = list(students or present)
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
                                  source_nb, release_nb, hide, references, memory_gib, submission_timeout)

        log = record.open_log(course_dir, assignment)
        start, done = time.monotonic(), 0
        try:
            with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
                futures = {pool.submit(grade, s): s for s in students}
                for future in as_completed(futures):
                    res = future.result()
                    done += 1
                    line = record.progress_line(res, done, len(students), time.monotonic() - start)
                    log.write(line + "\n")
                    log.flush()
                    if progress:
                        progress(line)
                results = sorted((f.result() for f in futures), key=lambda r: students.index(r.student))
        finally:
            log.close()
            for w in started:
                w.close()
    _record(course_dir, assignment, results)
    record.update(course_dir, assignment, results)
    if feedback:
        _feedback(course_dir, assignment, results)
    nbgrader(course_dir, ["export", "--to", str(course_dir / "grades.csv")])
    return results


def _feedback(course_dir: Path, assignment: str, results: list[StudentResult]) -> None:
    """Rebuild each graded student's feedback page: nbgrader's generate_feedback skips a page that
    exists, so without ``--force`` a regraded student would keep the old score's page."""
    for res in results:
        r = nbgrader(course_dir, ["generate_feedback", assignment, "--student", res.student, "--force"])
        if r.returncode != 0:
            res.notes.append("(the feedback page could not be written: "
                             f"{(r.stderr.strip().splitlines() or ['no output'])[-1][:200]})")


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
    a.add_argument("--submission-timeout", type=float, default=None,
                   help="seconds a whole submission may run (default: the larger of 600 and 4 cell timeouts)")
    a.add_argument("--no-feedback", action="store_true", help="do not (re)build the graded students' feedback pages")
    a.add_argument("--student", action="append", help="only these students (repeatable): a regrade")
    a.add_argument("--also-hide", action="append", type=Path, default=[],
                   help="another directory student code must not see (repeatable)")
    g = sub.add_parser("gradescope", help="write a Gradescope autograder (setup.sh, run_autograder, zip) for an assignment")
    g.add_argument("assignment")
    g.add_argument("--out", type=Path, required=True, help="an empty folder for the autograder and its zip")
    g.add_argument("--course-dir", type=Path, default=Path("autograder"))
    g.add_argument("--cell-timeout", type=int, default=120, help="seconds a cell may run")
    g.add_argument("--memory-gib", type=float, default=6.0, help="memory cap for student code")
    x = sub.add_parser("export", help="an LMS grade sheet: a row per student, a column per assignment, missing marked")
    x.add_argument("--course-dir", type=Path, default=Path("autograder"))
    x.add_argument("--to", type=Path, default=Path("lms_grades.csv"))
    args = ap.parse_args(argv)
    if args.command == "export":
        from course.grading.lms import export

        try:
            print(f"wrote {export(args.course_dir, args.to)}")
        except FileNotFoundError as e:
            print(f"python -m course.grading export: {e}", file=sys.stderr)
            return 2
        return 0
    if args.command == "gradescope":
        from course.grading.gradescope import write_bundle

        try:
            zipped = write_bundle(args.assignment, args.out, args.course_dir, cell_timeout=args.cell_timeout,
                                  memory_gib=args.memory_gib)
        except (FileNotFoundError, FileExistsError) as e:
            print(f"python -m course.grading gradescope: {e}", file=sys.stderr)
            return 2
        print(f"wrote {zipped}: upload it as the assignment's autograder (Gradescope: Configure Autograder, "
              f"Zip file upload); the folder beside it holds the same files")
        return 0
    try:
        results = autograde(args.course_dir, args.assignment, args.workers, args.cell_timeout, args.student,
                            args.memory_gib, args.also_hide, args.submission_timeout, not args.no_feedback,
                            progress=lambda line: print(line, flush=True))
    except FileNotFoundError as e:
        print(f"python -m course.grading autograde: {e}", file=sys.stderr)
        return 2
    where = record.folder(args.course_dir, args.assignment)
    print(f"graded {len(results)} submissions; scores in {args.course_dir / 'grades.csv'} and the gradebook; "
          f"feedback in {args.course_dir / 'feedback'}; per-exercise statistics in {where / 'summary.md'}, "
          f"every student's latest result in {where / 'record.json'}")
    return 0
