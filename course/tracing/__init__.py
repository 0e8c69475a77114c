"""Causal tracing of factual recall (Meng et al. 2022, ROME): corrupt the subject, restore
one clean state at a time, and see where the answer comes back.

    from course.tracing import fact_traces, trace_fact
"""

from course.tracing.facts import TracedFact, known_facts, subject_span
from course.tracing.plots import plot_average
from course.tracing.trace import (BUCKETS, KINDS, TraceAverage, average_traces, bucket_positions, noise_scale,
                                  subject_noise, trace_fact)

__all__ = ["TracedFact", "known_facts", "subject_span", "BUCKETS", "KINDS", "TraceAverage", "average_traces",
           "bucket_positions", "plot_average", "noise_scale", "subject_noise", "trace_fact"]
