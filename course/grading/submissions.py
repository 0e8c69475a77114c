"""Synthetic student submissions, made from the release notebook the way a student would.

A submission starts as the notebook nbgrader released; a student fills in solution
cells. These helpers do the same edits programmatically, so the grading tests and
the throughput benchmark never hand-edit notebook JSON.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import nbformat

from course.build.source import BEGIN, END


def grade_id(cell) -> str | None:
    return cell.get("metadata", {}).get("nbgrader", {}).get("grade_id")


def solution_sources(source_nb: Path) -> dict[str, str]:
    """grade_id -> the reference solution code (markers removed), from the nbgrader source notebook."""
    nb = nbformat.read(source_nb, as_version=4)
    return {grade_id(c): "\n".join(l for l in c.source.splitlines() if l.strip() not in (BEGIN, END))
            for c in nb.cells if c.get("metadata", {}).get("nbgrader", {}).get("solution")}


def fill(release_nb: Path, answers: dict[str, str]) -> nbformat.NotebookNode:
    """The release notebook with the solution cells named in ``answers`` replaced."""
    nb = nbformat.read(release_nb, as_version=4)
    for cell in nb.cells:
        if grade_id(cell) in answers:
            cell.source = answers[grade_id(cell)]
    return nb


def solved(release_nb: Path, source_nb: Path) -> nbformat.NotebookNode:
    """A submission that answers every exercise with the reference solution."""
    return fill(release_nb, solution_sources(source_nb))


def edit(release_nb: Path, change: Callable[[nbformat.NotebookNode], None]) -> nbformat.NotebookNode:
    nb = nbformat.read(release_nb, as_version=4)
    change(nb)
    return nb


def write(nb: nbformat.NotebookNode, course_dir: Path, student: str, assignment: str, name: str | None = None) -> Path:
    """Put ``nb`` where nbgrader autograde looks: submitted/<student>/<assignment>/<name>.ipynb."""
    out = course_dir / "submitted" / student / assignment / f"{name or assignment}.ipynb"
    out.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out)
    return out
