"""The ``inside-gpt2`` command, for a course installed with pip.

    inside-gpt2 start [DIR]       copy the chapter notebooks into DIR (default ./inside-gpt2) and open JupyterLab there
    inside-gpt2 notebooks         print the folder of the installed notebooks (the read-only originals)
    inside-gpt2 info              the course's version, torch, the device, and whether the model loads offline

``start`` never edits the installed notebooks and never overwrites a copy: a student's
work in DIR is kept, and only chapters missing there are copied. JupyterLab runs on the
Python that runs this command, so its "Python 3" kernel is the one the course is
installed in.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from pathlib import Path

import course

NOTEBOOKS = Path(__file__).resolve().parent / "notebooks"
DEFAULT_DIR = "inside-gpt2"


def chapter_notebooks() -> list[Path]:
    """The installed student notebooks, chapter order (ch1_, ch2_, …), then the capstone."""
    chapters = sorted(NOTEBOOKS.glob("ch*.ipynb"), key=lambda p: int(p.name[2:].split("_")[0]))
    return chapters + sorted(NOTEBOOKS.glob("capstone_*.ipynb"))


def copy_notebooks(folder: Path) -> tuple[list[Path], list[Path]]:
    """Copy every chapter notebook missing from ``folder``; returns (copied, kept) paths in ``folder``.

    Raises ``ValueError`` with what to do when ``folder`` cannot hold the copies.
    """
    folder = folder.expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder: name a folder for the notebooks "
                         f"(it is created if missing), e.g. `inside-gpt2 start {DEFAULT_DIR}`.")
    if folder == NOTEBOOKS or NOTEBOOKS in folder.parents:
        raise ValueError(f"{folder} is where the installed originals live; pick a folder of your own "
                         f"so that an upgrade never touches your work, e.g. `inside-gpt2 start ~/{DEFAULT_DIR}`.")
    folder.mkdir(parents=True, exist_ok=True)
    copied, kept = [], []
    for nb in chapter_notebooks():
        target = folder / nb.name
        if target.exists():
            kept.append(target)
        else:
            shutil.copyfile(nb, target)
            copied.append(target)
    return copied, kept


def lab_command(folder: Path, extra: list[str]) -> list[str]:
    first = chapter_notebooks()[0].name
    cmd = [sys.executable, "-m", "jupyter", "lab", f"--notebook-dir={folder}", *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0 and "--allow-root" not in extra:
        cmd.append("--allow-root")     # JupyterLab refuses root without it (containers, Colab-like hosts)
    return cmd + [str(folder / first)]


def start(args) -> int:
    folder = Path(args.dir)
    try:
        copied, kept = copy_notebooks(folder)
    except (ValueError, OSError) as e:
        print(f"inside-gpt2 start: {e}", file=sys.stderr)
        return 2
    folder = folder.expanduser().resolve()
    print(f"Your notebooks are in {folder}")
    if copied:
        print(f"  copied {len(copied)}: {', '.join(p.name for p in copied)}")
    if kept:
        print(f"  kept {len(kept)} you already had (never overwritten): {', '.join(p.name for p in kept)}")
    cmd = lab_command(folder, args.lab_args)
    if args.no_launch:
        print("Open them with:\n  " + " ".join(cmd))
        return 0
    print("Opening JupyterLab (Ctrl+C here stops it)…", flush=True)
    try:
        return subprocess.call(cmd)
    except KeyboardInterrupt:
        return 0


def notebooks(args) -> int:
    print(NOTEBOOKS)
    return 0


def info(args) -> int:
    import torch

    print(f"inside-gpt2 {course.__version__} at {Path(course.__file__).parent}")
    print(f"torch {torch.__version__}; CUDA {'available: ' + torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'not available'}")
    try:
        model = course.load_model()
    except Exception as e:     # what the student sees is the point: say it, do not raise
        print(f"the course model did not load: {type(e).__name__}: {e}")
        return 1
    print(f"the course model loads offline on {model.device}: {model.cfg.n_layers} layers, "
          f"{model.cfg.n_heads} heads, width {model.cfg.d_model}")
    return 0


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="inside-gpt2", description="Inside GPT-2: a Jupyter course in mechanistic "
                                 "interpretability on a small GPT-2.",
                                 epilog="Start with `inside-gpt2 start`; on Colab, open a chapter's notebook "
                                        "directly: its first cell installs the course.")
    ap.add_argument("--version", action="version", version=f"inside-gpt2 {course.__version__}")
    sub = ap.add_subparsers(dest="command", metavar="COMMAND")
    s = sub.add_parser("start", help="copy the chapter notebooks into a folder of yours and open JupyterLab there",
                       description="Copy the chapter notebooks into DIR (only those missing there: your copies are "
                                   "never overwritten) and open JupyterLab on chapter 1.",
                       usage="inside-gpt2 start [DIR] [--no-launch] [-- JUPYTER_LAB_ARGS ...]",
                       epilog="Anything after -- goes to `jupyter lab`, e.g. `inside-gpt2 start -- --no-browser` "
                              "on a server.")
    s.add_argument("dir", nargs="?", default=DEFAULT_DIR, metavar="DIR",
                   help=f"the folder for your notebooks (default: ./{DEFAULT_DIR}, created if missing)")
    s.add_argument("--no-launch", action="store_true", help="copy the notebooks and print the command, open nothing")
    s.set_defaults(run=start)
    sub.add_parser("notebooks", help="print the folder of the installed (read-only) notebooks").set_defaults(run=notebooks)
    sub.add_parser("info", help="the course's version, torch, the device, and whether the model loads offline"
                   ).set_defaults(run=info)
    return ap


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    # What follows "--" is JupyterLab's, untouched by this parser.
    lab_args = argv[argv.index("--") + 1:] if "--" in argv else []
    argv = argv[:argv.index("--")] if "--" in argv else argv
    ap = parser()
    args = ap.parse_args(argv)
    args.lab_args = lab_args
    if not getattr(args, "run", None):
        ap.print_help()
        return 0
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
