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


def fresh_course_dir(tmp: Path, assignment: str = ASSIGNMENT) -> Path:
    course_dir = tmp / "autograder"
    shutil.copytree(ROOT / "autograder", course_dir, ignore=shutil.ignore_patterns(
        "release", "submitted", "autograded", "feedback", "exchange", "gradebook.db", "grades.csv", "grading"))
    r = runner.nbgrader(course_dir, ["generate_assignment", assignment, "--force"])
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
    # Feedback pages are built where a test reads them (and by the regrade test, the default path).
    results = runner.autograde(course_dir, ASSIGNMENT, workers=2, cell_timeout=20, memory_gib=3.0, feedback=False)
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
    record = json.loads((course_dir / "grading" / ASSIGNMENT / "record.json").read_text())
    assert set(record) == set(results)
    assert all(r["score"] <= r["max_score"] == 14.0 for r in record.values())   # no score above the maximum
    log = (course_dir / "grading" / ASSIGNMENT / "grading.log").read_text()
    assert f"[{len(results)}/{len(results)}]" in log and "left" in log         # written as each student finished


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
    # Outside inline scripts (the vendored MathJax's code holds links of its menu, never loaded);
    # the browser test below refuses every request that is not the file itself.
    markup = re.sub(r"<script>.*?</script>", "", html, flags=re.S)
    external = re.findall(r'(?:src|href)\s*=\s*["\']\s*(?:https?:)?//[^"\']*', markup)
    assert not external, external                                   # loads nothing from outside the file
    assert "cdnjs" not in html and "unpkg" not in html


@pytest.mark.skipif(shutil.which("chromium") is None, reason="Chromium is not installed (make test installs it)")
def test_feedback_formulas_are_typeset_offline_in_a_browser(graded):
    """The page inlines the vendored MathJax: opened as a lone file with every other request
    refused, its TeX ($\\varepsilon$, $W_E[t_i]$, ...) becomes typeset SVG."""
    from playwright.sync_api import sync_playwright

    course_dir, _, _, _ = graded
    r = runner.nbgrader(course_dir, ["generate_feedback", ASSIGNMENT, "--student", "correct", "--force"])
    assert r.returncode == 0, r.stderr[-1500:]
    page_file = course_dir / "feedback" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.html"
    html = page_file.read_text()
    assert "window.MathJax" in html and "$\\varepsilon$" in html
    refused = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=shutil.which("chromium"), args=["--headless", "--no-sandbox"])
        page = browser.new_page()
        page.route("**/*", lambda route: route.continue_() if route.request.url.startswith("file:")
                   else (refused.append(route.request.url), route.abort()))
        page.goto(page_file.as_uri())
        page.wait_for_function("document.querySelectorAll('mjx-container svg').length >= 10", timeout=30_000)
        raw = page.evaluate("document.body.innerText.includes('\\\\varepsilon')")
        browser.close()
    assert not refused, refused
    assert not raw, "some TeX was left as source"


