"""How long each chapter's solved notebook takes, top to bottom, in a fresh kernel.

    python benchmarks/notebooks.py [chapter ...]

Target (issues 4 and 5): under 60 s per chapter on two CPU cores. Prints one line a
chapter; kernel start-up is included, as a student would experience it.
"""

from __future__ import annotations

import sys
import time

import nbformat
import torch
from nbclient import NotebookClient

from course.build.source import chapter_slugs
from course.build.targets import ROOT, paths


def main(argv: list[str]) -> None:
    slugs = [s for s in chapter_slugs() if not argv or s in argv]
    print(f"torch threads {torch.get_num_threads()}; solved notebooks in a fresh python3 kernel")
    for slug in slugs:
        nb = nbformat.read(paths(slug)["solved"], as_version=4)
        start = time.perf_counter()
        NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}).execute()
        seconds = time.perf_counter() - start
        print(f"{slug:28s} {seconds:6.1f} s  {'ok' if seconds < 60 else 'OVER 60 s'}")


if __name__ == "__main__":
    main(sys.argv[1:])
