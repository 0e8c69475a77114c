"""Feedback pages say what went wrong in words, and show nothing of the hidden tests.

An IPython traceback quotes the lines around the failing one, which in a graded
test cell are the hidden tests. :class:`PlainErrors` replaces the traceback of each
error in a graded cell with its message (the check's explanation), before nbgrader
renders the feedback page.
"""

from __future__ import annotations

from pathlib import Path

from nbconvert.preprocessors import Preprocessor

import course


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


# MathJax 3, vendored (course/assets/mathjax): a feedback page is read offline, often as a lone
# file, so the script is inlined; its SVG output needs no font files.
MATHJAX_JS = Path(course.__file__).parent / "assets" / "mathjax" / "tex-svg.js"
MATHJAX_CONFIG = """window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
        processEscapes: true},
  options: {enableMenu: false},
  svg: {fontCache: 'global'}
};"""


def offline_mathjax(_unused: str = "") -> str:
    """The ``<script>`` tags that typeset a feedback page's TeX with no network (a Jinja filter,
    registered in ``autograder/nbgrader_config.py``). Without the vendored file, formulas stay as
    their TeX source and the page says why in a comment."""
    if not MATHJAX_JS.exists():
        return "<!-- course/assets/mathjax/tex-svg.js is missing: formulas are shown as TeX source -->"
    return (f"<script>\n{MATHJAX_CONFIG}\n</script>\n"
            f"<script>\n{MATHJAX_JS.read_text(encoding='utf-8')}\n</script>")
