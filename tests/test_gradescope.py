"""The Gradescope autograder grades like ``python -m course.grading autograde``: the bundle is
laid out as Gradescope lays it out (``/autograder/source``, ``submission``, ``results``) in a
temporary root, and its ``run_autograder`` grades the corpus's solved, untouched and cheating
submissions to the scores the corpus requires of ``course.grading`` (tests/test_grading.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile

import pytest

from course.grading.gradescope import write_bundle
from tests.grading_corpus import ASSIGNMENT, FULL, corpus
from tests.test_grading import fresh_course_dir

CASES = ["correct", "stub", "import_solutions"]   # solved, untouched, cheating (and wrong on one exercise)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("gradescope")
    course_dir = fresh_course_dir(tmp)
    zipped = write_bundle(ASSIGNMENT, tmp / "bundle", course_dir, cell_timeout=20, memory_gib=3.0)
    return course_dir, zipped


def test_the_zip_holds_what_gradescope_runs(bundle):
    _, zipped = bundle
    names = set(zipfile.ZipFile(zipped).namelist())
    assert {"setup.sh", "run_autograder", "assignment.json", "constraints.txt",
            f"course/source/{ASSIGNMENT}/{ASSIGNMENT}.ipynb", "course/nbgrader_config.py"} <= names
    assert any(n.startswith("wheels/inside_gpt2-") and n.endswith(".whl") for n in names)
    setup = zipfile.ZipFile(zipped).read("setup.sh").decode()
    assert "torch==" in setup and "-c constraints.txt" in setup


@pytest.fixture(scope="module")
def graded_by_gradescope(bundle, tmp_path_factory):
    """Each case graded in its own Gradescope root, all at once (as Gradescope runs submissions, one
    container each): student -> the finished process and its root."""
    course_dir, zipped = bundle
    release = course_dir / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    source = course_dir / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    started = {}
    for student in CASES:
        tmp = tmp_path_factory.mktemp(f"gs-{student}")
        entry = next(e for e in corpus(course_dir) if e.student == student)
        root = tmp / "autograder"
        with zipfile.ZipFile(zipped) as z:
            z.extractall(root / "source")
        entry.make(release, source, tmp / "made")
        shutil.copytree(tmp / "made", root / "submission")
        run = root / "source" / "run_autograder"
        run.chmod(0o755)
        env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
        started[student] = (subprocess.Popen(["bash", str(run)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                             text=True, env=env), root, entry)
    return {s: (p.communicate(timeout=900)[0], p.returncode, root, entry) for s, (p, root, entry) in started.items()}


@pytest.mark.parametrize("student", CASES)
def test_run_autograder_scores_like_course_grading(graded_by_gradescope, student):
    output, returncode, root, entry = graded_by_gradescope[student]
    assert returncode == 0, output[-4000:]
    results = json.loads((root / "results" / "results.json").read_text())
    scored = [t for t in results["tests"] if t["max_score"] > 0]
    assert sum(t["score"] for t in scored) == pytest.approx(entry.expected), results
    assert sum(t["max_score"] for t in scored) == pytest.approx(FULL)
    assert all(t["visibility"] == "visible" for t in scored)
    hidden = [t for t in results["tests"] if ": hidden tests" in t["name"]]
    assert hidden and all(t["visibility"] == "after_due_date" and t["max_score"] == 0 for t in hidden)
    said = " ".join([results["output"]] + [t["output"] for t in results["tests"]])
    for words in entry.feedback:
        assert words in said, (student, words, said[:800])
