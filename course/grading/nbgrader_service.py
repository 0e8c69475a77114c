"""One long-lived nbgrader per grading worker, instead of one ``nbgrader`` command per student.

Starting the ``nbgrader`` command costs about two CPU-seconds of imports before it grades
anything; for a class of hundreds that is minutes of pure start-up. A worker process
starts once, loads the course directory's ``nbgrader_config.py`` and then runs
nbgrader's own ``autograde`` (``NbGraderAPI.autograde``: the same preprocessors, the
same gradebook) for each student it is sent.

Protocol: one JSON line in on stdin (``{"assignment": ..., "student": ...}``), one JSON
line out (``{"success": bool, "error": str, "log": str}``) on a private copy of stdout;
everything else the process prints goes to stderr, so a stray print cannot break the
protocol.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path


class Worker:
    """A grading worker's nbgrader process, started on first use; restarted after a failure."""

    def __init__(self, course_dir: Path, kernel: str, cell_timeout: int, env: dict):
        self.course_dir, self.kernel, self.cell_timeout, self.env = Path(course_dir), kernel, cell_timeout, env
        self.proc: subprocess.Popen | None = None

    def _start(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "course.grading.nbgrader_service", str(self.course_dir), self.kernel,
                 str(self.cell_timeout)],
                cwd=self.course_dir, env=self.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, bufsize=1)
        return self.proc

    def autograde(self, assignment: str, student: str, timeout: float) -> tuple[bool, str]:
        """(success, nbgrader's error or log). A hung or dead worker is killed and reported."""
        for attempt in range(4):   # concurrent workers share one SQLite gradebook
            proc, ready = self._start(), False
            try:
                proc.stdin.write(json.dumps({"assignment": assignment, "student": student}) + "\n")
                proc.stdin.flush()
                ready, _, _ = select.select([proc.stdout], [], [], timeout)
                line = proc.stdout.readline() if ready else ""
            except (BrokenPipeError, OSError):
                line = ""
            if not line:
                self.close()
                return False, (f"nbgrader did not answer within {timeout:.0f} s" if not ready
                               else "the nbgrader process stopped")
            reply = json.loads(line)
            text = reply.get("error") or reply.get("log") or ""
            if reply["success"] or "database is locked" not in text:
                return bool(reply["success"]), text
            time.sleep(1 + attempt)
        return False, text

    def close(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                self.proc.kill()
            self.proc.wait()
            for stream in (self.proc.stdin, self.proc.stdout):
                stream.close()
            self.proc = None


def serve(course_dir: str, kernel: str, cell_timeout: int) -> None:
    from nbgrader.apps import NbGraderAPI
    from nbgrader.coursedir import CourseDirectory
    from traitlets.config.loader import PyFileConfigLoader

    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w", buffering=1)
    sys.stdout = sys.stderr
    config = PyFileConfigLoader("nbgrader_config.py", path=course_dir).load_config()
    config.Execute.kernel_name = kernel
    config.Execute.timeout = cell_timeout
    api = NbGraderAPI(coursedir=CourseDirectory(config=config), config=config)
    for line in sys.stdin:
        request = json.loads(line)
        try:
            result = api.autograde(request["assignment"], request["student"], force=True, create=True)
        except Exception as e:   # answer every request: the runner is waiting
            result = {"success": False, "error": f"{type(e).__name__}: {e}"}
        replies.write(json.dumps({k: result.get(k) for k in ("success", "error", "log")}) + "\n")


if __name__ == "__main__":
    serve(sys.argv[1], sys.argv[2], int(sys.argv[3]))
