"""The classroom release holds no answers, and its checks work without them."""

from __future__ import annotations

import subprocess
import sys

from course.build.classroom import release
from course.build.source import chapter_slugs
from course.build.targets import ROOT


def test_classroom_release_has_no_solutions(tmp_path):
    out = release(tmp_path / "classroom")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not (out / "solutions").exists()
    assert not any(p.name == "lesson.py" for p in files)              # the lessons hold the solutions
    assert not any("### BEGIN SOLUTION" in p.read_text() for p in files
                   if p.suffix == ".py" and "chapters" in p.parts)
    assert (out / "course" / "notebooks" / "ch1_residual_stream.ipynb").exists()
    for slug in chapter_slugs():      # what the student notebooks import stays
        for name in ("checks.py", "findings.py", "expected.pt", "__init__.py"):
            assert (out / "course" / "chapters" / slug / name).exists(), (slug, name)
    # Its notebooks are exactly the student notebooks, which test_build proves free of solution
    # code. (The toolkit computes related quantities for its widgets, and the checks compute the
    # mistakes they diagnose: see the README.)
    for nb in (ROOT / "course" / "notebooks").glob("*.ipynb"):
        assert (out / "course" / "notebooks" / nb.name).read_bytes() == nb.read_bytes()
    assert {p.name for p in (out / "course" / "notebooks").glob("*.ipynb")} == \
        {f"{slug}.ipynb" for slug in chapter_slugs()}


def test_checks_work_from_shipped_values_where_solutions_cannot_be_imported(tmp_path):
    out = release(tmp_path / "classroom")
    script = f'''
import sys
sys.path.insert(0, {str(out)!r})
try:
    import solutions
    raise SystemExit("solutions should not be importable here")
except ImportError:
    pass
import course
assert course.__file__.startswith({str(out)!r}), course.__file__
from course.chapters.ch1_residual_stream import checks as check

def logit_lens(cache, model, pos=-1):
    return cache.apply_ln_final(cache.accumulated_resid(pos=pos)) @ model.W_U

def wrong(cache, model, pos=-1):
    return cache.accumulated_resid(pos=pos) @ model.W_U

assert check.logit_lens(logit_lens).passed
assert not check.logit_lens(wrong).passed
'''
    r = subprocess.run([sys.executable, "-m", "course.grading.sandbox", "--hide", str(ROOT / "solutions"),
                        "--", sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                       env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert r.returncode == 0, r.stdout[-1500:] + r.stderr[-1500:]
    assert "✓ logit_lens matches the expected values" in r.stdout
    assert "✗ logit_lens" in r.stdout



def test_the_grading_sandbox_hides_the_lessons_and_keeps_what_notebooks_import(tmp_path):
    from course.grading.runner import hidden_paths

    hide = hidden_paths(tmp_path)
    lesson = ROOT / "course" / "chapters" / "ch1_residual_stream" / "lesson.py"
    assert lesson in hide and not any(p.name == "chapters" for p in hide)
    script = f'''
from pathlib import Path
assert Path({str(lesson)!r}).read_text() == "", "the lesson (with its solutions) is readable"
from course.chapters.ch1_residual_stream import checks, findings
assert checks.EXERCISES and findings.ioi_batch
try:
    import solutions.ch1_residual_stream
    raise SystemExit("solutions should not be importable here")
except ImportError:
    pass
print("sandbox ok")
'''
    args = sum((["--hide", str(p)] for p in hide), [])
    r = subprocess.run([sys.executable, "-m", "course.grading.sandbox", *args, "--", sys.executable, "-c", script],
                       capture_output=True, text=True, timeout=300, cwd=tmp_path,
                       env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0 and "sandbox ok" in r.stdout, r.stdout[-1500:] + r.stderr[-1500:]
