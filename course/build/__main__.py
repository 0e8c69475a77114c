"""Build every chapter (or the ones named) from its one source.

    python -m course.build                   # write all generated files
    python -m course.build ch1_residual_stream
    python -m course.build --check           # exit 1 and list what is stale; write nothing
    python -m course.build --no-expected     # skip the checks' expected values (no model run)

Besides the chapters it writes the book's table of contents and what the README and the book's
front page say about the shipped model (course.build.model_facts).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from course.build.source import chapter_slug, chapter_slugs, chapter_sources, read_chapter
from course.build.targets import ROOT, render_all


def write_expected(slug: str) -> Path:
    """Ship the reference's outputs on the visible cases, for checks without ``solutions``."""
    import torch

    from course.checks.core import chapter_checks, expected_outputs, expected_path

    checks = chapter_checks(slug)
    out = expected_path(slug)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)   # the same reduction order on every machine, as far as a CPU allows
    try:
        values = {name: expected_outputs(ex) for name, ex in checks.EXERCISES.items()}
    finally:
        torch.set_num_threads(threads)
    # Rewriting a file for float noise would make every build a change to commit.
    if not (out.exists() and _same(torch.load(out, weights_only=True), values)):
        torch.save(values, out)
    return out


def _tensors_agree(old, new, rtol: float, atol: float) -> bool:
    """Equal up to float noise: another CPU's kernels (or a thread count) reorder sums, which moves
    each entry by a few units in the last place *of the tensor's largest entries*, so the absolute
    slack scales with the tensor's magnitude; half precision gets its own (coarser) resolution."""
    import torch

    if not (old.is_floating_point() or old.is_complex()):
        return torch.equal(old, new)
    if old.dtype in (torch.float16, torch.bfloat16):
        rtol = max(rtol, 2 * torch.finfo(old.dtype).eps)
    scale = float(new.abs().nan_to_num(posinf=0.0, neginf=0.0).max()) if new.numel() else 0.0
    return bool(torch.allclose(old, new, rtol=rtol, atol=atol + rtol * scale, equal_nan=True))


def _same(old, new, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
    """Whether two nests of dicts, sequences, tensors and numbers agree up to float noise."""
    import torch

    if isinstance(old, torch.Tensor) or isinstance(new, torch.Tensor):
        return (isinstance(old, torch.Tensor) and isinstance(new, torch.Tensor) and old.shape == new.shape
                and old.dtype == new.dtype and _tensors_agree(old, new, rtol, atol))
    if isinstance(old, dict):
        return (isinstance(new, dict) and old.keys() == new.keys()
                and all(_same(old[k], new[k], rtol, atol) for k in old))
    if isinstance(old, (list, tuple)):
        return (type(old) is type(new) and len(old) == len(new)
                and all(_same(o, n, rtol, atol) for o, n in zip(old, new)))
    if isinstance(old, float) and isinstance(new, float):
        return abs(old - new) <= atol + rtol * abs(new) or (old != old and new != new)
    return old == new


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Build the chapters from their sources.")
    ap.add_argument("chapters", nargs="*", help="chapter slugs (default: all)")
    ap.add_argument("--check", action="store_true", help="report stale generated files; write nothing")
    ap.add_argument("--no-expected", action="store_true", help="do not recompute the checks' expected values")
    args = ap.parse_args(argv)
    sources = [p for p in chapter_sources() if not args.chapters or chapter_slug(p) in args.chapters]
    unknown = set(args.chapters) - {chapter_slug(p) for p in sources}
    if unknown:
        print(f"unknown chapter(s): {', '.join(sorted(unknown))}; "
              f"known: {', '.join(chapter_slugs())}", file=sys.stderr)
        return 2
    stale = []
    from course.build.book import BOOK, toc   # the book's table of contents lists every chapter
    toc_path = BOOK / "_toc.yml"
    if not toc_path.exists() or toc_path.read_text() != toc():
        stale.append(toc_path.relative_to(ROOT))
        if not args.check:
            toc_path.write_text(toc())
    from course.build import model_facts   # the README's and the book's sentences about the model
    for page in model_facts.update(check=args.check):
        stale.append(page.relative_to(ROOT))
    from course.build import hosting      # the README's install block and Colab links
    for page in hosting.update(check=args.check):
        stale.append(page.relative_to(ROOT))
    for src in sources:
        chapter = read_chapter(src)
        for path, text in render_all(chapter).items():
            path = Path(path)
            if not path.exists() or path.read_text() != text:
                stale.append(path.relative_to(ROOT))
                if not args.check:
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_text(text)
        if not args.check and not args.no_expected:
            print(f"{chapter.slug}: expected values -> {write_expected(chapter.slug).relative_to(ROOT)}")
    if args.check:
        for p in stale:
            print(f"stale: {p}")
        return 1 if stale else 0
    for p in stale:
        print(f"wrote {p}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
