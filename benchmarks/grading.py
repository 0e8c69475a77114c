"""Grading throughput: N synthetic chapter-1 submissions through `course.grading`.

    python benchmarks/grading.py [--n 6] [--workers 1 2]

Each run starts from a fresh copy of autograder/, generates the release, writes N correct
submissions (made from the release by course.grading.submissions) and grades them with
the full pipeline (pre-flight, sandboxed nbgrader, independent re-check). Prints seconds
per submission and submissions per minute for each worker count, and the speed-up over
one worker. Target: <= 10 s per submission sequentially on two cores.
"""

from __future__ import annotations

import argparse
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
        "release", "submitted", "autograded", "feedback", "exchange", "gradebook.db", "grades.csv", "grading_report.json"))
    r = runner.nbgrader(course_dir, ["generate_assignment", ASSIGNMENT, "--force"])
    assert r.returncode == 0, r.stderr
    release = course_dir / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    source = course_dir / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    for i in range(n):
        submissions.write(submissions.solved(release, source), course_dir, f"student{i:03d}", ASSIGNMENT)
    return course_dir


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=6)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    base = None
    print(f"{args.n} submissions of {ASSIGNMENT}, full pipeline")
    for w in args.workers:
        with tempfile.TemporaryDirectory() as tmp:
            course_dir = class_of(args.n, Path(tmp))
            start = time.perf_counter()
            results = runner.autograde(course_dir, ASSIGNMENT, workers=w)
            seconds = time.perf_counter() - start
        assert all(r.score == r.max_score for r in results), [(r.student, r.score) for r in results]
        per = seconds / args.n
        base = base or per
        print(f"workers {w}: {seconds:6.1f} s total, {per:5.1f} s per submission, "
              f"{60 / per:5.1f} submissions per minute, speed-up {base / per:4.2f}x")


if __name__ == "__main__":
    main()
