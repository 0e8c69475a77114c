"""Chapter 6 — Addition circuits: its lesson (lesson.py, the one hand-written source), checks, findings and expected values."""
