"""Grading on Gradescope (or any engine that runs one container per submission).

    python -m course.grading gradescope ch1_residual_stream --out gradescope/ch1

writes a Gradescope autograder: a folder and ``autograder.zip`` holding

- ``setup.sh``: installs torch (CPU) and the course, pinned (the wheel and ``constraints.txt`` ride
  in the zip), when Gradescope builds the image;
- ``run_autograder``: grades ``/autograder/submission`` with the same hardened grading as
  ``python -m course.grading autograde`` (pre-flight, sandboxed kernel, independent re-check
  of the hidden tests) and writes ``/autograder/results/results.json``;
- ``course/``: the nbgrader course directory of this one assignment (its source notebook with the
  hidden tests, the configuration, the feedback templates) and ``assignment.json`` (the limits).

``results.json`` follows Gradescope's specification: one test per graded cell, its score and
maximum, and as output the plain-words verdict of the visible check; a second entry per
exercise carries the hidden tests' verdict (no points of its own: the graded cell's score
already counts it) and is shown only after the due date.

The root is ``/autograder`` unless ``AUTOGRADER_ROOT`` says otherwise (the tests lay the same
folders out in a temporary directory).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path

import nbformat

from course.grading.feedback import plain_error

STUDENT = "student"      # one submission per container: nbgrader needs a student id, any will do

SETUP = """\
#!/usr/bin/env bash
# Gradescope runs this once, when it builds the autograder's image.
set -euo pipefail
cd /autograder/source
if ! command -v python3 >/dev/null || ! python3 -m venv --help >/dev/null 2>&1; then
  apt-get update -q && apt-get install -y -q python3 python3-venv python3-pip
