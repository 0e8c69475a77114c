"""The course from pip alone: the wheel carries everything, a fresh environment with only the
wheel runs a chapter offline from a folder outside the checkout, and the notebooks' first cell
installs the course where it is missing (Colab) without touching the host's torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import nbformat
import pytest

from course.build.hosting import SOURCE_ENV, install_cell
from course.build.source import chapter_slugs
from course.build.targets import ROOT

# No byte-compiling at install (Python compiles what it imports, when it imports it): the same
# environment, without compiling every file of torch and its neighbours up front.
PIP_QUIET = ["--quiet", "--disable-pip-version-check", "--no-compile"]


def _clean_env(**extra) -> dict:
    """The environment of a user's shell: offline from the hub, no checkout on the path."""
    keep = {k: v for k, v in os.environ.items() if k in ("HOME", "LANG", "TMPDIR", "PIP_CONFIG_FILE")}
    return {**keep, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "PYTHONNOUSERSITE": "1", **extra}


def _run(cmd, **kw):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{cmd}\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    from course.build.wheel import build_wheel

    return build_wheel(tmp_path_factory.mktemp("wheel"))


def test_the_wheel_carries_models_notebooks_and_expected_values(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for slug in chapter_slugs():
        assert f"course/notebooks/{slug}.ipynb" in names
        assert f"course/chapters/{slug}/expected.pt" in names, "the checks' expected values"
        assert f"course/chapters/{slug}/checks.py" in names
    for asset in ("course-gpt2/config.json", "course-gpt2/model.safetensors", "course-gpt2/tokenizer.json",
                  "modular-addition/model.safetensors", "modular-addition/checkpoints.safetensors",
                  "course-sae/cfg.json", "course-sae/sae_weights.safetensors",
                  "course-transcoders/layer_0/cfg.json"):
        assert f"course/assets/{asset}" in names, asset
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "inside-gpt2 = course.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def _fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True, clear=True).create(path)
    return path / "bin" / "python"


def _deps_without_the_course(target: Path) -> Path:
    """A folder of links to every package of the test environment but the course itself, so that
    a fresh venv sees the dependencies (torch included, as Colab has it) and not the course."""
    site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    target.mkdir()
    for entry in site.iterdir():
        low = entry.name.lower()
        if low.startswith(("inside_gpt2", "__editable__", "course", "solutions")) or entry.suffix == ".pth":
            continue
        (target / entry.name).symlink_to(entry)
    return target


def test_first_cell_installs_the_course_where_it_is_missing_and_keeps_torch(wheel, tmp_path):
    python = _fresh_venv(tmp_path / "host")
    site = next((tmp_path / "host" / "lib").glob("python*/site-packages"))
    for old in [*site.glob("setuptools*"), *site.glob("pkg_resources"), *site.glob("_distutils_hack"),
                *site.glob("distutils-precedence.pth")]:
        # the venv's own old setuptools would shadow the host's (torch needs a newer one)
        subprocess.run(["rm", "-rf", str(old)], check=True)
    (site / "host-packages.pth").write_text(str(_deps_without_the_course(tmp_path / "host-packages")) + "\n")
    where = "import importlib.util, torch; print(importlib.util.find_spec('course')); print(torch.__file__)"
    before = _run([python, "-c", where], cwd=tmp_path, env=_clean_env()).stdout.splitlines()
    assert before[0] == "None", "the course must be absent before the first cell runs"

    cell = install_cell()
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = _clean_env(**{SOURCE_ENV: str(wheel), "PIP_NO_INDEX": "1",    # pip can reach nothing but the wheel
                        "TMPDIR": str(scratch)})
    first = _run([python, "-c", cell], cwd=tmp_path, env=env).stdout
    assert "Installing the course:" in first and "Installed inside-gpt2 0.1.0" in first, first
    assert not [p for p in scratch.iterdir() if p.suffix == ".txt"], "the torch pin file is left behind"
    after = _run([python, "-c", where], cwd=tmp_path, env=_clean_env()).stdout.splitlines()
    assert str(tmp_path / "host") in after[0], "the course is now installed in this environment"
    assert after[1] == before[1], "the host's torch is the one it had"
    again = _run([python, "-c", cell], cwd=tmp_path, env=env).stdout
    assert "inside-gpt2 0.1.0 is installed." in again and "Installing" not in again


def test_every_student_notebook_starts_with_the_install_cell():
    for slug in chapter_slugs():
        nb = nbformat.read(ROOT / "course" / "notebooks" / f"{slug}.ipynb", as_version=4)
        assert nb.cells[0].cell_type == "code" and nb.cells[0].source == install_cell(), slug


def test_a_fresh_environment_with_only_the_wheel_runs_a_chapter_offline(wheel, tmp_path):
    """The whole pip path: torch pinned first, the rest from the lock, then the command and a
    chapter run from a folder outside the checkout, the hub unreachable."""
    python = _fresh_venv(tmp_path / "env")
    pip = [python, "-m", "pip", "install", *PIP_QUIET]
    _run([*pip, "torch==2.13.0"], env=_clean_env())
    _run([*pip, "-c", ROOT / "constraints.txt", wheel], env=_clean_env())
    cli = tmp_path / "env" / "bin" / "inside-gpt2"
    home = tmp_path / "student"
    home.mkdir()
    env = _clean_env(HOME=str(home), JUPYTER_DATA_DIR=str(home / "jupyter"), JUPYTER_CONFIG_DIR=str(home / "jcfg"))

    assert "start" in _run([cli, "--help"], cwd=home, env=env).stdout
    _run([cli, "start", "work", "--no-launch"], cwd=home, env=env)
    nb_path = home / "work" / "ch1_residual_stream.ipynb"
    nb = nbformat.read(nb_path, as_version=4)
    nb.cells.append(nbformat.v4.new_markdown_cell("my notes"))
    nbformat.write(nb, nb_path)
    second = _run([cli, "start", "work", "--no-launch"], cwd=home, env=env).stdout
    assert f"kept {len(chapter_slugs())}" in second and "my notes" in nb_path.read_text(), "a student's copy is never overwritten"
    info = _run([cli, "info"], cwd=home, env=env).stdout
    assert "loads offline" in info, info

    # Chapter 1 as the student gets it, in the fresh environment's own kernel.
    script = f"""
import json, nbformat
from nbclient import NotebookClient
nb = nbformat.read({str(nb_path)!r}, as_version=4)
NotebookClient(nb, timeout=300, kernel_name="python3", resources={{"metadata": {{"path": {str(home / 'work')!r}}}}}).execute()
text = "\\n".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
import course
print(json.dumps({{"text": text, "course": course.__file__}}))
"""
    out = json.loads(_run([python, "-c", script], cwd=home, env=env, timeout=900).stdout.strip().splitlines()[-1])
    assert str(tmp_path / "env") in out["course"] and str(ROOT) not in out["course"]
    assert "inside-gpt2 0.1.0 is installed." in out["text"]
    assert "not implemented yet" in out["text"], "the checks report on the stubs"
