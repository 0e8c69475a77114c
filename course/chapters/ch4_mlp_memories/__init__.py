"""Chapter 4 — MLPs as key–value memories: its lesson (lesson.py, the one hand-written source), checks, findings and expected values."""
