"""Grading runs what grades, not what shows: demo and visible-check cells are skipped.

A chapter notebook is mostly lesson: widgets, plots, findings over the whole model, and
after each exercise a visible check that the graded test cell repeats. None of it
changes a score, and all of it costs CPU for every student of the class. nbgrader
restores read-only cells from the instructor's copy before it runs the notebook; this
preprocessor, placed first in ``Autograde.autograde_preprocessors`` (see
``autograder/nbgrader_config.py``), then replaces each read-only demo or check cell
(grade ids ``demo-…`` and ``check-…``, written by ``python -m course.build``) with a
one-line comment, so the feedback says why the cell shows no output.

Nothing a student wrote is skipped, and the independent re-check
(:mod:`course.grading.verify`) never ran these cells either: a solution that only
worked because a demo cell defined some variable fails both in the same way.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor

SKIPPED_KINDS = ("demo", "check")
NOTE = "# Not run when grading: this cell shows or checks your work; the graded cells below decide the score."


def skipped(cell) -> bool:
    meta = cell.get("metadata", {}).get("nbgrader", {})
    return (cell.get("cell_type") == "code" and meta.get("locked") and not meta.get("grade")
            and str(meta.get("grade_id", "")).split("-")[0] in SKIPPED_KINDS)


class SkipDemos(Preprocessor):
    enabled = True   # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell, resources, index):
        if skipped(cell):
            cell.source = NOTE
            cell.outputs = []
        return cell, resources
