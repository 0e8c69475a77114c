"""Feedback pages say what went wrong in words, and show nothing of the hidden tests.

An IPython traceback quotes the lines around the failing one, which in a graded
test cell are the hidden tests. :class:`PlainErrors` replaces the traceback of each
error in a graded cell with its message (the check's explanation), before nbgrader
renders the feedback page.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor


# How a cell stopped by the per-cell time limit shows up (nbgrader interrupts the kernel).
TIMEOUTS = ("KeyboardInterrupt", "CellTimeoutError", "TimeoutError")
TIMEOUT_WORDS = ("Stopped: this cell ran longer than the time each cell is given when grading, and scores "
                 "zero. Look for a loop that never ends, or work that grows far faster than the input; "
                 "the exercises after it were still graded.")


def plain_error(ename: str, evalue: str) -> str:
    """One line a student can act on, for an error shown in a graded cell."""
    if ename in TIMEOUTS:
        return TIMEOUT_WORDS
    return f"{ename}: {evalue}"


class PlainErrors(Preprocessor):
    enabled = True   # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell, resources, index):
        meta = cell.get("metadata", {}).get("nbgrader", {})
        for out in cell.get("outputs", []):
            if out.get("output_type") != "error":
                continue
            if meta.get("grade"):
                out["traceback"] = [plain_error(out.get("ename", "Error"), out.get("evalue", ""))]
            elif out.get("ename") in TIMEOUTS:     # an answer cell stopped by the limit: say so in words too
                out["traceback"] = [TIMEOUT_WORDS]
        return cell, resources
