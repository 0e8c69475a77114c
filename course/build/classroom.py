"""The classroom release: what students of a graded class install — everything but the answers.

    python -m course.build.classroom [--out dist/classroom]

The self-study install (this repository) ships the reference solutions so checks can
compare with them. A graded class must not: this writes an installable project with
the toolkit, the student notebooks, the bundled models and the checks' shipped
expected values (``course/chapters/<chapter>/``), and without ``solutions/`` and the
chapters' lessons (``lesson.py``, which hold the solutions). Its checks compare with the shipped values; hidden tests run only where
the instructor grades.

    pip install dist/classroom        # in the students' environment
"""

from __future__ import annotations

import argparse
import re
import shutil
from pathlib import Path

from course.build.targets import ROOT

# A chapter's lesson holds its solutions; its checks, findings and expected values ship.
EXCLUDE = ("lesson.py", "__pycache__", "*.pyc")


def release(out: Path) -> Path:
    out = out.resolve()
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    shutil.copytree(ROOT / "course", out / "course", ignore=shutil.ignore_patterns(*EXCLUDE))
    pyproject = (ROOT / "pyproject.toml").read_text()
    pyproject = pyproject.replace('include = ["course*", "solutions*"]', 'include = ["course*"]')
    pyproject = re.sub(r'description = "([^"]*)"', r'description = "\1 (classroom release: no solutions)"', pyproject)
    (out / "pyproject.toml").write_text(pyproject)
    (out / "README.md").write_text(
        "# Inside GPT-2 — classroom release\n\n"
        "Install with `pip install torch==2.13.0` then `pip install .` and open the notebooks in "
        "`course/notebooks/`. Checks compare your functions with expected values shipped with the course; "
        "your instructor grades the hidden tests.\n")
    shutil.copy2(ROOT / "constraints.txt", out / "constraints.txt")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Write the classroom release (no solutions).")
    ap.add_argument("--out", type=Path, default=ROOT / "dist" / "classroom")
    out = release(ap.parse_args(argv).out)
    print(f"classroom release written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
