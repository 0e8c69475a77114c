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


# Run first in a student notebook: the device audit (tests/device_audit.py) raises, as a GPU would,
# where the lesson's code mixes a tensor it made on the CPU with the model's.
AUDIT_CELL = (f"import sys; sys.path.insert(0, {str(ROOT)!r})\n"
              "from tests.device_audit import DeviceAudit\n"
              "_device_audit = DeviceAudit().start()")


def execute(path, audit: bool = False):
    nb = nbformat.read(path, as_version=4)
    if audit:
        nb.cells.insert(0, nbformat.v4.new_code_cell(AUDIT_CELL))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
    return nb


def code(nb) -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == "code"]


def executed_solved(slug: str):
    """The solved notebook, executed. `make test` builds the book first, which executes each chapter
    page in a fresh kernel; a page's code is the solved notebook's, cell for cell, so when the
    executed page is newer than its source and its code is the same, it is read, not run again."""
    solved, page = paths(slug)["solved"], paths(slug)["book"]
    built = ROOT / "book" / "_build" / "jupyter_execute" / "chapters" / f"{slug}.ipynb"
    if built.exists() and page.exists() and built.stat().st_mtime > page.stat().st_mtime:
        nb = nbformat.read(built, as_version=4)
        if code(nb) == code(nbformat.read(solved, as_version=4)):
            return nb
    return execute(solved)


def outputs(nb) -> str:
    return "\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)


# A whole chapter runs in one test; chapter 4's edits take minutes on a shared 2-core machine.
@pytest.mark.timeout(1200)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_solved_notebook_runs_and_every_check_passes(chapter):
    nb = executed_solved(chapter.slug)
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[0].get("ename", "") + ": " + errors[0].get("evalue", "")
    text = outputs(nb)
    for ex in chapter.exercises:
        assert f"✓ {ex.name} matches" in text
    assert "✗" not in text


@pytest.mark.timeout(1200)
@pytest.mark.parametrize("chapter", CHAPTERS, ids=IDS)
def test_student_notebook_runs_with_graceful_checks(chapter):
    nb = execute(paths(chapter.slug)["student"], audit=True)   # raises CellExecutionError on any crash
    text = outputs(nb)
    for ex in chapter.exercises:
        assert f"… {ex.name} not implemented yet" in text
