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


@pytest.mark.parametrize("student", CASES)
def test_run_autograder_scores_like_course_grading(bundle, tmp_path, student):
    course_dir, zipped = bundle
    entry = next(e for e in corpus(course_dir) if e.student == student)
    root = tmp_path / "autograder"
    with zipfile.ZipFile(zipped) as z:
        z.extractall(root / "source")
    release = course_dir / "release" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    source = course_dir / "source" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    made = tmp_path / "made"
    entry.make(release, source, made)
    shutil.copytree(made, root / "submission")
    run = root / "source" / "run_autograder"
    run.chmod(0o755)
    env = {**os.environ, "AUTOGRADER_ROOT": str(root), "AUTOGRADER_PYTHON": sys.executable}
    r = subprocess.run(["bash", str(run)], capture_output=True, text=True, env=env, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
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
