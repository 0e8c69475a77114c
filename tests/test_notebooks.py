"""Every chapter's solved notebook runs top to bottom in a fresh kernel; the student
notebook runs too, each check saying "not implemented yet" instead of crashing."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from course.build.source import chapter_sources, read_chapter
from course.build.targets import ROOT, paths

CHAPTERS = [read_chapter(p) for p in chapter_sources()]
IDS = [c.slug for c in CHAPTERS]


def execute(path):
    nb = nbformat.read(path, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def outputs(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


# A whole chapter runs in one test; chapter 4's edits take minutes on a shared 2-core machine.
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_solved_notebook_runs_and_every_check_passes(chapter):
    nb = execute(paths(chapter.slug)["solved"])
    text = outputs(nb)
    for ex in chapter.exercises:
        assert f"✓ {ex.name} matches" in text
    assert "✗" not in text


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_student_notebook_runs_with_graceful_checks(chapter):
    nb = execute(paths(chapter.slug)["student"])      # raises CellExecutionError on any crash
    text = outputs(nb)
    for ex in chapter.exercises:
        assert f"… {ex.name} not implemented yet" in text
