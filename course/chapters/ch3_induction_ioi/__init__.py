"""Chapter 3 — Induction heads and the IOI circuit: its lesson (lesson.py, the one hand-written source), checks, findings and expected values."""
