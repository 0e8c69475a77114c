"""The classroom release holds no answers, and its checks work without them."""

from __future__ import annotations

import subprocess
import sys

from course.build.classroom import release
from course.build.source import chapter_sources
from course.build.targets import ROOT


def test_classroom_release_has_no_solutions(tmp_path):
    out = release(tmp_path / "classroom")
    files = [p for p in out.rglob("*") if p.is_file()]
    assert not (out / "solutions").exists() and not (out / "course" / "chapters").exists()
    assert not any(p.name.startswith(("ch1_", "ch2_")) and p.suffix == ".py" and "solutions" in p.parts for p in files)
    assert (out / "course" / "notebooks" / "ch1_residual_stream.ipynb").exists()
    assert (out / "course" / "checks" / "expected" / "ch1_residual_stream.pt").exists()
    # Its notebooks are exactly the student notebooks, which test_build proves free of solution
    # code. (The toolkit computes related quantities for its widgets, and the checks compute the
    # mistakes they diagnose: see the README.)
    for nb in (ROOT / "course" / "notebooks").glob("*.ipynb"):
        assert (out / "course" / "notebooks" / nb.name).read_bytes() == nb.read_bytes()
    assert {p.name for p in (out / "course" / "notebooks").glob("*.ipynb")} == \
        {f"{c.stem}.ipynb" for c in chapter_sources()}


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
from course.checks import ch1_residual_stream as check

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
