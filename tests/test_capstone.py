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


# -- the worked example's measurements: every printed sentence follows from its numbers ----------

def _found(ablated, controls, clean=3.0, n=40, spread=0.5):
    """A synthetic head_ablation result: per-prompt values spread evenly around each mean."""
    wiggle = [spread * ((i % 5) - 2) / 2 for i in range(n)]
    per = lambda m: [m + w for w in wiggle]   # noqa: E731  (paired: the same wiggle in every run)
    return {"head": "L3H4", "prompts": n, "clean": clean, "ablated": ablated, "controls": controls,
            "control_heads": [f"L3H{h}" for h in range(len(controls))],
            "per_prompt": {"clean": per(clean), "ablated": per(ablated), "controls": [per(c) for c in controls]}}


@pytest.mark.parametrize("ablated, controls, says", [
    (1.0, [2.9, 2.5], "more than any other head of its layer: 1.50 more than the next, L3H1"),
    (2.0, [1.5, 2.9], "no more than another head of its layer (L3H0)"),
])
def test_the_ablation_verdict_follows_the_margin_over_the_strongest_control(ablated, controls, says):
    from course.chapters.capstone_inside_gpt2.findings import head_ablation_report

    assert says in head_ablation_report(_found(ablated, controls))


def test_the_ablation_verdict_weighs_the_margin_against_its_error():
    from course.chapters.capstone_inside_gpt2.findings import head_ablation_report, margin_over_control

    found = _found(1.0, [2.9, 1.3])
    found["per_prompt"]["ablated"] = [a + (1.5 if i % 2 else -1.5) for i, a in enumerate(found["per_prompt"]["ablated"])]
    rival, margin, se = margin_over_control(found)
    assert rival == "L3H1" and margin == pytest.approx(0.3) and margin < 2 * se
    assert "not clearly singled out" in head_ablation_report(found)


def test_the_worked_examples_line_is_true_of_the_shipped_model(m):
    from course.chapters.capstone_inside_gpt2.findings import head_ablation, head_ablation_report, margin_over_control

    found = head_ablation(m, (3, 4), n_groups=4, per_group=4)
    text = head_ablation_report(found)
    drop = found["clean"] - found["ablated"]
    assert f"a drop of {drop:.2f}, {drop / found['clean']:.0%} of it" in text
    rival, margin, se = margin_over_control(found)
    assert f"{margin:.2f}" in text and f"{se:.2f}" in text and rival in text
    assert ("more than any other head" in text) == (margin > 2 * se)


def test_the_starting_ideas_quote_what_was_measured(m):
    from course.chapters.capstone_inside_gpt2.findings import starting_ideas
    from course.circuits.ioi import head_statistics, runs
    from course.data.ioi_dataset import ioi_dataset
    from course.saes import load_shipped_sae

    ideas = starting_ideas(m)
    assert len(ideas) == 3 and all(set(i) == {"question", "because", "hint"} for i in ideas)
    effect = head_statistics(m, runs(m, ioi_dataset(m, "validation", n_groups=6, per_group=4, seed=5)))["direct_effect"]
    top = divmod(int(effect.abs().argmax()), m.cfg.n_heads)
    assert f"L{top[0]}H{top[1]}" in ideas[0]["question"] and f"{float(effect[top]):+.2f}" in ideas[0]["because"]
    sae = load_shipped_sae(m)
    promote = (sae.W_dec * m.ln_final_w) @ m.W_U
    f = int(promote.max(-1).values.argmax())
    assert f"feature {f} " in ideas[2]["question"] and f"{float(promote[f].max()):.2f}" in ideas[2]["because"]