def test_a_timeout_reads_as_words_in_the_feedback(graded):
    from course.grading.feedback import TIMEOUT_WORDS

    course_dir, _, _, _ = graded
    r = runner.nbgrader(course_dir, ["generate_feedback", ASSIGNMENT, "--student", "infinite_loop", "--force"])
    assert r.returncode == 0, r.stderr[-1500:]
    html = (course_dir / "feedback" / "infinite_loop" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert TIMEOUT_WORDS.split(":")[0] in html and "KeyboardInterrupt" not in html


def test_the_record_has_per_exercise_statistics_with_named_mistakes(graded):
    course_dir, entries, results, _ = graded
    summary = (course_dir / "grading" / ASSIGNMENT / "summary.md").read_text()
    assert f"{len(entries)} students graded" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| logit_lens |"))
    passed = sum(r.exercises["logit_lens"].startswith("✓") for r in results.values())
    assert f"{passed}/{len(entries)}" in row


def test_lms_export_has_a_row_per_student_and_marks_missing_work(graded, tmp_path):
    from nbgrader.api import Gradebook

    from course.grading import lms

    course_dir, entries, results, _ = graded
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:     # a roster student who sent nothing
        gb.update_or_create_student("absent", first_name="Ada", last_name="Absent", lms_user_id="lms-42")
    assert runner.main(["export", "--course-dir", str(course_dir), "--to", str(tmp_path / "lms.csv")]) == 0
    rows = {r["student_id"]: r for r in csv.DictReader(open(tmp_path / "lms.csv"))}
    assert rows["absent"][ASSIGNMENT] == lms.MISSING and rows["absent"]["lms_user_id"] == "lms-42"
    for e in entries:
        assert float(rows[e.student][ASSIGNMENT]) == pytest.approx(e.expected), e.student
        assert rows[e.student][f"{ASSIGNMENT} submitted"], "a timestamp, or says there is none"
    assert runner.main(["export", "--course-dir", str(tmp_path / "nowhere"), "--to", str(tmp_path / "x.csv")]) == 2


def test_only_what_grades_runs(graded):
    """Demo and visible-check cells are skipped with a note; set-up, answers and tests run."""
    import nbformat

    from course.grading import skip_demos

    course_dir, _, _, _ = graded
    nb = nbformat.read(course_dir / "autograded" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb", as_version=4)
    kinds = {}
    for cell in nb.cells:
        gid = cell.metadata.get("nbgrader", {}).get("grade_id", "")
        kinds.setdefault(gid.split("-")[0] if "-" in gid else "graded", []).append(cell)
    assert kinds["demo"] and kinds["check"]
    assert all(c.source == skip_demos.NOTE and not c.outputs for k in ("demo", "check") for c in kinds[k])
    assert all(c.source != skip_demos.NOTE for k in ("setup", "module", "graded") for c in kinds[k])
    answers = [c for c in kinds["graded"] if c.metadata["nbgrader"].get("solution")]
    assert answers and all("def " in c.source for c in answers)


def test_skip_demos_never_touches_student_or_graded_cells():
    import nbformat

    from course.grading.skip_demos import NOTE, SkipDemos

    def cell(gid, **flags):
        return nbformat.v4.new_code_cell("x = 1", metadata={"nbgrader": {"grade_id": gid, **flags}})

    nb = nbformat.v4.new_notebook(cells=[
        cell("demo-001", locked=True), cell("check-002", locked=True), cell("setup-003", locked=True),
        cell("demo-004", locked=False, solution=True),        # a student's answer cell named like a demo
        cell("check_x", grade=True, locked=True, points=1),   # a graded test cell
        nbformat.v4.new_code_cell("x = 2"),                   # a cell the student added
    ])
    out, _ = SkipDemos().preprocess(nb, {})
    assert [c.source == NOTE for c in out.cells] == [True, True, False, False, False, False]


def test_nbgrader_worker_reports_failures_and_keeps_going(tmp_path):
    """The long-lived nbgrader answers every request, a failure included, and stays usable."""
    from course.grading import nbgrader_service

    course_dir = fresh_course_dir(tmp_path)
    worker = nbgrader_service.Worker(course_dir, "python3", 10, runner._env())
    try:
        for _ in range(2):
            ok, log = worker.autograde(ASSIGNMENT, "nobody", timeout=120)
            assert not ok and "nobody" in log
        assert worker.proc is not None and worker.proc.poll() is None
    finally:
        worker.close()


def test_a_regrade_rebuilds_that_students_feedback_and_keeps_the_others(graded):
    """Runs last: it changes the class. The student who sent the stub sends the solution."""
    from course.grading import submissions as sub

    course_dir, entries, results, _ = graded
    release = course_dir / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    source = course_dir / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    folder = course_dir / "submitted" / "stub" / ASSIGNMENT
    import nbformat
    nbformat.write(sub.solved(release, source), folder / f"{ASSIGNMENT}.ipynb")
    assert runner.main(["autograde", ASSIGNMENT, "--course-dir", str(course_dir), "--student", "nobody"]) == 2
    (again,) = runner.autograde(course_dir, ASSIGNMENT, students=["stub"], cell_timeout=20, memory_gib=3.0)
    assert again.score == pytest.approx(14.0)
    html = (course_dir / "feedback" / "stub" / ASSIGNMENT / f"{ASSIGNMENT}.html").read_text()
    assert "14.0 / 14.0" in html or "14 / 14" in html, "the page shows the new score"
    record = json.loads((course_dir / "grading" / ASSIGNMENT / "record.json").read_text())
    assert record["stub"]["score"] == pytest.approx(14.0) and set(record) == {e.student for e in entries}
