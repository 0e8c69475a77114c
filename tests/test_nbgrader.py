"""nbgrader on each chapter: the solved submission gets full marks, the untouched release zero."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from course.build.source import chapter_slugs
from course.build.targets import ROOT
from course.grading import submissions
from tests.grading_corpus import ASSIGNMENT

# The capstone's nbgrader round trip (manual cells included) is tests/test_capstone.py's.
SLUGS = [s for s in chapter_slugs() if not s.startswith("capstone")]
# The grading corpus (tests/test_grading.py) already runs its assignment's solved ("correct") and
# untouched ("stub") submissions through nbgrader, with the same scores asserted: running them
# again here would only cost CI time.
ROUND_TRIP = [s for s in SLUGS if s != ASSIGNMENT]
BIN = Path(sys.executable).parent


def nbgrader(course_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "HF_HUB_OFFLINE": "1"}
    return subprocess.run([str(BIN / "nbgrader"), *args], cwd=course_dir, env=env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def course_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("course") / "autograder"
    shutil.copytree(ROOT / "autograder", root, ignore=shutil.ignore_patterns(
        "release", "submitted", "autograded", "feedback", "exchange", "gradebook.db"))
    return root


def _release(course_dir: Path, slug: str) -> tuple[Path, Path]:
    r = nbgrader(course_dir, "generate_assignment", slug, "--force")
    assert r.returncode == 0, r.stderr[-2000:]
    release = course_dir / "release" / slug / f"{slug}.ipynb"
    source = course_dir / "source" / slug / f"{slug}.ipynb"
    assert "BEGIN SOLUTION" not in release.read_text() and "HIDDEN TESTS" not in release.read_text()
    return release, source


def test_the_corpus_assignment_releases_without_solutions_or_hidden_tests(course_dir):
    _release(course_dir, ASSIGNMENT)


@pytest.mark.parametrize("slug", ROUND_TRIP)
def test_solved_gets_full_marks_and_the_untouched_release_zero(course_dir, slug):
    release, source = _release(course_dir, slug)
    submissions.write(submissions.solved(release, source), course_dir, "solver", slug)
    submissions.write(submissions.edit(release, lambda nb: None), course_dir, "untouched", slug)
    r = nbgrader(course_dir, "autograde", slug)
    assert r.returncode == 0, r.stderr[-2000:]
    r = nbgrader(course_dir, "export", "--to", "grades.csv")
    assert r.returncode == 0, r.stderr[-2000:]
    rows = {row["student_id"]: row for row in csv.DictReader(open(course_dir / "grades.csv"))
            if row["assignment"] == slug}
    # Everything a machine grades; the capstone's answer cells wait for a human grader.
    from course.build.source import CHAPTERS_DIR, read_chapter
    by_hand = sum(c.points for c in read_chapter(CHAPTERS_DIR / slug / "lesson.py").cells if c.kind == "answer")
    assert float(rows["solver"]["score"]) == float(rows["solver"]["max_score"]) - by_hand > 0
    assert float(rows["untouched"]["score"]) == 0.0
