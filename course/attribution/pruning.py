"""Pruning an attribution graph by influence on the logits, and grouping features into supernodes.

Influence: take absolute edge weights, normalise each target's incoming edges to sum to one,
and sum the weights of every path from a node to the logits (weighted by the logits'
probabilities): ``v (W + W^2 + ...)``. Pruning keeps the features that carry a given share of
the total influence (error and embedding nodes always stay), then the edges that carry a given
share of the edge influence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from course.attribution.graph import AttributionGraph


def normalized_matrix(adjacency: Tensor) -> Tensor:
    """``|adjacency|`` with each row (a target's incoming edges) scaled to sum to 1 (rows of zeros stay)."""
    w = adjacency.abs()
    return w / w.sum(1, keepdim=True).clamp_min(1e-12)


def logit_weights(graph: AttributionGraph) -> Tensor:
    """``[n_nodes]``: each logit node's probability, normalised to sum to 1; zero elsewhere."""
    v = torch.zeros(graph.n_nodes)
    p = graph.logit_probabilities.float()
    v[graph.slices()["logit"]] = p / p.sum()
    return v


def influence(graph: AttributionGraph, adjacency: Tensor | None = None) -> Tensor:
    """``[n_nodes]``: every node's total (indirect included) influence on the logits: ``v((I - W)^-1 - I)``."""
    w = normalized_matrix(graph.adjacency if adjacency is None else adjacency).double()
    v = logit_weights(graph).double()
    x = torch.linalg.solve((torch.eye(len(v), dtype=w.dtype) - w).T, v)      # x = v (I - W)^-1
    return (x - v).float()


def error_share(graph: AttributionGraph) -> float:
    """The share of the logits' influence that ends at error nodes rather than token embeddings
    (every path ends at one or the other): 0 if the transcoders explained everything."""
    infl, s = influence(graph), graph.slices()
    err, emb = float(infl[s["error"]].sum()), float(infl[s["embedding"]].sum())
    return err / (err + emb)


def _keep_cumulative(scores: Tensor, share: float) -> Tensor:
    """Mask of the highest ``scores`` whose sum first reaches ``share`` of the total."""
    keep = torch.zeros(len(scores), dtype=torch.bool)
    if len(scores) == 0 or float(scores.sum()) <= 0:
        return keep
    order = scores.argsort(descending=True)
    cum = scores[order].cumsum(0) / scores.sum()
    n = int((cum < share).sum()) + 1
    keep[order[:n]] = True
    return keep


@dataclass
class PrunedGraph:
    graph: AttributionGraph
    node_mask: Tensor           # [n_nodes]
    edge_mask: Tensor           # [n_nodes, n_nodes] (target, source)
    influence: Tensor           # [n_nodes]: on the full graph
    node_threshold: float
    edge_threshold: float

    @property
    def features_kept(self) -> int:
        return int(self.node_mask[self.graph.slices()["feature"]].sum())

    def stats(self) -> dict:
        """How much is kept: features, edges (of the nonzero ones) and the features' influence."""
        s = self.graph.slices()["feature"]
        nonzero = int((self.graph.adjacency != 0).sum())
        total = float(self.influence[s].sum())
        kept = float(self.influence[s][self.node_mask[s]].sum())
        return {"features": self.graph.n_features, "features_kept": self.features_kept,
                "feature_fraction_kept": self.features_kept / max(self.graph.n_features, 1),
                "edges": nonzero, "edges_kept": int(self.edge_mask.sum()),
                "edge_fraction_kept": int(self.edge_mask.sum()) / max(nonzero, 1),
                "feature_influence_kept": kept / total if total else 1.0}

    def nodes(self) -> list[int]:
        return self.node_mask.nonzero().flatten().tolist()

    def edges(self) -> list[tuple[int, int, float]]:
        """(source, target, weight) of every kept edge: the weight is ``adjacency[target, source]``
        (the matrix is stored target first, like ``edge_mask``)."""
        targets, sources = self.edge_mask.nonzero(as_tuple=True)
        return [(int(s), int(t), float(self.graph.adjacency[t, s])) for t, s in zip(targets, sources)]


def prune(graph: AttributionGraph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> PrunedGraph:
    """Keep the features carrying ``node_threshold`` of the features' influence on the logits (plus
    every error, embedding and logit node), then the edges among kept nodes carrying
    ``edge_threshold`` of the edge influence (an edge's: its normalised weight times its target's
    influence, a logit's being its weight)."""
    infl = influence(graph)
    s = graph.slices()
    node_mask = torch.ones(graph.n_nodes, dtype=torch.bool)
    node_mask[s["feature"]] = _keep_cumulative(infl[s["feature"]], node_threshold)
    kept = graph.adjacency * node_mask[:, None] * node_mask[None, :]
    w = normalized_matrix(kept)
    score = influence(graph, kept) + logit_weights(graph)
    edge_scores = w * score[:, None]
    flat = _keep_cumulative(edge_scores.flatten(), edge_threshold).reshape(edge_scores.shape)
    edge_mask = flat & (kept != 0)
    return PrunedGraph(graph, node_mask, edge_mask, infl, node_threshold, edge_threshold)


@dataclass
class SupernodeGraph:
    labels: list[str]
    members: list[list[int]]    # node indices of the full graph, per supernode
    adjacency: Tensor           # [n, n] (target, source): sums of the members' edges


def supernodes(graph: AttributionGraph, groups: dict[str, list[int]], nodes: list[int] | None = None) -> SupernodeGraph:
    """Merge each group of nodes into one node (edges between groups summed); every other node of
    ``nodes`` (default: all) stays alone. A node may belong to one group only."""
    seen = [n for g in groups.values() for n in g]
    if len(seen) != len(set(seen)):
        raise ValueError("a node is in two supernodes")
    rest = [n for n in (range(graph.n_nodes) if nodes is None else nodes) if n not in set(seen)]
    labels = list(groups) + [graph.label(n) for n in rest]
    members = [list(g) for g in groups.values()] + [[n] for n in rest]
    assign = torch.zeros(len(members), graph.n_nodes)
    for i, m in enumerate(members):
        assign[i, m] = 1.0
    return SupernodeGraph(labels, members, assign @ graph.adjacency @ assign.T)
