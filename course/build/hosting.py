"""Where the course is hosted, from one setting, and what the build writes from it.

The setting is ``[project.urls] Repository`` in ``pyproject.toml``. From it come the
student notebooks' first cell (install the course when it is not importable: Colab, any
hosted Jupyter), the README's install block and every "Open in Colab" link, in the README
and in the book.
"""

from __future__ import annotations

import re
from pathlib import Path

from course.build.targets import ROOT

START = "<!-- hosting: written by `python -m course.build` from pyproject.toml's [project.urls] Repository -->"
END = "<!-- /hosting -->"
SOURCE_ENV = "INSIDE_GPT2_SOURCE"     # overrides where the first cell installs from (a wheel, a mirror)


def _pyproject() -> str:
    return (ROOT / "pyproject.toml").read_text()


def repository() -> str:
    """The repository's https URL, without a trailing slash or .git."""
    m = re.search(r'^Repository\s*=\s*"([^"]+)"', _pyproject(), re.M)
    if not m:
        raise ValueError("pyproject.toml has no [project.urls] Repository = \"https://github.com/OWNER/NAME\": "
                         "add it; the notebooks' install cell and the Colab links are built from it.")
    return m.group(1).rstrip("/").removesuffix(".git")


def version() -> str:
    return re.search(r'^version\s*=\s*"([^"]+)"', _pyproject(), re.M).group(1)


def pip_requirement() -> str:
    """What pip installs for this version of the notebooks: the repository at the version's tag."""
    return f"inside-gpt2 @ git+{repository()}@v{version()}"


def colab_url(slug: str) -> str:
    m = re.fullmatch(r"https://github\.com/([^/]+)/([^/]+)", repository())
    if not m:
        raise ValueError(f"Colab opens notebooks from GitHub only; Repository is {repository()!r}.")
    return f"https://colab.research.google.com/github/{m.group(1)}/{m.group(2)}/blob/main/course/notebooks/{slug}.ipynb"


INSTALL_CELL = '''\
# Setup: where the course is not installed (Colab, a hosted Jupyter), install it, the
# version these notebooks belong to, keeping this machine's own torch. Elsewhere this does nothing.
import importlib.metadata, importlib.util, os, subprocess, sys, tempfile

NOTEBOOK_VERSION = "{version}"
if importlib.util.find_spec("course") is None:
    source = os.environ.get("{env}", "{requirement}")
    command, pin = [sys.executable, "-m", "pip", "install", "--quiet", source], None
    if importlib.util.find_spec("torch") is not None:
        # A constraint, not a requirement: pip may not replace the torch that is here (Colab's has CUDA).
        pin = tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False)
        pin.write(f"torch=={{importlib.metadata.version('torch')}}\\n")
        pin.close()
        command += ["--constraint", pin.name]
    else:
        print("No torch here: pip will install one with the course (it can be large).")
    print("Installing the course:", source)
    try:
        subprocess.run(command, check=True)
    finally:
        if pin is not None:
            os.unlink(pin.name)
    importlib.invalidate_caches()
    print(f"Installed inside-gpt2 {{importlib.metadata.version('inside-gpt2')}}.")
else:
    installed = importlib.metadata.version("inside-gpt2")
    print(f"inside-gpt2 {{installed}} is installed." + ("" if installed == NOTEBOOK_VERSION else
          f" These notebooks are version {{NOTEBOOK_VERSION}}: if a check disagrees with the text, "
          f"install that version (pip install 'inside-gpt2=={{NOTEBOOK_VERSION}}') or start from "
          f"the notebooks of yours (inside-gpt2 start)."))'''


def install_cell() -> str:
    """The student notebooks' first code cell."""
    return INSTALL_CELL.format(version=version(), env=SOURCE_ENV, requirement=pip_requirement())


def colab_badge(slug: str) -> str:
    # a text link: the book loads nothing from other hosts (Colab's badge is an image on its server)
    return f"[Open in Colab]({colab_url(slug)})"


def readme_block() -> str:
    from course.build.source import chapter_slugs, read_chapter, chapter_sources

    titles = {s: re.sub(r"^Chapter \d+\s*\W\s*", "", read_chapter(p).title)
              for s, p in zip(chapter_slugs(), chapter_sources())}
    links = "\n".join(f"| {i} | {titles[s]} | [open in Colab]({colab_url(s)}) |"
                      for i, s in enumerate(chapter_slugs(), 1))
    return f"""\
From pip alone (Python 3.10–3.12; install torch first, so that pip does not choose a CUDA
build for you):

```bash
pip install torch
pip install "{pip_requirement()}"
inside-gpt2 start            # copies the notebooks into ./inside-gpt2 (never overwriting yours), opens JupyterLab
inside-gpt2 --help           # also: where the installed notebooks are, and a check that the model loads
```

On Colab or any hosted Jupyter, open a chapter: its first cell installs this version of the
course and keeps the host's torch.

| # | chapter | Colab |
| --- | --- | --- |
{links}"""


def update(check: bool = False) -> list[Path]:
    """The pages whose hosting block is stale; rewritten unless ``check``."""
    from course.build.model_facts import render

    page = ROOT / "README.md"
    text = page.read_text()
    new = render(text, readme_block(), page, START, END)
    if new != text and not check:
        page.write_text(new)
    return [page] if new != text else []
