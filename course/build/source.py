"""Read a chapter's one hand-written source (jupytext percent format) into typed cells.

Cell kinds, from the cell's tags:
- ``markdown``: text;
- ``module``: code the reference module needs (imports); also in every notebook;
- ``setup``: notebook set-up (load the model, import the checks);
- ``exercise``: one function whose body holds ``### BEGIN SOLUTION`` / ``### END SOLUTION``;
- ``check``: the visible check right after an exercise;
- ``tests``: an nbgrader graded cell (``points=N``; hidden part between
  ``### BEGIN HIDDEN TESTS`` / ``### END HIDDEN TESTS``), in the autograder notebook only;
- ``work``: a student's own code, ungraded: its ``### BEGIN SOLUTION`` region (a worked
  example, for the instructor and the book) becomes "# your code here" for students;
- ``answer``: a markdown cell a grader marks by hand (``points=N``): its text is the worked
  example; students get a blank to write in (the capstone);
- ``code``: anything else (demos, widgets, findings).

An exercise cell tagged ``reuse="<chapter slug>"`` holds only a function's name: the build puts
that chapter's exercise of the same name there (the capstone reuses chapters 1 and 2).
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext

CHAPTERS_DIR = Path(__file__).resolve().parent.parent / "chapters"
BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
KINDS = ("module", "setup", "exercise", "check", "tests", "work", "answer")
ANSWER_STUB = "*Your answer here.*"
WORK_STUB = "# your code here"


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

    def _replace_solution(self, replacement: str) -> str:
        """The source with its solution region replaced by ``replacement`` (indented like the marker)."""
        out, skipping = [], False
        for line in self.source.splitlines():
            if line.strip() == BEGIN:
                out.append(line[: len(line) - len(line.lstrip())] + replacement)
                skipping = True
            elif line.strip() == END:
                skipping = False
            elif not skipping:
                out.append(line)
        return "\n".join(out)

    def stub(self) -> str:
        """The student's version: the solution region becomes a NotImplementedError with the name."""
        return self._replace_solution(f'raise NotImplementedError("{self.name}: fill in this function, '
                                      f'then run the check below")')

    def work_stub(self) -> str:
        """A work cell for students: its worked-example region becomes a line to write after."""
        return self._replace_solution(WORK_STUB)

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
    """Every chapter's lesson, ``course/chapters/<slug>/lesson.py``, in chapter order, the capstone last."""
    return (sorted(CHAPTERS_DIR.glob("ch*_*/lesson.py"), key=lambda p: int(p.parent.name[2:].split("_")[0]))
            + sorted(CHAPTERS_DIR.glob("capstone_*/lesson.py")))


def chapter_slugs() -> list[str]:
    """Every chapter's slug, in chapter order."""
    return [chapter_slug(p) for p in chapter_sources()]


def chapter_slug(source: Path) -> str:
    """``ch1_residual_stream`` for ``course/chapters/ch1_residual_stream/lesson.py``."""
    return source.parent.name


def _reused(slug: str, name: str, where: str) -> str:
    """The source of chapter ``slug``'s exercise ``name``."""
    source = CHAPTERS_DIR / slug / "lesson.py"
    if not source.exists():
        raise SourceError(f"{where}: reuse={slug!r} names no chapter (known: {', '.join(chapter_slugs())}).")
    for cell in read_chapter(source).cells:
        if cell.kind == "exercise" and cell.name == name:
            return cell.source
    raise SourceError(f"{where}: chapter {slug} has no exercise {name!r}.")


def read_chapter(path: Path) -> Chapter:
    nb = jupytext.read(path)
    cells = []
    for i, c in enumerate(nb.cells):
        src = c.source.strip("\n")
        tags = c.metadata.get("tags", [])
        if c.cell_type == "markdown":
            if "answer" in tags:
                points = int(c.metadata.get("points", 0))
                if points <= 0:
                    raise SourceError(f"{chapter_slug(path)}/{path.name}, cell {i}: an answer cell needs points=N.")
                cells.append(Cell("answer", src, points=points, name=f"answer-{i:03d}"))
            else:
                cells.append(Cell("markdown", src))
            continue
        kinds = [t for t in tags if t in KINDS]
        kind = kinds[0] if kinds else "code"
        reuse = c.metadata.get("reuse") if kind == "exercise" else None
        if reuse:
            src = _reused(reuse, src.strip(), f"{chapter_slug(path)}/{path.name}, cell {i}")
        cell = Cell(kind, src, points=int(c.metadata.get("points", 0)), metadata={"reuse": reuse} if reuse else {})
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
