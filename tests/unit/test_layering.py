"""The layering of the code: the toolkit never imports a chapter, the checks, the build, the
grading or the training code, and its packages import each other without circles.

Every import counts, those inside functions too (a lazy import is still a dependency).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

COURSE = Path(__file__).resolve().parents[2] / "course"
# The toolkit: what a notebook (or anyone) can use on its own, one package per concept.
TOOLKIT = ("lens", "data", "models", "patching", "neurons", "tracing", "editing", "saes", "attribution",
           "arithmetic", "fourier", "superposition", "circuits", "widgets")
# What builds on the toolkit and must stay out of it.
ABOVE = ("course.chapters", "course.checks", "course.build", "course.grading", "course.training", "solutions")


def _modules(package: str) -> list[Path]:
    return sorted((COURSE / package).rglob("*.py"))


def _imports(path: Path, root: Path = COURSE.parent) -> set[str]:
    """Every module name ``path`` imports (absolute names; relative imports resolved from ``root``)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = path.relative_to(root).with_suffix("").parts[:-1]
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = ".".join(package[: len(package) - node.level + 1])
                module = f"{base}.{node.module}" if node.module else base
            else:
                module = node.module or ""
            names.add(module)
            names.update(f"{module}.{a.name}" for a in node.names)   # "from course import circuits"
    return names


def _package_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if parts[0] == "course" and len(parts) > 1 and parts[1] in TOOLKIT else None


@pytest.mark.parametrize("package", TOOLKIT)
def test_the_toolkit_never_imports_what_builds_on_it(package):
    offenders = [f"{path.relative_to(COURSE.parent)} imports {name}"
                 for path in _modules(package) for name in sorted(_imports(path))
                 if name.startswith(ABOVE)]
    assert not offenders, "the toolkit must not depend on these:\n" + "\n".join(offenders)


def test_the_course_package_itself_imports_only_the_toolkit():
    names = _imports(COURSE / "__init__.py")
    assert not [n for n in names if n.startswith(ABOVE)]


def test_toolkit_packages_import_each_other_without_circles():
    edges = {p: set() for p in TOOLKIT}
    for package in TOOLKIT:
        for path in _modules(package):
            edges[package].update(q for q in map(_package_of, _imports(path)) if q and q != package)

    def cycle_from(start):
        stack = [(start, [start])]
        while stack:
            node, route = stack.pop()
            for nxt in edges[node]:
                if nxt == start:
                    return route + [start]
                if nxt not in route:
                    stack.append((nxt, route + [nxt]))
        return None

    cycles = [" -> ".join(c) for c in map(cycle_from, TOOLKIT) if c]
    assert not cycles, "packages that import each other in a circle:\n" + "\n".join(cycles)


def test_the_checker_sees_lazy_and_relative_imports(tmp_path):
    """The tests above can fail: imports inside functions, relative ones and "from course import x" are found."""
    probe = tmp_path / "course" / "data" / "probe.py"
    probe.parent.mkdir(parents=True)
    probe.write_text("import torch\n\ndef f():\n    from course.chapters.ch1_residual_stream import findings\n"
                     "    from ..training import train\n    from course import widgets\n")
    names = _imports(probe, root=tmp_path)
    assert {"course.chapters.ch1_residual_stream", "course.training", "course.widgets"} <= names
    assert [n for n in names if n.startswith(ABOVE)] and _package_of("course.widgets") == "widgets"
