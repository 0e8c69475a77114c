"""Feedback pages say what went wrong in words, and show nothing of the hidden tests.

An IPython traceback quotes the lines around the failing one, which in a graded
test cell are the hidden tests. :class:`PlainErrors` replaces the traceback of each
error in a graded cell with its message (the check's explanation), before nbgrader
renders the feedback page.
"""

from __future__ import annotations

from nbconvert.preprocessors import Preprocessor


class PlainErrors(Preprocessor):
    enabled = True   # nbconvert preprocessors are off unless enabled

    def preprocess_cell(self, cell, resources, index):
        if cell.get("metadata", {}).get("nbgrader", {}).get("grade"):
            for out in cell.get("outputs", []):
                if out.get("output_type") == "error":
                    out["traceback"] = [f"{out.get('ename', 'Error')}: {out.get('evalue', '')}"]
        return cell, resources
