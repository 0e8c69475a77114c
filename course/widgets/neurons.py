"""The neuron explorer: a neuron's top contexts (its key) and the tokens its value promotes."""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import torch

from course.neurons import describe_neuron, top_contexts, value_logits, value_tokens
from course.widgets.base import PromptExplorer


@dataclass
class NeuronCard:
    """``contexts``: for each top context, its tokens, their activations and the index of the
    activating token (last in the list); ``following``: the token after each context (None at a
    row's end), what key–value agreement compares with ``promotes``; ``promotes``/``suppresses``:
    the value's top tokens."""

    layer: int
    neuron: int
    contexts: list[tuple[list[str], list[float], int]]
    max_activation: float
    promotes: list[str]
    suppresses: list[str]
    description: str
    following: list[str | None]


@torch.no_grad()
def neuron_card(model, stream, acts, layer: int, neuron: int, k: int = 8, width: int = 12) -> NeuronCard:
    """``acts [layer, row, pos, d_mlp]`` over ``stream.tokens``; up to ``width`` tokens of context."""
    if not 0 <= layer < acts.shape[0]:
        raise ValueError(f"layer must be 0..{acts.shape[0] - 1}; got {layer}.")
    if not 0 <= neuron < acts.shape[-1]:
        raise ValueError(f"neuron must be 0..{acts.shape[-1] - 1}; got {neuron}.")
    values, where = top_contexts(acts[layer], neuron, k)
    contexts, following = [], []
    for r, p in where.tolist():
        lo = max(0, p - width + 1)
        ids = stream.tokens[r, lo:p + 1].tolist()
        contexts.append(([model.to_string(i) for i in ids], acts[layer, r, lo:p + 1, neuron].tolist(), p - lo))
        following.append(model.to_string(int(stream.tokens[r, p + 1])) if p + 1 < stream.tokens.shape[1] else None)
    up, down = value_tokens(model, layer, neuron, k)
    return NeuronCard(layer, neuron, contexts, float(values[0]), up, down,
                      str(describe_neuron(model, stream, acts[layer], layer, neuron)), following)


@torch.no_grad()
def neuron_promoting(model, layer: int, token: str) -> int:
    """The neuron of ``layer`` whose value ranks ``token`` (one token) highest among all tokens; among
    neurons that rank it equally, the one that sets it furthest above its other tokens (in standard
    deviations). Ranking by the raw logit instead would favour neurons with large values overall,
    where the token may sit hundreds of places down."""
    logits = value_logits(model, layer)                                  # [d_mlp, d_vocab]
    t = model.to_single_token(token)
    rank = (logits > logits[:, t:t + 1]).sum(-1)
    margin = (logits[:, t] - logits.mean(-1)) / logits.std(-1).clamp_min(1e-8)
    best = rank == rank.min()
    return int(torch.where(best, margin, torch.full_like(margin, -float("inf"))).argmax())


def card_html(card: NeuronCard) -> str:
    top = max(card.max_activation, 1e-6)
    rows = []
    for (tokens, a, at), nxt in zip(card.contexts, card.following):
        cells = "".join(
            f"<span title='{x:.2f}' style='background:rgba(255,120,0,{max(0.0, min(1.0, x / top)):.2f});"
            f"{'border:1px solid #000;' if i == at else ''}white-space:pre;font-family:monospace'>"
            f"{html.escape(t)}</span>" for i, (t, x) in enumerate(zip(tokens, a)))
        after = (f" → <code title='the token that follows'>{html.escape(repr(nxt))}</code>"
                 if nxt is not None else "")
        rows.append(f"<div>{cells}{after} <small>({a[at]:.2f})</small></div>")
    chips = lambda ts: " ".join(f"<code>{html.escape(repr(t))}</code>" for t in ts)  # noqa: E731
    return (f"<b>L{card.layer}N{card.neuron}</b> — {html.escape(card.description)}<br>{''.join(rows)}"
            f"<p><b>value promotes</b> {chips(card.promotes)}<br><b>value suppresses</b> {chips(card.suppresses)}</p>")


class NeuronExplorer(PromptExplorer):
    """Layer and neuron pickers, or a token box that finds the neuron promoting that token;
    top contexts coloured by activation (activating token boxed), the value's top and bottom tokens."""

    def __init__(self, model, stream, acts, layer: int = 0, neuron: int = 0, k: int = 8):
        self.stream, self.acts, self.k = stream, acts, k
        self.layer = widgets.Dropdown(description="Layer", options=list(range(acts.shape[0])), value=layer)
        self.neuron = widgets.BoundedIntText(description="Neuron", min=0, max=acts.shape[-1] - 1, value=neuron)
        self.card: NeuronCard | None = None
        self._last_search = ""
        super().__init__(model, "", [self.layer, self.neuron])
        self.prompt.description = "Promotes"
        self.prompt.placeholder = "a token, e.g. ' of' (finds the neuron that promotes it most)"

    def render(self) -> list:
        search = self.prompt.value
        if search and search != self._last_search:
            self.neuron.value = neuron_promoting(self.model, self.layer.value, search)
        self._last_search = search
        self.card = neuron_card(self.model, self.stream, self.acts, self.layer.value, self.neuron.value, self.k)
        return [widgets.HTML(card_html(self.card))]
