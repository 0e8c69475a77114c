"""Chapter 2 — Attention: the QK and OV circuits: its lesson (lesson.py, the one hand-written source), checks, findings and expected values."""
