"""The authoring pipeline: generated files are current, and no solution reaches a student."""

from __future__ import annotations

import json

import pytest
import torch

from course.build import __main__ as build
from course.checks.core import chapter_checks
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
        reuse = ex.metadata.get("reuse")
        # an exercise reused from a chapter is that chapter's reference, imported, not a copy
        assert (f"from solutions.{reuse} import {ex.name}" in module) if reuse else (ex.without_markers() in module)


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
    checks = chapter_checks(chapter.slug)
    graded = {c.name for c in chapter.cells if c.kind == "tests"}
    for ex in chapter.exercises:
        assert ex.name in checks.EXERCISES, f"{ex.name} has no check"
        assert ex.name in graded, f"{ex.name} has no graded cell"


@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_shipped_expected_values_are_the_references_outputs(chapter, course_model):
    from course.build.__main__ import _same
    from course.checks.core import expected_outputs, expected_path

    checks = chapter_checks(chapter.slug)
    shipped = torch.load(expected_path(chapter.slug), weights_only=True)
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


# -- what the README and the book's front page say about the model -------------------------------

def test_the_readme_and_the_book_state_the_models_facts_from_its_files():
    from course.build import model_facts

    assert model_facts.update(check=True) == [], "run `python -m course.build`"
    facts = model_facts.model_facts()
    config = json.loads((model_facts.MODEL / "config.json").read_text())
    figures = json.loads((model_facts.MODEL / "evaluation.json").read_text())["figures"]
    readme = (model_facts.ROOT / "README.md").read_text()
    intro = (model_facts.ROOT / "book" / "intro.md").read_text()
    assert f"{config['n_layer']} layers, {config['n_head']} heads per layer" in intro
    assert f"{config['n_layer']} layers, {config['n_head']} heads, width {config['n_embd']}" in readme
    assert f"IO above S {figures['ioi_accuracy']:.3f}" in readme and f"{figures['fact_accuracy']:.3f}" in readme
    # The parameter count, counted another way: HF's own count of the loaded model.
    from course.models.loading import load_hf_model

    hf, _ = load_hf_model("course-gpt2", device="cpu")
    assert facts["params"] == sum(p.numel() for p in hf.parameters())


def test_model_facts_name_a_class_only_when_it_passes_its_definition(tmp_path):
    from course.build import model_facts

    circuit = {"name_movers": [[2, 0]], "s_inhibition": [], "duplicate_token": [], "subject_suppression": [[3, 4]],
               "figures": {"name_mover_attention_to_io": 0.23, "name_mover_share": -0.01, "s_inhibition_removed": 0.0,
                           "duplicate_removed": 0.0, "subject_suppression_share": 0.8}}
    text = model_facts._circuit_text(circuit)
    assert "no name movers: the candidates L2H0 attend to IO 0.23" in text and "no S-inhibition heads" in text
    passing = {**circuit, "figures": {**circuit["figures"], "name_mover_attention_to_io": 0.6, "name_mover_share": 0.7}}
    assert model_facts._circuit_text(passing).startswith("name movers L2H0 (attention to IO 0.60, 0.70")
    page = tmp_path / "page.md"
    with pytest.raises(model_facts.MissingMarkers, match="put the two lines"):
        model_facts.render("no markers here", "x", page)
    assert model_facts.render(f"a\n{model_facts.START}\nold\n{model_facts.END}\nb", "new", page) == \
        f"a\n{model_facts.START}\nnew\n{model_facts.END}\nb"
