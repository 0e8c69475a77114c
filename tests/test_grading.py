"""Grading a class: the adversarial corpus end to end, every score right, the batch finishes,
and every student's feedback says in words what happened."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from course.build.targets import ROOT
from course.grading import runner
from tests.grading_corpus import ASSIGNMENT, corpus


def fresh_course_dir(tmp: Path) -> Path:
    course_dir = tmp / "autograder"
    shutil.copytree(ROOT / "autograder", course_dir, ignore=shutil.ignore_patterns(
        "release", "submitted", "autograded", "feedback", "exchange", "gradebook.db", "grades.csv", "grading_report.json"))
    r = runner.nbgrader(course_dir, ["generate_assignment", ASSIGNMENT, "--force"])
    assert r.returncode == 0, r.stderr[-1500:]
    return course_dir


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course_dir = fresh_course_dir(tmp_path_factory.mktemp("class"))
    release = course_dir / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    source = course_dir / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    entries = corpus(course_dir)
    for e in entries:
        e.make(release, source, course_dir / "submitted" / e.student / ASSIGNMENT)
    victim = course_dir / "submitted" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    victim_before = victim.read_text()
    results = runner.autograde(course_dir, ASSIGNMENT, workers=2, cell_timeout=10, memory_gib=3.0)
    return course_dir, entries, {r.student: r for r in results}, victim_before


def test_every_submission_gets_its_score(graded):
    course_dir, entries, results, _ = graded
    wrong = {e.student: (results[e.student].score, e.expected) for e in entries
             if results[e.student].score != pytest.approx(e.expected)}
    assert not wrong, f"student: (got, expected) {wrong}"
    rows = {r["student_id"]: r for r in csv.DictReader(open(course_dir / "grades.csv"))}
    for e in entries:   # the exported grades agree
        assert float(rows[e.student]["score"]) == pytest.approx(e.expected), e.student


@pytest.mark.parametrize("entry", corpus(Path("/nonexistent")), ids=lambda e: e.student)
def test_feedback_says_what_happened(graded, entry):
    _, _, results, _ = graded
    r = results[entry.student]
    said = " ".join(r.notes + list(r.exercises.values()) + [r.error or ""])
    for words in entry.feedback:
        assert words in said, f"{entry.student}: {words!r} not in {said[:600]!r}"


def test_the_batch_finished_and_nothing_was_tampered_with(graded):
    course_dir, entries, results, victim_before = graded
    assert set(results) == {e.student for e in entries}
    victim = course_dir / "submitted" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert victim.read_text() == victim_before                     # another student's file
    report = json.loads((course_dir / "grading_report.json").read_text())
    assert all(r["score"] <= r["max_score"] == 14.0 for r in report)   # no score above the maximum


def test_originals_are_kept_and_output_is_limited(graded):
    course_dir, _, _, _ = graded
    kept = list((course_dir / "submitted" / "invalid_json" / ASSIGNMENT).glob("*.unreadable"))
    assert kept and kept[0].stat().st_size == 5000
    flood = course_dir / "autograded" / "print_flood" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    assert flood.stat().st_size < 5 * 2**20


def test_feedback_html_is_offline_and_hides_hidden_tests(graded):
    course_dir, _, _, _ = graded
    r = runner.nbgrader(course_dir, ["generate_feedback", ASSIGNMENT, "--student", "wrong_answer", "--force"])
    assert r.returncode == 0, r.stderr[-1500:]
    html = (course_dir / "feedback" / "wrong_answer" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "logit_lens on hidden input" in html                     # the re-check's comment reaches the student
    assert "BEGIN HIDDEN TESTS" not in html and "hidden=True" not in html
    import re
    external = re.findall(r'(?:src|href)\s*=\s*["\']\s*(?:https?:)?//[^"\']*', html)
    assert not external, external                                   # loads nothing from outside the file
    assert "cdnjs" not in html and "unpkg" not in html
