"""Chapter 7 — Attribution graphs: tracing a circuit with transcoders: its lesson (lesson.py, the one hand-written source), checks, findings and expected values."""
