"""The capstone: built like a chapter, its tools checked and autograded like chapters 1 and 2, its
finding graded by hand in nbgrader with the rubric's points, and feedback that carries the rubric
and the grader's comments."""

from __future__ import annotations

import re

import nbformat
import pytest

from course.build.source import ANSWER_STUB, CHAPTERS_DIR, read_chapter
from course.build.targets import ROOT, paths
from course.grading import runner
from course.grading import submissions as sub
from tests.test_grading import fresh_course_dir

SLUG = "capstone_inside_gpt2"
CHAPTER = read_chapter(CHAPTERS_DIR / SLUG / "lesson.py")


def _rubric_points() -> dict[str, int]:
    """criterion -> points, from the rubric table in the brief (what students and graders read)."""
    brief = CHAPTER.cells[0].source
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^\| ([a-z][^|]+?) \| (\d+) \|", brief, re.M)}


def test_the_rubric_in_the_brief_is_the_points_the_grader_gives():
    answers = [c for c in CHAPTER.cells if c.kind == "answer"]
    rubric = _rubric_points()
    assert len(rubric) == len(answers) == 7
    assert [c.points for c in answers] == list(rubric.values())
    auto = sum(c.points for c in CHAPTER.cells if c.kind == "tests")
    assert f"autograded, {auto} points" in CHAPTER.cells[0].source
    assert f"graded by hand, {sum(rubric.values())} points" in CHAPTER.cells[0].source


def test_it_reuses_the_chapters_exercises_and_their_checks():
    from course.chapters.capstone_inside_gpt2 import checks
    from course.checks.core import chapter_checks

    for slug, names in checks.REUSED.items():
        chapter = read_chapter(CHAPTERS_DIR / slug / "lesson.py")
        theirs = {c.name: c.source for c in chapter.exercises}
        for name in names:
            mine = next(c for c in CHAPTER.exercises if c.name == name)
            assert mine.source == theirs[name], name                       # the chapter's cell, not a copy
            assert checks.EXERCISES[name] is chapter_checks(slug).EXERCISES[name]


def test_the_worked_example_is_for_instructors_and_the_book_not_students():
    student = nbformat.read(paths(SLUG)["student"], as_version=4)
    solved = nbformat.read(paths(SLUG)["solved"], as_version=4)
    book = (ROOT / "book" / "chapters" / f"{SLUG}.ipynb").read_text()
    text = "\n".join(c.source for c in student.cells)
    shared = "\n".join(c.source for c in CHAPTER.cells if c.kind not in ("work", "answer"))   # e.g. plt.show()
    for c in CHAPTER.cells:
        if c.kind == "answer":
            assert c.source not in text and c.source in "\n".join(x.source for x in solved.cells)
            assert c.source.splitlines()[0] in book
        if c.kind == "work":
            leaked = [line for line in c.solution_lines() if line in text and line not in shared]
            assert not leaked, leaked
    assert text.count(ANSWER_STUB) == 7 and "{dropdown} A worked example" in book


@pytest.fixture(scope="module")
def graded(tmp_path_factory):
    course_dir = fresh_course_dir(tmp_path_factory.mktemp("capstone"), SLUG)
    release = course_dir / "release" / SLUG / f"{SLUG}.ipynb"
    source = course_dir / "source" / SLUG / f"{SLUG}.ipynb"
    sub.write(sub.solved(release, source), course_dir, "solver", SLUG)
    sub.write(sub.edit(release, lambda nb: None), course_dir, "untouched", SLUG)
    results = {r.student: r for r in runner.autograde(course_dir, SLUG, workers=1, cell_timeout=60, memory_gib=3.0,
                                                      feedback=False)}
    return course_dir, results


def test_autograde_gives_the_solved_tools_full_marks_and_the_untouched_notebook_zero(graded):
    _, results = graded
    auto = sum(c.points for c in CHAPTER.cells if c.kind == "tests")
    assert results["solver"].score == pytest.approx(auto), results["solver"]
    assert results["untouched"].score == 0.0
    assert results["solver"].max_score == auto + sum(_rubric_points().values())


def test_the_finding_is_graded_by_hand_with_the_rubrics_points_and_its_feedback_carries_the_comments(graded):
    from nbgrader.api import Gradebook

    course_dir, _ = graded
    rubric = list(_rubric_points().values())
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        nb = gb.find_submission_notebook(SLUG, SLUG, "solver")
        manual = sorted((g for g in nb.grades if g.cell.name.startswith("answer-")), key=lambda g: g.cell.name)
        # what the formgrader lists for a grader: each answer cell, its points, waiting for a grade
        assert [g.max_score for g in manual] == rubric
        assert all(g.needs_manual_grade for g in manual)
        for g in manual:
            g.manual_score = g.max_score - 1 if g.max_score > 1 else g.max_score
        comments = {c.cell.name: c for c in nb.comments}
        comments[manual[1].cell.name].manual_comment = "The ablation is clear; say why mean, not zero, ablation."
        gb.db.commit()
        graded_score = nb.score
    auto = sum(c.points for c in CHAPTER.cells if c.kind == "tests")
    assert graded_score == pytest.approx(auto + sum(p - 1 if p > 1 else p for p in rubric))
    r = runner.nbgrader(course_dir, ["generate_feedback", SLUG, "--student", "solver", "--force"])
    assert r.returncode == 0, r.stderr[-1500:]
    html = (course_dir / "feedback" / "solver" / SLUG / f"{SLUG}.html").read_text()
    assert "why mean, not zero, ablation" in html                      # the grader's comment
    assert "evidence that could have failed" in html and "readable figures" in html   # the rubric