fi
python3 -m venv /autograder/venv
PIP="/autograder/venv/bin/python -m pip install --quiet"
# torch first, pinned, CPU build: an unpinned torch pulls gigabytes of CUDA packages.
$PIP torch=={torch} --index-url https://download.pytorch.org/whl/cpu || $PIP torch=={torch}
$PIP -c constraints.txt "$(ls wheels/inside_gpt2-*.whl)"
"""

RUN = """\
#!/usr/bin/env bash
# Gradescope runs this for each submission, in a fresh container.
export HF_HUB_OFFLINE=1
PY=${AUTOGRADER_PYTHON:-/autograder/venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" -m course.grading.gradescope run "${AUTOGRADER_ROOT:-/autograder}"
"""


def write_bundle(assignment: str, out: Path, course_dir: Path | None = None, wheel: Path | None = None,
                 cell_timeout: int = 120, memory_gib: float = 6.0, torch_version: str | None = None) -> Path:
    """Write the autograder folder ``out`` and ``out/autograder.zip``; returns the zip's path.

    ``course_dir``: the nbgrader course directory (default: the checkout's ``autograder/``);
    ``wheel``: the course's wheel (default: built here from the checkout).
    """
    import torch

    from course.build.targets import ROOT

    if not (ROOT / "pyproject.toml").exists():
        raise FileNotFoundError("the Gradescope bundle is built from a clone of the course (it packs the course's "
                                "wheel and constraints.txt): run this command in the repository")
    course_dir = Path(course_dir or ROOT / "autograder")
    source = course_dir / "source" / assignment / f"{assignment}.ipynb"
    if not source.exists():
        known = sorted(p.name for p in (course_dir / "source").iterdir()) if (course_dir / "source").exists() else []
        raise FileNotFoundError(f"no assignment {assignment!r} in {course_dir / 'source'} "
                                f"(known: {', '.join(known) or 'none'}); run `python -m course.build` first.")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "run_autograder").exists():
        raise FileExistsError(f"{out} holds other files: name an empty folder (or a previous bundle) for the autograder.")
    if out.exists():
        shutil.rmtree(out)
    (out / "wheels").mkdir(parents=True)
    if wheel is None:
        from course.build.wheel import build_wheel

        build_wheel(out / "wheels")
    else:
        shutil.copy(wheel, out / "wheels")
    shutil.copy(ROOT / "constraints.txt", out / "constraints.txt")
    bundle_course = out / "course"
    (bundle_course / "source" / assignment).mkdir(parents=True)
    shutil.copy(source, bundle_course / "source" / assignment)
    shutil.copy(course_dir / "nbgrader_config.py", bundle_course)
    if (course_dir / "templates").exists():
        shutil.copytree(course_dir / "templates", bundle_course / "templates")
    (out / "assignment.json").write_text(json.dumps(
        {"assignment": assignment, "cell_timeout": cell_timeout, "memory_gib": memory_gib}, indent=1) + "\n")
    torch_version = torch_version or torch.__version__.split("+")[0]
    for name, text in (("setup.sh", SETUP.replace("{torch}", torch_version)), ("run_autograder", RUN)):
        (out / name).write_text(text)
        (out / name).chmod(0o755)
    zipped = out / "autograder.zip"
    with zipfile.ZipFile(zipped, "w", zipfile.ZIP_DEFLATED) as z:
        for p in sorted(out.rglob("*")):
            if p.is_file() and p != zipped:
                info = zipfile.ZipInfo.from_file(p, p.relative_to(out).as_posix())
                with open(p, "rb") as f:
                    z.writestr(info, f.read())
    return zipped


def _test_cell_outputs(notebook: Path) -> dict[str, str]:
    """Each graded cell's printed text (and error, in words) in the autograded notebook, by grade id."""
    if not notebook.exists():
        return {}
    out = {}
    for cell in nbformat.read(notebook, as_version=4).cells:
        meta = cell.metadata.get("nbgrader", {})
        if not meta.get("grade") or cell.cell_type != "code":
            continue
        parts = []
        for o in cell.get("outputs", []):
            if o.get("output_type") == "stream":
                parts.append(o.get("text", ""))
            elif o.get("output_type") == "error":
                parts.append(plain_error(o.get("ename", "Error"), o.get("evalue", "")))
        out[meta["grade_id"]] = "".join(parts).strip()
    return out


def results_json(course_dir: Path, assignment: str, result) -> dict:
    """Gradescope's results for one graded submission (``result``: a :class:`runner.StudentResult`)."""
    from nbgrader.api import Gradebook, MissingEntry

    printed = _test_cell_outputs(course_dir / "autograded" / STUDENT / assignment / f"{assignment}.ipynb")
    tests, notes = [], []
    if result.notes:
        notes.append("About your file: " + " ".join(result.notes))
    if result.error:
        notes.append(f"Grading stopped early: {result.error}. Parts that did not run score zero.")
    with Gradebook(f"sqlite:///{course_dir / 'gradebook.db'}") as gb:
        try:
            grades = gb.find_submission_notebook(assignment, assignment, STUDENT).grades
        except MissingEntry:
            grades = []
        for g in grades:
            exercise = g.cell.name.removeprefix("test_")
            # The score is the graded cell's, after the hidden re-check (which zeroes it on a failure).
            tests.append({"name": exercise,
                          "score": float(g.score or 0.0), "max_score": float(g.max_score or 0.0),
                          "output": printed.get(g.cell.name) or "(this cell printed nothing)",
                          "visibility": "visible"})
    for exercise, verdict in result.exercises.items():
        tests.append({"name": f"{exercise}: hidden tests (counted in {exercise}'s score)", "score": 0.0, "max_score": 0.0,
                      "output": verdict, "visibility": "after_due_date"})
    if not tests:      # nothing graded at all: say why, with the assignment's full mark as the maximum
        tests.append({"name": "the notebook", "score": 0.0, "max_score": float(result.max_score or 0.0),
                      "output": " ".join(notes) or "nothing could be graded", "visibility": "visible"})
    return {"tests": tests, "output": "\n".join(notes) or "Graded.", "visibility": "visible",
            "stdout_visibility": "hidden"}


def run(root: Path) -> dict:
    """Grade ``root/submission`` and write ``root/results/results.json``; returns the results."""
    from course.grading import runner

    root = Path(root)
    spec = json.loads((root / "source" / "assignment.json").read_text())
    assignment = spec["assignment"]
    (root / "results").mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="gradescope-") as tmp:
        course_dir = Path(tmp) / "course"
        shutil.copytree(root / "source" / "course", course_dir)
        dest = course_dir / "submitted" / STUDENT / assignment
        dest.mkdir(parents=True)
        # Everything the student uploaded; pre-flight finds the notebook (renamed or not) and says so.
        for p in (root / "submission").iterdir() if (root / "submission").exists() else []:
            (shutil.copytree if p.is_dir() else shutil.copy)(p, dest / p.name)
        (result,) = runner.autograde(course_dir, assignment, students=[STUDENT], cell_timeout=spec["cell_timeout"],
                                     memory_gib=spec["memory_gib"], also_hide=[root / "source"])
        results = results_json(course_dir, assignment, result)
    (root / "results" / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    return results


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["run"]:
        root = Path(argv[1] if len(argv) > 1 else os.environ.get("AUTOGRADER_ROOT", "/autograder"))
        results = run(root)
        total = sum(t["score"] for t in results["tests"])
        print(f"graded: {total:g} / {sum(t['max_score'] for t in results['tests']):g}")
        return 0
    print("usage: python -m course.grading.gradescope run [ROOT]   (the bundle's run_autograder calls this)",
          file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
