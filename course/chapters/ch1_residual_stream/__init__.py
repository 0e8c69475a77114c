"""Chapter 1 — The residual stream: its lesson (lesson.py, the one hand-written source), checks, findings and expected values."""
