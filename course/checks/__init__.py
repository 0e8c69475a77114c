"""Instant feedback for the exercises: one module per chapter, one function per exercise.

    from course.checks import ch1_residual_stream as check
    check.layer_norm(layer_norm)
"""
