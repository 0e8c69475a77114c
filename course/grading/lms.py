"""A grade sheet an LMS imports: one row per student, one column per assignment.

    python -m course.grading export --course-dir autograder --to lms_grades.csv

nbgrader's own ``nbgrader export`` writes one row per student *and assignment*, without the
roster's names or LMS ids, and a student who submitted nothing reads like a graded zero. Here
every student of the gradebook's roster (``nbgrader db student import roster.csv``) gets one
row with their names, email and LMS id; each assignment gets a score column and a
"submitted" column (nbgrader's timestamp, or "no timestamp" for a file placed by hand); a
missing submission is written ``missing``, never 0.
"""

from __future__ import annotations

import csv
from pathlib import Path

MISSING = "missing"


def rows(course_dir: Path) -> tuple[list[str], list[dict]]:
    """(header, one dict per student) from the course directory's gradebook."""
    from nbgrader.api import Gradebook, MissingEntry

    db = Path(course_dir) / "gradebook.db"
    if not db.exists():
        raise FileNotFoundError(f"{db} does not exist: grade first (python -m course.grading autograde …), "
                                f"or name the course directory with --course-dir")
    with Gradebook(f"sqlite:///{db}") as gb:
        assignments = sorted(a.name for a in gb.assignments)
        header = ["student_id", "first_name", "last_name", "email", "lms_user_id"]
        for a in assignments:
            header += [a, f"{a} max", f"{a} submitted"]
        out = []
        for student in sorted(gb.students, key=lambda s: s.id):
            row = {"student_id": student.id, "first_name": student.first_name or "",
                   "last_name": student.last_name or "", "email": student.email or "",
                   "lms_user_id": student.lms_user_id or ""}
            for a in assignments:
                assignment = gb.find_assignment(a)
                row[f"{a} max"] = f"{assignment.max_score:g}"
                try:
                    sub = gb.find_submission(a, student.id)
                except MissingEntry:
                    row[a], row[f"{a} submitted"] = MISSING, ""
                    continue
                row[a] = f"{sub.score:g}"
                row[f"{a} submitted"] = sub.timestamp.isoformat(timespec="seconds") if sub.timestamp else "no timestamp"
            out.append(row)
    return header, out


def export(course_dir: Path, to: Path) -> Path:
    header, table = rows(course_dir)
    to = Path(to)
    with to.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=header)
        writer.writeheader()
        writer.writerows(table)
    return to
