"""The circuit viewer: a head's QK or OV matrix restricted to tokens you choose."""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from course import circuits
from course.widgets.base import PromptExplorer, figure_output


@dataclass
class CircuitMatrix:
    """``values[row][col]``: QK — score of query token ``rows[i]`` for key token ``cols[j]``;
    OV — logit of ``cols[j]`` written when the head attends to ``rows[i]``."""

    kind: str
    rows: list[str]
    cols: list[str]
    values: list[list[float]]


@torch.no_grad()
def circuit_matrix(model, layer: int, head: int, kind: str, text: str) -> CircuitMatrix:
    """The QK or OV circuit of ``L{layer}H{head}`` on the distinct tokens of ``text``."""
    kind = kind.upper()
    if kind not in ("QK", "OV"):
        raise ValueError(f"kind must be 'QK' or 'OV'; got {kind!r}.")
    if not (0 <= layer < model.cfg.n_layers and 0 <= head < model.cfg.n_heads):
        raise ValueError(f"no head L{layer}H{head}: layers 0..{model.cfg.n_layers - 1}, heads 0..{model.cfg.n_heads - 1}.")
    ids = list(dict.fromkeys(model.to_tokens(text, prepend_bos=False)[0].tolist()))
    if len(ids) > 40:
        raise ValueError(f"{len(ids)} distinct tokens: keep to 40 or fewer so the matrix stays readable.")
    idx = torch.tensor(ids, device=model.device)
    m = circuits.token_qk(model, layer, head, idx, idx) if kind == "QK" else circuits.ov(model, layer, head, idx, idx)
    labels = [model.to_string(i) for i in ids]
    return CircuitMatrix(kind, labels, labels, m.full().tolist())


def plot_circuit(c: CircuitMatrix, title: str = ""):
    values = torch.tensor(c.values).numpy()
    lim = float(abs(values).max()) or 1.0
    size = 2 + 0.32 * len(c.cols)
    fig, ax = plt.subplots(figsize=(size + 1, size))
    im = ax.imshow(values, cmap="RdBu", vmin=-lim, vmax=lim)
    ax.set_xticks(range(len(c.cols)), [repr(t) for t in c.cols], rotation=90)
    ax.set_yticks(range(len(c.rows)), [repr(t) for t in c.rows])
    ax.set_xlabel("key token" if c.kind == "QK" else "logit of token")
    ax.set_ylabel("query token" if c.kind == "QK" else "attended token")
    ax.set_title(title)
    fig.colorbar(im, ax=ax, shrink=0.8)
    fig.tight_layout()
    return fig


class CircuitViewer(PromptExplorer):
    """Tokens box (the distinct tokens of the text), layer/head pickers and QK/OV switch; a heat map."""

    def __init__(self, model, text: str = " Mary John Anna Tom gave the a to", layer: int = 0, head: int = 0,
                 kind: str = "OV"):
        self.layer = widgets.Dropdown(description="Layer", options=list(range(model.cfg.n_layers)), value=layer)
        self.head = widgets.Dropdown(description="Head", options=list(range(model.cfg.n_heads)), value=head)
        self.kind = widgets.ToggleButtons(options=["QK", "OV"], value=kind.upper())
        self.matrix: CircuitMatrix | None = None
        super().__init__(model, text, [self.layer, self.head, self.kind])
        self.prompt.description = "Tokens"

    def render(self) -> list:
        self.matrix = circuit_matrix(self.model, self.layer.value, self.head.value, self.kind.value, self.prompt.value)
        return [figure_output(plot_circuit(self.matrix, f"L{self.layer.value}H{self.head.value} {self.kind.value} circuit"))]
