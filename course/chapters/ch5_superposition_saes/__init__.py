"""Chapter 5 — Superposition and sparse autoencoders: its lesson (lesson.py, the one hand-written source), checks, findings and expected values."""
