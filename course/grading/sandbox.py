"""Run a command (a Jupyter kernel, a re-check) where student code can reach only what it needs.

    python -m course.grading.sandbox --hide PATH [--hide PATH ...] [--memory-gib 6] -- CMD ARGS...

- Each ``--hide`` directory is covered by an empty read-only tmpfs in a private mount
  namespace, and each ``--hide`` file by /dev/null: the reference solutions, the chapters'
  lessons (which hold the solutions), the nbgrader course directory (hidden tests, the
  gradebook, other students' files) simply are not there. The chapters' checks, findings
  and expected values, which the student notebooks import, stay.
  With ``--private-tmp`` every other directory under /tmp is hidden the same way.
- Memory (address space), file size and process count are capped, so a runaway cell
  fails on its own instead of taking the grading machine down.
- The command starts in a fresh empty working directory.

Mount namespaces need root or unprivileged user namespaces. Where neither is
available the sandbox still applies the limits and prints a warning saying that
files are not hidden (see the README's list of what is and is not defended).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile

INSIDE = "COURSE_SANDBOX_INSIDE"


def _limit(kind: int, value: int) -> None:
    soft, hard = resource.getrlimit(kind)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(kind, (value, value))


def _hide(paths: list[str]) -> bool:
    for path in paths:
        if os.path.isdir(path):
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0555,ro", "sandbox-hidden", path],
                               capture_output=True, text=True)
        elif os.path.isfile(path):      # a single file (a chapter's lesson) reads as empty
            r = subprocess.run(["mount", "--bind", "/dev/null", path], capture_output=True, text=True)
        else:
            continue
        if r.returncode != 0:
                print(f"sandbox: could not hide {path}: {r.stderr.strip()}", file=sys.stderr)
                return False
    return True


def _private_tmp(command: list[str]) -> bool:
    """Hide every directory under /tmp (other courses' copies, old runs, other students' work)
    except those the command needs: the repository, the Python environment, and folders of
    files named on its command line (a kernel's connection file). /tmp stays writable."""
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    keep = {os.path.realpath(p) for p in (repo, sys.prefix, *(a for a in command if a.startswith("/tmp/")))}

    def hide_under(folder: str) -> bool:
        for entry in os.scandir(folder):
            path = os.path.realpath(entry.path)
            if any(k == path or k.startswith(path + os.sep) for k in keep):
                if entry.is_dir(follow_symlinks=False) and path not in keep and not hide_under(entry.path):
                    return False
                continue
            if entry.is_dir(follow_symlinks=False):
                r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k,mode=0555,ro", "sandbox-hidden",
                                    entry.path], capture_output=True, text=True)
                if r.returncode != 0:
                    print(f"sandbox: could not hide {entry.path}: {r.stderr.strip()}", file=sys.stderr)
                    return False
        return True

    return hide_under("/tmp")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description="Run a command with course files hidden and resources capped.")
    ap.add_argument("--hide", action="append", default=[], help="directory or file to hide (repeatable)")
    ap.add_argument("--memory-gib", type=float, default=6.0, help="address-space cap in GiB")
    ap.add_argument("--max-file-mib", type=float, default=256.0, help="largest file the command may write")
    ap.add_argument("--private-tmp", action="store_true",
                    help="hide the other directories under /tmp (all but the course's own)")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        ap.error("give the command after --")
    hide = [os.path.realpath(p) for p in args.hide]
    # The command starts in another directory: resolve it (and relative paths) first.
    command[0] = os.path.abspath(shutil.which(command[0]) or command[0])

    if (hide or args.private_tmp) and os.environ.get(INSIDE) != "1" and shutil.which("unshare"):
        # Re-enter in a private mount namespace (as root; else as root of a user namespace).
        base = ["unshare", "--mount", "--propagation", "private"]
        if os.geteuid() != 0:
            base.append("--map-root-user")
        env = {**os.environ, INSIDE: "1"}
        probe = subprocess.run([*base, "true"], capture_output=True)
        if probe.returncode == 0:
            os.execvpe(base[0], [*base, "--", sys.executable, "-m", "course.grading.sandbox", *sys.argv[1:]], env)
    hidden = os.environ.get(INSIDE) == "1" and _hide(hide) and (not args.private_tmp or _private_tmp(command))
    if hide and not hidden:
        print("sandbox: WARNING: no mount namespace; course files are NOT hidden from this process.", file=sys.stderr)
    os.environ["COURSE_SANDBOX_HIDDEN"] = "1" if hidden else "0"

    _limit(resource.RLIMIT_AS, int(args.memory_gib * 2**30))
    _limit(resource.RLIMIT_FSIZE, int(args.max_file_mib * 2**20))
    os.chdir(tempfile.mkdtemp(prefix="sandbox-"))
    os.execvp(command[0], command)


if __name__ == "__main__":
    main()
