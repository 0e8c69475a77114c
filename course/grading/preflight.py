"""Make every submission gradable before nbgrader sees it, and say what was done.

A class of hundreds sends renamed notebooks, empty files, broken JSON, deleted or
reordered cells. nbgrader would stop on some of these; here each is repaired into a
notebook nbgrader can grade, with the original kept beside it (nothing is lost) and a
note in plain words for the student's feedback. Student-written cells are never
removed; graded cells are put back in the assignment's order, so that each test
runs after the function it tests.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import nbformat

from course.grading.submissions import grade_id


def _read(path: Path) -> nbformat.NotebookNode:
    """Parse strictly; raises ValueError in words for anything that is not a notebook."""
    text = path.read_text(errors="replace")
    if not text.strip():
        raise ValueError("the file was empty")
    try:
        nb = nbformat.reads(text, as_version=4)
    except (json.JSONDecodeError, nbformat.reader.NotJSONError) as e:
        raise ValueError(f"the file is not valid notebook JSON ({str(e)[:80]})") from None
    except Exception as e:
        raise ValueError(f"the file is not a notebook nbgrader can read ({type(e).__name__})") from None
    if not isinstance(nb.get("cells"), list):
        raise ValueError("the file has no cells")
    return nb


def _keep(original: Path, suffix: str) -> Path:
    backup = original.with_name(original.name + suffix)
    n = 1
    while backup.exists():
        backup = original.with_name(f"{original.name}{suffix}.{n}")
        n += 1
    shutil.move(str(original), backup)
    return backup


def _repair_cells(nb, source, release) -> list[str]:
    """Restore missing graded cells, drop duplicate ids, put graded cells in the assignment's order."""
    notes = []
    order = [grade_id(c) for c in source.cells if grade_id(c)]
    solutions = {grade_id(c) for c in source.cells if c.metadata.get("nbgrader", {}).get("solution")}
    from_source = {grade_id(c): c for c in source.cells if grade_id(c)}
    from_release = {grade_id(c): c for c in release.cells if grade_id(c)}
    seen, groups, current = set(), {None: []}, None
    for cell in nb.cells:                       # each graded cell carries the student's cells that follow it
        gid = grade_id(cell)
        if gid in from_source and gid not in seen:
            seen.add(gid)
            current = gid
            groups[gid] = [cell]
        elif gid in from_source:
            notes.append(f"a second copy of the cell '{gid}' was set aside (only the first one is graded).")
            cell.metadata.pop("nbgrader", None)
            groups[current].append(cell)
        else:
            groups[current].append(cell)
    positions = [gid for gid in (grade_id(c) for c in nb.cells) if gid in order]
    if positions != sorted(positions, key=order.index):
        notes.append("the graded cells were out of order; they were put back in the assignment's order.")
    cells = list(groups[None])
    for gid in order:
        if gid not in groups:
            if gid in solutions:
                notes.append(f"the answer cell '{gid}' was missing; an empty one was put back (it scores zero).")
            elif from_source[gid].metadata.get("nbgrader", {}).get("grade"):
                notes.append(f"the test cell '{gid}' was missing; it was restored.")
            groups[gid] = [nbformat.from_dict(json.loads(json.dumps(from_release.get(gid, from_source[gid]))))]
        cells += groups[gid]
    nb.cells = cells
    return notes


def prepare(submission_dir: Path, assignment: str, source_nb: Path, release_nb: Path) -> list[str]:
    """Repair the submission in ``submitted/<student>/<assignment>/``; return notes for the student."""
    expected = submission_dir / f"{assignment}.ipynb"
    notes: list[str] = []
    if not expected.exists():
        candidates = sorted(p for p in submission_dir.glob("*.ipynb"))
        if len(candidates) == 1:
            shutil.copy2(candidates[0], expected)
            notes.append(f"the notebook was named '{candidates[0].name}'; it was graded as '{expected.name}'.")
        elif candidates:
            names = ", ".join(p.name for p in candidates)
            notes.append(f"no '{expected.name}' and several notebooks ({names}); none could be chosen, "
                         "so the assignment was graded as empty.")
            shutil.copy2(release_nb, expected)
            return notes
        else:
            notes.append(f"no notebook was found; '{expected.name}' was graded as empty.")
            shutil.copy2(release_nb, expected)
            return notes
    try:
        nb = _read(expected)
    except ValueError as e:
        kept = _keep(expected, ".unreadable")
        shutil.copy2(release_nb, expected)
        return notes + [f"{e}; it was kept as '{kept.name}' and the assignment was graded as empty."]
    source = nbformat.read(source_nb, as_version=4)
    release = nbformat.read(release_nb, as_version=4)
    for cell in nb.cells:                       # nbgrader needs these fields; old or hand-edited files lack them
        cell.setdefault("metadata", {})
        if cell.get("cell_type") == "code":
            cell.setdefault("outputs", [])
            cell.setdefault("execution_count", None)
    repairs = _repair_cells(nb, source, release)
    released = {grade_id(c): c.source for c in release.cells if grade_id(c)}
    edited = [gid for gid, c in ((grade_id(c), c) for c in nb.cells)
              if gid and c.metadata.get("nbgrader", {}).get("locked") and released.get(gid, c.source) != c.source]
    if edited:
        repairs.append(f"read-only cells were edited ({', '.join(edited)}); the originals were used for grading.")
    if repairs:
        _keep(expected, ".original")
        nbformat.write(nb, expected)
    return notes + repairs


def neutralize(notebook: Path, grade_id_: str) -> str:
    """Replace a solution cell that ends the Python process with one that says so (original kept)."""
    nb = nbformat.read(notebook, as_version=4)
    for cell in nb.cells:
        if grade_id(cell) == grade_id_:
            cell.source = (f'raise RuntimeError("the cell defining {grade_id_} ended the Python process '
                           f'(os._exit or similar), so it was not run during grading")')
    _keep(notebook, ".original")
    nbformat.write(nb, notebook)
    return (f"the cell '{grade_id_}' ended the Python process; it was not run, and the cells after it "
            f"were not graded either (as in your notebook, where nothing after it could run).")


def calls_between_answers(notebook: Path, exercises: list[str]) -> dict[str, list[str]]:
    """For each exercise, the other exercises its answer cell calls by name (a chapter's
    ``forward_from_weights`` calls the student's own ``layer_norm``), so that feedback can say
    when an exercise failed because one it builds on did."""
    import re

    try:
        nb = nbformat.read(notebook, as_version=4)
    except Exception:
        return {}
    sources = {grade_id(c): c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}
    return {ex: [other for other in exercises if other != ex and re.search(rf"\b{re.escape(other)}\s*\(", src)]
            for ex, src in sources.items() if ex in exercises}
