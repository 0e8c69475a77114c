"""What an instructor reads after grading: a log written as each student finishes, and a
cumulative record per assignment with per-exercise statistics.

    <course_dir>/grading/<assignment>/grading.log    one line per graded student, appended as it happens
    <course_dir>/grading/<assignment>/record.json    every student's latest result (a regrade replaces only theirs)
    <course_dir>/grading/<assignment>/summary.md     per exercise: pass rate, the most common named mistakes

These hold student ids: ``autograder/.gitignore`` keeps them out of the repository.
"""

from __future__ import annotations

import json
import re
import time
from collections import Counter
from dataclasses import asdict
from pathlib import Path

CAUSE = re.compile(r"Likely cause: ([^\n]+)")


def folder(course_dir: Path, assignment: str) -> Path:
    return Path(course_dir) / "grading" / assignment


def open_log(course_dir: Path, assignment: str):
    path = folder(course_dir, assignment)
    path.mkdir(parents=True, exist_ok=True)
    log = (path / "grading.log").open("a", buffering=1)
    log.write(f"# {time.strftime('%Y-%m-%d %H:%M:%S')}: grading {assignment}\n")
    return log


def _minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def progress_line(res, done: int, total: int, elapsed: float) -> str:
    """``[k/N] student  exercises passing  seconds  time left`` for one finished student."""
    passing = sum(msg.startswith("✓") for msg in res.exercises.values())
    left = elapsed / done * (total - done)
    flag = f"  ({res.error})" if res.error else ""
    return (f"[{done}/{total}] {res.student:24s} re-check {passing}/{len(res.exercises)} exercises pass  "
            f"{res.seconds:5.1f} s  ~{_minutes(left)} left{flag}")


def update(course_dir: Path, assignment: str, results) -> dict:
    """Merge ``results`` into the assignment's record and rewrite its summary; returns the record."""
    path = folder(course_dir, assignment)
    path.mkdir(parents=True, exist_ok=True)
    file = path / "record.json"
    record = json.loads(file.read_text()) if file.exists() else {}
    now = time.strftime("%Y-%m-%dT%H:%M:%S")
    for res in results:
        record[res.student] = {**asdict(res), "graded_at": now}
    file.write_text(json.dumps(dict(sorted(record.items())), indent=1) + "\n")
    (path / "summary.md").write_text(summary(assignment, record))
    return record


def statistics(record: dict) -> dict[str, dict]:
    """Per exercise: students graded, share passing the re-check, and the named mistakes counted."""
    stats: dict[str, dict] = {}
    for entry in record.values():
        for exercise, message in entry["exercises"].items():
            s = stats.setdefault(exercise, {"graded": 0, "passed": 0, "causes": Counter(), "unnamed": 0})
            s["graded"] += 1
            if message.startswith("✓"):
                s["passed"] += 1
                continue
            causes = CAUSE.findall(message)
            s["causes"].update(c.strip() for c in causes)
            s["unnamed"] += not causes
    return stats


def summary(assignment: str, record: dict) -> str:
    stats = statistics(record)
    scores = [e["score"] for e in record.values()]
    errors = sum(bool(e["error"]) for e in record.values())
    lines = [f"# {assignment}: {len(record)} students graded", ""]
    if scores:
        top = max(e["max_score"] for e in record.values())
        lines.append(f"Scores: mean {sum(scores) / len(scores):.2f} of {top:g}; "
                     f"{sum(s == top for s in scores)} full marks; {errors} stopped early (see record.json).")
        lines.append("")
    lines += ["| exercise | pass rate | most common named mistakes (students) | wrong, no cause named |",
              "| --- | --- | --- | --- |"]
    for exercise, s in stats.items():
        common = "; ".join(f"{cause} ({n})" for cause, n in s["causes"].most_common(3)) or "—"
        lines.append(f"| {exercise} | {s['passed']}/{s['graded']} ({s['passed'] / s['graded']:.0%}) | {common} "
                     f"| {s['unnamed']} |")
    return "\n".join(lines) + "\n"
