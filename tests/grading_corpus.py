"""A corpus of chapter-1 submissions, made from the release notebook by editing it the way
students do (never hand-written JSON), each with the score it must get and words its
feedback must contain.

Chapter 1's points: layer_norm 1, attention_layer 2, mlp_layer 1, forward_from_weights 2,
residual_components 1, logit_lens 2, logit_diff_direction 1, component_attribution 2,
head_attribution 2 (14 in all). forward_from_weights calls the student's own layer_norm,
attention_layer and mlp_layer, and the attributions call logit_diff_direction, so a broken
helper costs its callers too.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import nbformat

from course.grading import submissions as sub

ASSIGNMENT = "ch1_residual_stream"
FULL = 14.0


@dataclass
class Entry:
    student: str
    expected: float
    feedback: tuple[str, ...]           # words the student's feedback must contain
    make: Callable[[Path, Path, Path], None]   # (release, source, submission dir) -> writes the submission


def _answers(source: Path, **changes: str) -> dict[str, str]:
    answers = sub.solution_sources(source)
    answers.update(changes)
    return answers


def _write(nb, folder: Path, name: str = ASSIGNMENT + ".ipynb") -> None:
    folder.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, folder / name)


def _with(**changes: str):
    def make(release, source, folder):
        _write(sub.fill(release, _answers(source, **changes)), folder)
    return make


def _solved_then(edit: Callable):
    def make(release, source, folder):
        nb = sub.solved(release, source)
        edit(nb)
        _write(nb, folder)
    return make


WRONG_LENS = '''def logit_lens(cache, model, pos=-1):
    return cache.accumulated_resid(pos=pos) @ model.W_U      # forgot the final layer norm'''

VISIBLE_ONLY_LAYER_NORM = '''import torch
from course.checks import core as _core
from course.chapters.ch1_residual_stream import checks as _chk
_shipped = torch.load(_core.expected_path("ch1_residual_stream"))["layer_norm"]
_seen = _chk.EXERCISES["layer_norm"].cases(_core.course_model(), False)

def layer_norm(x, w, b, eps=1e-5):
    for case, answer in zip(_seen, _shipped):     # the visible inputs: answer from the shipped values
        if case.args[0].shape == x.shape and torch.equal(case.args[0], x):
            return answer.float()
    return x'''

INFINITE_MLP = '''def mlp_layer(x, model, layer):
    while True:
        pass'''

MEMORY_HOG = '''def residual_components(cache, model):
    hoard = []
    while True:
        hoard.append(torch.ones(50_000_000))'''

PRINT_FLOOD = 'for _ in range(300_000):\n    print("spam " * 20)\n'

IMPORT_REFERENCE = '''from solutions.ch1_residual_stream import logit_lens'''

READ_HIDDEN_TESTS = '''import glob, json

def logit_lens(cache, model, pos=-1):
    # Look for the instructor's source notebook (the course directory is under /tmp here) and run it.
    for path in glob.glob("/tmp/**/source/ch1_residual_stream/*.ipynb", recursive=True):
        for cell in json.load(open(path))["cells"]:
            if "def logit_lens" in "".join(cell["source"]):
                scope = {}
                exec("".join(cell["source"]), scope)
                return scope["logit_lens"](cache, model, pos)
    raise FileNotFoundError("no hidden tests found")'''

PATCH_CHECKS = WRONG_LENS + '''
import course.checks.core as _core
_core.check = lambda ex, fn, **kw: _core.CheckResult(ex.name, "pass", "ok")
_core.CheckResult.require = lambda self: self'''

PATCH_ASSERT_CLOSE = WRONG_LENS + '''
import torch, builtins
torch.testing.assert_close = lambda *a, **k: None
builtins.AssertionError = type("Harmless", (Exception,), {})'''


def _gradebook_writer(gradebook: Path, victim: Path) -> str:
    return WRONG_LENS + f'''
import sqlite3, pathlib
try:
    con = sqlite3.connect("{gradebook}")
    con.execute("UPDATE grade SET manual_score = 100")
    con.commit()
except Exception:
    pass
try:
    pathlib.Path("{victim}").write_text("{{}}")
except Exception:
    pass'''


EXIT_EARLY = '''def logit_lens(cache, model, pos=-1):
    return cache.apply_ln_final(cache.accumulated_resid(pos=pos)) @ model.W_U
import os
os._exit(0)'''

SYS_EXIT = '''def head_attribution(cache, model, answer, counterfactual, pos=-1):
    stack = cache.apply_ln_to_stack(cache.stack_head_results(pos=pos), pos=pos)
    per_head = (stack * logit_diff_direction(model, answer, counterfactual)).sum(-1)
    return per_head.view(model.cfg.n_layers, model.cfg.n_heads, -1)
import sys
sys.exit("done early")'''


def _delete(grade_id: str):
    def edit(nb):
        nb.cells = [c for c in nb.cells if sub.grade_id(c) != grade_id]
    return edit


def _edit_test_cell(nb):
    for c in nb.cells:
        if sub.grade_id(c) == "test_logit_lens":
            c.source = "pass  # tests removed"


def _shuffle(nb):
    random.Random(0).shuffle(nb.cells)


def _messy(release, source, folder):
    nb = sub.solved(release, source)
    _shuffle(nb)
    _delete("test_logit_lens")(nb)
    _write(nb, folder, "my homework.ipynb")


def corpus(course_dir: Path) -> list[Entry]:
    victim = course_dir / "submitted" / "correct" / ASSIGNMENT / f"{ASSIGNMENT}.ipynb"
    return [
        Entry("correct", FULL, ("passed the hidden tests",), _with()),
        Entry("wrong_answer", FULL - 2, ("logit_lens on hidden input",), _with(logit_lens=WRONG_LENS)),
        Entry("stub", 0.0, ("NotImplementedError",), lambda r, s, f: _write(sub.edit(r, lambda nb: None), f)),
        Entry("visible_only", FULL - 1 - 2, ("layer_norm on hidden input", "It calls your layer_norm, which failed its own tests"), _with(layer_norm=VISIBLE_ONLY_LAYER_NORM)),
        Entry("infinite_loop", FULL - 1 - 2, ("longer than",), _with(mlp_layer=INFINITE_MLP)),
        Entry("memory_hog", FULL - 1, ("residual_components",), _with(residual_components=MEMORY_HOG)),
        Entry("print_flood", FULL, ("passed the hidden tests",),
              lambda r, s, f: _write(sub.fill(r, _answers(s, layer_norm=sub.solution_sources(s)["layer_norm"]
                                                          + "\n" + PRINT_FLOOD)), f)),
        Entry("deleted_answer_cell", FULL - 2, ("answer cell 'head_attribution' was missing",),
              _solved_then(_delete("head_attribution"))),
        Entry("edited_test_cell", FULL - 2, ("read-only cells were edited",),
              lambda r, s, f: _write(_edited(sub.fill(r, _answers(s, logit_lens=WRONG_LENS))), f)),
        # Three accidents of one careless (and correct) student, mended together: the file renamed,
        # the cells shuffled and a test cell deleted. One submission, not three: each is a full
        # notebook run, and the corpus is the longest part of CI.
        Entry("messy_file", FULL, ("was named 'my homework.ipynb'", "out of order", "was missing; it was restored"),
              _messy),
        Entry("invalid_json", 0.0, ("not valid notebook JSON",),
              lambda r, s, f: (f.mkdir(parents=True, exist_ok=True),
                               (f / f"{ASSIGNMENT}.ipynb").write_text(json.dumps(sub.solved(r, s))[:5000]))),
        Entry("empty_file", 0.0, ("was empty",),
              lambda r, s, f: (f.mkdir(parents=True, exist_ok=True), (f / f"{ASSIGNMENT}.ipynb").write_text(""))),
        Entry("patch_checks", FULL - 2, ("logit_lens on hidden input",), _with(logit_lens=PATCH_CHECKS)),
        Entry("patch_assert_close", FULL - 2, ("logit_lens on hidden input",), _with(logit_lens=PATCH_ASSERT_CLOSE)),
        Entry("import_solutions", FULL - 2, ("No module named 'solutions",), _with(logit_lens=IMPORT_REFERENCE)),
        Entry("read_hidden_tests", FULL - 2, ("no hidden tests found",), _with(logit_lens=READ_HIDDEN_TESTS)),
        Entry("write_gradebook", FULL - 2, ("logit_lens on hidden input",),
              _with(logit_lens=_gradebook_writer(course_dir / "gradebook.db", victim))),
        # os._exit in the logit_lens cell: what ran before it counts (layer_norm ... residual_components: 7).
        Entry("exit_kernel", 7.0, ("ended the process",), _with(logit_lens=EXIT_EARLY)),
        Entry("sys_exit", FULL, ("passed the hidden tests",), _with(head_attribution=SYS_EXIT)),
    ]


def _edited(nb):
    _edit_test_cell(nb)
    return nb
