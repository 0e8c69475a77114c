"""Chapter 7's attribution-graph viewer, offline: nodes by layer x position, edges drawn with
widths by effect, a pruning-threshold slider, and nodes to click (a button per node, laid out
by layer x position like the picture) that show a node's top contexts and logit effects."""

from __future__ import annotations

import html
import math
from dataclasses import dataclass

import ipywidgets as widgets
import torch

from course.attribution import prune


@dataclass
class GraphNode:
    node: int                   # index in the full graph
    label: str
    kind: str                   # feature, error, embedding, logit
    row: int                    # 0: embeddings, 1..n_layers: layers, n_layers + 1: logits
    pos: int
    influence: float


@dataclass
class GraphView:
    nodes: list[GraphNode]
    edges: list[tuple[int, int, float]]      # (source, target, weight), kept edges between shown nodes
    stats: dict
    n_rows: int
    n_pos: int
    prompt_tokens: list[str]


def graph_view(graph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> GraphView:
    """What the viewer draws at a pruning threshold: kept features, error nodes and embeddings
    that carry a kept edge, the logits; and the kept edges between them."""
    if not 0 < node_threshold <= 1 or not 0 < edge_threshold <= 1:
        raise ValueError(f"thresholds must be in (0, 1]; got {node_threshold}, {edge_threshold}.")
    pruned = prune(graph, node_threshold, edge_threshold)
    edges = pruned.edges()
    touched = {s for s, _, _ in edges} | {t for _, t, _ in edges}
    nodes = []
    for n in pruned.nodes():
        d = graph.describe(n)
        if d["kind"] in ("error", "embedding") and n not in touched:
            continue
        row = 0 if d["kind"] == "embedding" else (graph.n_layers + 1 if d["kind"] == "logit" else d["layer"] + 1)
        nodes.append(GraphNode(n, graph.label(n), d["kind"], row, d["pos"], float(pruned.influence[n])))
    shown = {v.node for v in nodes}
    return GraphView(nodes, [e for e in edges if e[0] in shown and e[1] in shown], pruned.stats(),
                     graph.n_layers + 2, graph.n_pos, graph.prompt_tokens)


_COLOURS = {"feature": "#3b7dd8", "error": "#999999", "embedding": "#2a9d5c", "logit": "#d8863b"}
_LEFT, _TOP = 40, 18                    # room for the row labels and the legend


def row_labels(n_rows: int) -> list[str]:
    """The picture's row names, bottom to top: the embeddings, each layer, the logits."""
    return ["emb"] + [f"L{l}" for l in range(n_rows - 2)] + ["logit"]


def cell_offsets(n: int, col: float, row: float, radius: float = 8.0) -> tuple[list[tuple[float, float]], float]:
    """Where ``n`` nodes sit within a ``col`` x ``row`` cell, as offsets from its centre (a small
    grid, most influential first, filled row by row), and the largest radius at which no two of
    them overlap (at most ``radius``)."""
    if n <= 0:
        return [], radius
    across = min(n, max(1, math.ceil((n * col / row) ** 0.5)))    # a grid about the cell's shape
    down = math.ceil(n / across)
    dx, dy = min(2.2 * radius, 0.9 * col / across), min(2.2 * radius, 0.9 * row / down)
    offsets = [((i % across - (across - 1) / 2) * dx, (i // across - (down - 1) / 2) * dy) for i in range(n)]
    gaps = ([dx] if across > 1 else []) + ([dy] if down > 1 else [])
    return offsets, min([radius] + [0.45 * g for g in gaps])


def graph_svg(view: GraphView, width: int = 760, height: int = 360, selected: int | None = None) -> str:
    """The graph as inline SVG: rows are layers (embeddings at the bottom, logits at the top, named
    on the left), columns prompt positions, a legend on top; an edge's width grows with |weight|,
    blue positive, red negative. Nodes sharing a cell sit on a small grid within it."""
    col = (width - _LEFT) / max(view.n_pos, 1)
    row = height / view.n_rows
    cells: dict = {}
    for v in view.nodes:
        cells.setdefault((v.row, v.pos), []).append(v)
    xy, radius = {}, {}
    for (r, p), vs in cells.items():
        offsets, biggest = cell_offsets(len(vs), col, row)
        for v, (dx, dy) in zip(sorted(vs, key=lambda v: -v.influence), offsets):
            xy[v.node] = (_LEFT + col * (p + 0.5) + dx, _TOP + height - row * (r + 0.5) + dy)
            radius[v.node] = biggest
    top = max((abs(w) for _, _, w in view.edges), default=1.0) or 1.0
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{_TOP + height + 40}' "
             f"style='background:#fff;font-family:monospace;font-size:10px'>"]
    legend = [("feature", "features"), ("error", "errors"), ("embedding", "embeddings"), ("logit", "logit")]
    x = 4.0
    for kind, name in legend:
        parts.append(f"<rect x='{x:.1f}' y='5' width='8' height='8' rx='4' fill='{_COLOURS[kind]}'/>"
                     f"<text x='{x + 11:.1f}' y='12'>{name}</text>")
        x += 16 + 6.2 * len(name)
    parts.append(f"<text x='{x + 4:.1f}' y='12'><tspan fill='#2b6cb0'>blue edges raise</tspan>, "
                 f"<tspan fill='#c53030'>red lower</tspan> their target; hover for values</text>")
    for r, name in enumerate(row_labels(view.n_rows)):
        parts.append(f"<text x='4' y='{_TOP + height - row * (r + 0.5) + 3:.1f}' fill='#555'>{name}</text>")
    for s, t, w in sorted(view.edges, key=lambda e: abs(e[2])):
        (x1, y1), (x2, y2) = xy[s], xy[t]
        parts.append(f"<line x1='{x1:.1f}' y1='{y1:.1f}' x2='{x2:.1f}' y2='{y2:.1f}' "
                     f"stroke='{'#2b6cb0' if w > 0 else '#c53030'}' stroke-opacity='0.45' "
                     f"stroke-width='{0.3 + 4 * abs(w) / top:.2f}'><title>{w:+.3f}</title></line>")
    big = max((v.influence for v in view.nodes if v.kind == "feature"), default=1.0) or 1.0
    for v in view.nodes:
        x, y = xy[v.node]
        r = (3 + 5 * (min(v.influence / big, 1.0) if v.kind == "feature" else 0.5)) * radius[v.node] / 8.0
        ring = " stroke='#000' stroke-width='2'" if v.node == selected else ""
        parts.append(f"<circle cx='{x:.1f}' cy='{y:.1f}' r='{r:.1f}' fill='{_COLOURS[v.kind]}'{ring}>"
                     f"<title>{html.escape(v.label)} (influence {v.influence:.3f})</title></circle>")
    for p, tok in enumerate(view.prompt_tokens):
        parts.append(f"<text x='{_LEFT + col * (p + 0.5):.1f}' y='{_TOP + height + 25}' text-anchor='middle'>"
                     f"{html.escape(repr(tok))}</text>")
    return "".join(parts) + "</svg>"


def node_grid(view: GraphView, per_cell: int = 3) -> list[list[list[GraphNode]]]:
    """The clickable map: ``grid[r][p]`` holds the nodes drawn in row ``r`` (0 = the logits at the
    top, the last = the embeddings, as in the picture) at position ``p``, the most influential
    first, at most ``per_cell`` of them (the rest stay in the ranked list)."""
    grid = [[[] for _ in range(view.n_pos)] for _ in range(view.n_rows)]
    for v in sorted(view.nodes, key=lambda v: -v.influence):
        cell = grid[view.n_rows - 1 - v.row][v.pos]
        if len(cell) < per_cell:
            cell.append(v)
    return grid


def _short(v: GraphNode) -> str:
    """A node's name on its button: the feature number, or what kind of node it is."""
    if v.kind == "feature":
        return v.label.split(" ")[0].split("/")[1]
    return {"error": "err", "embedding": "emb"}.get(v.kind, "logit")


@dataclass
class NodeCard:
    node: int
    label: str
    kind: str
    influence: float
    logit_effect: float                 # direct effect on the first logit
    promotes: list[str]                 # features only: tokens the decoder direction raises / lowers
    suppresses: list[str]
    contexts: list                      # features only: course.saes.features.FeatureContext
    inputs: list[tuple[str, float]]     # strongest incoming edges (label, weight)


@torch.no_grad()
def node_card(model, graph, transcoders, node: int, tokens: torch.Tensor | None = None, k: int = 5) -> NodeCard:
    """Everything the viewer shows for one node: for a feature, its top contexts on ``tokens``
    (rows of corpus text), the tokens its decoder direction promotes and suppresses; for every
    node, its direct effect on the answer's logit and its strongest inputs."""
    from course.attribution.pruning import influence
    from course.saes.features import feature_activations, feature_contexts, feature_logit_tokens

    if not 0 <= node < graph.n_nodes:
        raise ValueError(f"node must be 0..{graph.n_nodes - 1}; got {node}.")
    d = graph.describe(node)
    logit = graph.slices()["logit"].start
    incoming = graph.adjacency[node]
    order = incoming.abs().argsort(descending=True)[:k]
    inputs = [(graph.label(int(i)), float(incoming[i])) for i in order if incoming[i] != 0]
    promotes, suppresses, contexts = [], [], []
    if d["kind"] == "feature":
        tc = transcoders[d["layer"]]
        promotes, suppresses = feature_logit_tokens(model, tc, d["feature"], k=k)
        if tokens is not None:
            acts = feature_activations(model, tc, tokens)
            contexts = feature_contexts(model, tokens, acts, d["feature"], k=k)
    return NodeCard(node, graph.label(node), d["kind"], float(influence(graph)[node]),
                    float(graph.adjacency[logit, node]), promotes, suppresses, contexts, inputs)


def node_card_html(card: NodeCard) -> str:
    rows = []
    for c in card.contexts:
        top = max(max(c.activations), 1e-6)
        rows.append("<div>" + "".join(
            f"<span style='background:rgba(0,140,255,{max(0.0, min(1.0, a / top)):.2f});white-space:pre;"
            f"{'border:1px solid #000;' if i == c.at else ''}'>{html.escape(t)}</span>"
            for i, (t, a) in enumerate(zip(c.tokens, c.activations))) + "</div>")
    chips = lambda ts: " ".join(f"<code>{html.escape(repr(t))}</code>" for t in ts)  # noqa: E731
    inputs = "".join(f"<li>{html.escape(l)}: {w:+.3f}</li>" for l, w in card.inputs) or \
        ("<li>(none: an input node)</li>" if card.kind in ("embedding", "error") else "<li>(none)</li>")
    extra = (f"<p><b>promotes</b> {chips(card.promotes)}<br><b>suppresses</b> {chips(card.suppresses)}</p>"
             f"<b>top contexts</b>{''.join(rows) or ' (none on this text)'}") if card.kind == "feature" else ""
    return (f"<b>{html.escape(card.label)}</b> — influence {card.influence:.3f}, direct effect on the answer's "
            f"logit {card.logit_effect:+.3f}{extra}<br><b>strongest inputs</b><ul>{inputs}</ul>")


class GraphViewer(widgets.VBox):
    """A pruning-threshold slider over the graph picture; click a node on the map below it (laid
    out like the picture) or pick one in the list (sorted by influence) to see its card. Errors
    show in the status line."""

    def __init__(self, model, graph, transcoders, tokens: torch.Tensor | None = None, node_threshold: float = 0.8):
        self.model, self.graph, self.transcoders, self.tokens = model, graph, transcoders, tokens
        self.threshold = widgets.FloatSlider(value=node_threshold, min=0.3, max=0.99, step=0.01,
                                             description="keep share of influence", continuous_update=False,
                                             style={"description_width": "initial"},
                                             tooltip="prune to the features that carry this share of the "
                                                     "features' influence on the answer")
        self.node = widgets.Select(options=[], rows=8, description="node", layout=widgets.Layout(width="360px"))
        self.status, self.picture, self.card_html = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.grid = widgets.GridBox()
        self.threshold.observe(lambda c: self.refresh(), names="value")
        self.node.observe(lambda c: self.show(c["new"]), names="value")
        super().__init__([self.threshold, self.status, self.picture,
                          widgets.HTML("<b>click a node</b> — rows as in the picture (logits at the top, "
                                       "the last layer to the first, embeddings at the bottom), columns: positions"),
                          self.grid, widgets.HBox([self.node, self.card_html])])
        self.add_class("course-explorer")
        self.refresh()

    def refresh(self) -> None:
        try:
            self.view = graph_view(self.graph, self.threshold.value)
            s = self.view.stats
            self.status.value = (f"{s['features_kept']} of {s['features']} features kept "
                                 f"({s['feature_influence_kept']:.0%} of their influence), "
                                 f"{s['edges_kept']} of {s['edges']} edges")
            ranked = sorted(self.view.nodes, key=lambda v: -v.influence if v.kind != "logit" else 1)
            # Opens on the most influential *feature* (an embedding node has no contexts to show).
            first = next((v.node for v in ranked if v.kind == "feature"), ranked[0].node)
            keep = self.node.value if any(v.node == self.node.value for v in ranked) else first
            self._picking = True             # setting the options fires the picker: draw once, below
            try:
                self.node.options = [(f"{v.label} ({v.influence:.3f})", v.node) for v in ranked]
                self.node.value = keep
            finally:
                self._picking = False
            self.grid.children = self._buttons()
            self.grid.layout = widgets.Layout(grid_template_columns=f"repeat({self.view.n_pos}, minmax(0, 1fr))",
                                              grid_gap="2px", width="760px")
            self.show(keep)
        except Exception as e:
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"

    def _buttons(self) -> list:
        """One cell per (row, position) of :func:`node_grid`; a button per node, which selects it."""
        cells = []
        for row in node_grid(self.view):
            for nodes in row:
                buttons = []
                for v in nodes:
                    b = widgets.Button(description=_short(v), tooltip=f"{v.label} (influence {v.influence:.3f})",
                                       layout=widgets.Layout(width="auto", height="20px", padding="0 2px"))
                    b.style.button_color = _COLOURS[v.kind]
                    b.style.font_size = "9px"
                    b.node_id = v.node
                    b.on_click(lambda btn: setattr(self.node, "value", btn.node_id))
                    buttons.append(b)
                cells.append(widgets.VBox(buttons, layout=widgets.Layout(min_height="4px")))
        return cells

    def show(self, node) -> None:
        if getattr(self, "_picking", False):
            return
        try:
            self.picture.value = graph_svg(self.view, selected=node)
            if node is not None:
                self.card = node_card(self.model, self.graph, self.transcoders, node, self.tokens)
                self.card_html.value = node_card_html(self.card)
        except Exception as e:
            self.status.value = f"<span style='color:#b00'>⚠ {html.escape(str(e))}</span>"
