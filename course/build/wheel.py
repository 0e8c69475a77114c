"""Build the course's wheel from the checkout, as pip would for a user."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

from course.build.targets import ROOT


def build_wheel(out: Path) -> Path:
    """Build ``inside_gpt2-<version>-py3-none-any.whl`` into ``out``; returns its path.

    setuptools stages files in ``build/`` and would carry a module deleted from the source
    into the wheel, so that staging folder is cleared first (it is a build output, git-ignored).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    r = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check", "--no-deps",
                        "--no-build-isolation", "-w", str(out), str(ROOT)], capture_output=True, text=True)
    shutil.rmtree(ROOT / "build", ignore_errors=True)
    if r.returncode != 0:
        raise RuntimeError(f"building the course's wheel failed:\n{r.stderr[-1500:]}")
    (wheel,) = out.glob("inside_gpt2-*.whl")
    return wheel
