"""Grading throughput: N synthetic chapter-1 submissions through `course.grading`.

    python benchmarks/grading.py [--n 8] [--workers 1 2] [--core-per-worker]

Each run starts from a fresh copy of autograder/, generates the release, writes N correct
submissions (made from the release by course.grading.submissions) and grades them with
the full pipeline (pre-flight, sandboxed nbgrader, independent re-check, gradebook,
grades.csv). Prints seconds per submission and submissions per minute for each worker
count, and the speed-up over one worker. Target: <= 10 s per submission sequentially
on two cores, and near-linear speed-up with workers.

One worker already keeps two cores busy (a student's nbgrader kernel and re-check run
side by side), so on a two-core machine more workers cannot go faster. With
``--core-per-worker`` the benchmark gives each worker one core (CPU affinity, inherited
by every process the grading starts): workers 1 on one core, workers 2 on two, ... —
the speed-up then says whether the workers scale with cores, which is what an
instructor's bigger machine will see.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

from course.build.targets import ROOT
from course.grading import runner, submissions

ASSIGNMENT = "ch1_residual_stream"


def class_of(n: int, root: Path) -> Path:
    course_dir = root / "autograder"
    shutil.copytree(ROOT / "autograder", course_dir, ignore=shutil.ignore_patterns(
        "release", "submitted", "autograded", "feedback", "exchange", "gradebook.db", "grades.csv", "grading"))
    r = runner.nbgrader(course_dir, ["generate_assignment", ASSIGNMENT, "--force"])
    assert r.returncode == 0, r.stderr
    release = course_dir / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    source = course_dir / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for i in range(n):
        submissions.write(submissions.solved(release, source), course_dir, f"student{i:03d}", ASSIGNMENT)
    return course_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--core-per-worker", action="store_true", help="give each worker one core (CPU affinity)")
    args = ap.parse_args()
    base = None
    cores = sorted(os.sched_getaffinity(0))
    if args.core_per_worker and max(args.workers) > len(cores):
        raise SystemExit(f"--core-per-worker needs a core per worker: {len(cores)} available, "
                         f"{max(args.workers)} workers asked; pass fewer --workers.")
    print(f"{args.n} submissions of {ASSIGNMENT}, full pipeline, {len(cores)} cores"
          + (", one core per worker" if args.core_per_worker else ""))
    for w in args.workers:
        if args.core_per_worker:
            os.sched_setaffinity(0, cores[:w])
        with tempfile.TemporaryDirectory() as tmp:
            course_dir = class_of(args.n, Path(tmp))
            start = time.perf_counter()
            results = runner.autograde(course_dir, ASSIGNMENT, workers=w)
            seconds = time.perf_counter() - start
        assert all(r.score == r.max_score for r in results), [(r.student, r.score) for r in results]
        per = seconds / args.n
        base = base or per
        where = f" on {w} core{'s' if w > 1 else ''}" if args.core_per_worker else ""
        print(f"workers {w}{where}: {seconds:6.1f} s total, {per:5.1f} s per submission, "
              f"{60 / per:5.1f} submissions per minute, speed-up {base / per:4.2f}x")
    os.sched_setaffinity(0, cores)


if __name__ == "__main__":
    main()
