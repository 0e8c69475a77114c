"""Attribution graphs (chapter 7): transcoders, the local replacement model, direct effects,
pruning, and circuit-tracer's file formats.

    from course.attribution import load_shipped_transcoders, LocalReplacement, attribute, prune
    tcs = load_shipped_transcoders(model)                  # one transcoder per MLP layer
    rep = LocalReplacement.build(model, tcs, "calc: 36 + 59 = 9")
    graph = attribute(rep, target_token=model.to_single_token("5"))
    kept = prune(graph, node_threshold=0.8)

Each concept is one module: ``transcoders`` (training, metrics, the shipped set),
``replacement`` (frozen attention and layer norms, transcoders plus error terms),
``graph`` (direct effects by backward passes), ``pruning`` (influence, supernodes),
``export`` (circuit-tracer's JSON graph and per-layer safetensors).
"""

from course.attribution.transcoders import (SHIPPED, RETRAIN, TranscoderSet, evaluate_transcoders,
                                            load_shipped_transcoders, replaced_loss, train_transcoders)
from course.attribution.replacement import LocalReplacement
from course.attribution.graph import AttributionGraph, attribute
from course.attribution.pruning import PrunedGraph, influence, prune, supernodes
from course.attribution.export import (graph_json, load_circuit_tracer_transcoder, save_circuit_tracer_transcoders,
                                       save_graph_json)

__all__ = ["SHIPPED", "RETRAIN", "TranscoderSet", "evaluate_transcoders", "load_shipped_transcoders",
           "replaced_loss", "train_transcoders", "LocalReplacement", "AttributionGraph", "attribute", "PrunedGraph",
           "influence", "prune", "supernodes", "graph_json", "save_circuit_tracer_transcoders",
           "load_circuit_tracer_transcoder", "save_graph_json"]
