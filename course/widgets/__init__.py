"""Interactive explorers. Each is an ipywidgets class over a pure function that tests call directly.

    from course.widgets import LogitLensExplorer
    LogitLensExplorer(model, "The capital of Velmoria is")
"""

from course.widgets.arithmetic import (AdditionExplorer, AdditionView, FourierView, FourierViewer,
                                         GrokkingTimeline, GrokkingView, addition_view, fourier_view, grokking_view)
from course.widgets.attention import AttentionExplorer, AttentionView, attention_view
from course.widgets.graphs import GraphNode, GraphView, GraphViewer, NodeCard, graph_svg, graph_view, node_card, node_grid
from course.widgets.editor import EditView, FactEditor, edit_fact
from course.widgets.circuits import CircuitMatrix, CircuitViewer, circuit_matrix
from course.widgets.logit_attribution import AttributionExplorer, AttributionTable, attribution_table
from course.widgets.logit_lens import LogitLensExplorer, LogitLensTable, logit_lens_table
from course.widgets.patching import (IOIBreakdown, IOIExplorer, PatchingExplorer, PatchingMap, head_attention,
                                     ioi_breakdown, patching_map)
from course.widgets.neurons import NeuronCard, NeuronExplorer, neuron_card, neuron_promoting
from course.widgets.tracing import TraceExplorer, TraceView, trace_view
from course.widgets.saes import (FeatureCard, FeatureDashboard, SuperpositionExplorer, SuperpositionView,
                                  feature_card, feature_promoting, superposition_view)

__all__ = ["AdditionExplorer", "AdditionView", "addition_view", "FourierViewer", "FourierView", "fourier_view",
           "GrokkingTimeline", "GrokkingView", "grokking_view",
           "AttentionExplorer", "AttentionView", "attention_view", "CircuitMatrix", "CircuitViewer", "circuit_matrix",
           "AttributionExplorer", "AttributionTable", "attribution_table",
           "LogitLensExplorer", "LogitLensTable", "logit_lens_table", "EditView", "FactEditor", "edit_fact",
           "IOIBreakdown", "IOIExplorer", "PatchingExplorer", "PatchingMap", "head_attention", "ioi_breakdown",
           "patching_map", "NeuronCard", "NeuronExplorer", "neuron_card", "neuron_promoting", "TraceExplorer", "TraceView", "trace_view",
           "FeatureCard", "FeatureDashboard", "SuperpositionExplorer", "SuperpositionView", "feature_card",
           "feature_promoting", "superposition_view", "GraphNode", "GraphView", "GraphViewer", "NodeCard", "graph_svg",
           "graph_view", "node_card", "node_grid"]
