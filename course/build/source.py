"""Read a chapter's one hand-written source (jupytext percent format) into typed cells.

Cell kinds, from the cell's tags:
- ``markdown``: text;
- ``module``: code the reference module needs (imports); also in every notebook;
- ``setup``: notebook set-up (load the model, import the checks);
- ``exercise``: one function whose body holds ``### BEGIN SOLUTION`` / ``### END SOLUTION``;
- ``check``: the visible check right after an exercise;
- ``tests``: an nbgrader graded cell (``points=N``; hidden part between
  ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``), in the autograder notebook only;
- ``code``: anything else (demos, widgets, findings).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

CHAPTERS_DIR = Path(__file__).resolve().parent.parent / "chapters"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
KINDS = ("module", "setup", "exercise", "check", "tests")


class SourceError(ValueError):
    pass


@dataclass
class Cell:
    kind: str
    source: str
    points: int = 0
    name: str = ""                        # the exercise's function name
    metadata: dict = field(default_factory=dict)

    def without_markers(self) -> str:
        """The solution as plain code (the marker lines dropped)."""
        return "\n".join(l for l in self.source.splitlines() if l.strip() not in (BEGIN, END))

    def stub(self) -> str:
        """The student's version: the solution region becomes a NotImplementedError with the name."""
        out, skipping = [], False
        for line in self.source.splitlines():
            if line.strip() == BEGIN:
                indent = line[: len(line) - len(line.lstrip())]
                out.append(f'{indent}raise NotImplementedError("{self.name}: fill in this function, '
                           f'then run the check below")')
                skipping = True
            elif line.strip() == END:
                skipping = False
            elif not skipping:
                out.append(line)
        return "\n".join(out)

    def solution_lines(self) -> list[str]:
        """The stripped lines inside the solution region (what must never reach a student)."""
        inside, lines = False, []
        for line in self.source.splitlines():
            if line.strip() in (BEGIN, END):
                inside = line.strip() == BEGIN
            elif inside and line.strip() and not line.strip().startswith("#"):
                lines.append(line.strip())
        return lines


@dataclass
class Chapter:
    slug: str                 # e.g. "ch1_residual_stream"
    title: str
    cells: list[Cell]

    @property
    def exercises(self) -> list[Cell]:
        return [c for c in self.cells if c.kind == "exercise"]


def chapter_sources() -> list[Path]:
    """Every chapter's lesson, ``course/chapters/<slug>/lesson.py``, in chapter order."""
    return sorted(CHAPTERS_DIR.glob("ch*_*/lesson.py"))


def chapter_slugs() -> list[str]:
    """Every chapter's slug, in chapter order."""
    return [chapter_slug(p) for p in chapter_sources()]


def chapter_slug(source: Path) -> str:
    """``ch1_residual_stream`` for ``course/chapters/ch1_residual_stream/lesson.py``."""
    return source.parent.name


def read_chapter(path: Path) -> Chapter:
    nb = jupytext.read(path)
    cells = []
    for i, c in enumerate(nb.cells):
        src = c.source.strip("\n")
        if c.cell_type == "markdown":
            cells.append(Cell("markdown", src))
            continue
        tags = c.metadata.get("tags", [])
        kinds = [t for t in tags if t in KINDS]
        kind = kinds[0] if kinds else "code"
        cell = Cell(kind, src, points=int(c.metadata.get("points", 0)))
        if kind == "exercise":
            funcs = [n.name for n in ast.parse(src).body if isinstance(n, ast.FunctionDef)]
            if len(funcs) != 1 or src.count(BEGIN) != 1 or src.count(END) != 1:
                raise SourceError(f"{chapter_slug(path)}/{path.name}, cell {i}: an exercise cell holds one function with one "
                                  f"{BEGIN!r} ... {END!r} region.")
            cell.name = funcs[0]
        if kind == "tests" and cell.points <= 0:
            raise SourceError(f"{chapter_slug(path)}/{path.name}, cell {i}: a tests cell needs points=N in its header.")
        cells.append(cell)
    title = re.sub(r"^#\s*", "", next(c.source for c in cells if c.kind == "markdown").splitlines()[0])
    # Each tests cell grades the exercise before it.
    last = ""
    for cell in cells:
        if cell.kind == "exercise":
            last = cell.name
        elif cell.kind == "tests":
            if not last:
                raise SourceError(f"{chapter_slug(path)}/{path.name}: a tests cell comes before any exercise.")
            cell.name = last
    return Chapter(chapter_slug(path), title, cells)
