"""Instant feedback for the exercises: one module per chapter, one function per exercise.

    from course.chapters.ch1_residual_stream import checks as check
    check.layer_norm(layer_norm)
"""
