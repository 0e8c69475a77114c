"""The capstone — Inside GPT-2: its lesson (lesson.py, the one hand-written source), checks, findings and expected values."""
