"""The authoring pipeline: generated files are current, and no solution reaches a student."""

from __future__ import annotations

import json

import pytest
import torch

from course.build import __main__ as build
from course.build.source import chapter_sources, read_chapter
from course.build.targets import paths, render_all

CHAPTERS = [read_chapter(p) for p in chapter_sources()]
IDS = [c.slug for c in CHAPTERS]


def test_there_is_a_chapter():
    assert "ch1_residual_stream" in IDS


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_generated_files_are_up_to_date(chapter):
    stale = [p for p, text in render_all(chapter).items() if open(p).read() != text]
    assert not stale, f"stale generated files {stale}: run `python -m course.build`"


def test_build_check_mode_reports_staleness(tmp_path, monkeypatch):
    assert build.main(["--check"]) == 0
    student = paths("ch1_residual_stream")["student"]
    original = student.read_text()
    try:
        student.write_text(original.replace("Chapter 1", "Chapter One", 1))
        assert build.main(["--check", "ch1_residual_stream"]) == 1
    finally:
        student.write_text(original)
    assert build.main(["--check", "no_such_chapter"]) == 2


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_reference_module_is_the_sources_solution_code(chapter):
    module = paths(chapter.slug)["module"].read_text()
    for ex in chapter.exercises:
        assert ex.without_markers() in module


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_no_solution_code_in_the_student_notebook(chapter):
    nb = json.loads(paths(chapter.slug)["student"].read_text())
    code = "\n".join("".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code")
    for ex in chapter.exercises:
        leaked = [line for line in ex.solution_lines() if line in code]
        assert not leaked, f"{ex.name}: solution lines in the student notebook: {leaked}"
        assert f'raise NotImplementedError("{ex.name}: fill in this function' in code
    assert "BEGIN SOLUTION" not in code and "HIDDEN TESTS" not in code


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_every_exercise_has_a_check_and_graded_tests(chapter):
    import importlib

    checks = importlib.import_module(f"course.checks.{chapter.slug}")
    graded = {c.name for c in chapter.cells if c.kind == "tests"}
    for ex in chapter.exercises:
        assert ex.name in checks.EXERCISES, f"{ex.name} has no check"
        assert ex.name in graded, f"{ex.name} has no graded cell"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_shipped_expected_values_are_the_references_outputs(chapter, course_model):
    import importlib

    from course.build.__main__ import _same
    from course.checks.core import EXPECTED_DIR, expected_outputs

    checks = importlib.import_module(f"course.checks.{chapter.slug}")
    shipped = torch.load(EXPECTED_DIR / f"{chapter.slug}.pt", weights_only=True)
    for name, ex in checks.EXERCISES.items():
        fresh = expected_outputs(ex, course_model)
        assert len(fresh) == len(shipped[name])
        # float noise (another CPU's kernels) is not staleness: the build's own test of sameness decides
        for i, (a, b) in enumerate(zip(fresh, shipped[name])):
            assert _same(b, a), f"{name}, input {i}: stale expected values, run `python -m course.build`"


def test_expected_values_compare_up_to_float_noise():
    """The build keeps a shipped expected-values file when only float noise differs
    (a thread count, a CPU), and rewrites it when a value really changed."""
    from course.build.__main__ import _same

    old = {"ex": [torch.ones(3), 1.0, (2, "name")], "flag": True}
    assert _same(old, {"ex": [torch.ones(3) + 1e-8, 1.0 + 1e-9, (2, "name")], "flag": True})
    assert not _same(old, {"ex": [torch.ones(3) + 1e-3, 1.0, (2, "name")], "flag": True})
    assert not _same(old, {"ex": [torch.ones(4), 1.0, (2, "name")], "flag": True})
    assert not _same(old, {"ex": [torch.ones(3), 1.5, (2, "name")], "flag": True})
    assert not _same(old, {"ex": [torch.ones(3), 1.0, [2, "name"]], "flag": True})
    assert not _same(old, {"ex": [torch.ones(3), 1.0, (2, "name")]})
    # the slack follows the tensor's magnitude and, in half precision, its resolution
    big = torch.tensor([346.0, 0.01])
    assert _same(big, big + torch.tensor([0.0, 3e-4])) and not _same(big, big + torch.tensor([0.0, 0.05]))
    half = torch.tensor([0.2369, 16.0], dtype=torch.float16)
    assert _same(half, torch.tensor([0.2368, 16.0078], dtype=torch.float16))
    assert not _same(half, torch.tensor([0.2, 16.0], dtype=torch.float16))
    assert _same(torch.tensor([1, 2]), torch.tensor([1, 2])) and not _same(torch.tensor([1, 2]), torch.tensor([1, 3]))
