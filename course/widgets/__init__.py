"""Interactive explorers. Each is an ipywidgets class over a pure function that tests call directly.

    from course.widgets import LogitLensExplorer
    LogitLensExplorer(model, "The capital of Velmoria is")
"""

from course.widgets.attention import AttentionExplorer, AttentionView, attention_view
from course.widgets.circuits import CircuitMatrix, CircuitViewer, circuit_matrix
from course.widgets.logit_attribution import AttributionExplorer, AttributionTable, attribution_table
from course.widgets.logit_lens import LogitLensExplorer, LogitLensTable, logit_lens_table

__all__ = ["AttentionExplorer", "AttentionView", "attention_view", "CircuitMatrix", "CircuitViewer", "circuit_matrix",
           "AttributionExplorer", "AttributionTable", "attribution_table",
           "LogitLensExplorer", "LogitLensTable", "logit_lens_table"]
