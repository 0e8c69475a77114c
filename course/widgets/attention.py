"""The attention explorer: every head's pattern on a prompt, with its detector scores."""

from __future__ import annotations

import html
from dataclasses import dataclass

import circuitsvis as cv
import ipywidgets as widgets
import torch

from course.circuits import DETECTORS, detector_scores
from course.widgets.base import PromptExplorer, heat, html_output, inline_html


@dataclass
class AttentionView:
    """One layer's patterns on one prompt: ``patterns [head][q][k]``, ``scores[detector][head]``."""

    tokens: list[str]
    layer: int
    patterns: list
    scores: dict[str, list[float]]


@torch.no_grad()
def attention_view(model, prompt: str, layer: int) -> AttentionView:
    if not 0 <= layer < model.cfg.n_layers:
        raise ValueError(f"layer must be 0..{model.cfg.n_layers - 1}; got {layer}.")
    _, cache = model.run_with_cache(prompt, names_filter=[f"blocks.{layer}.attn.hook_pattern"])
    pattern = cache["pattern", layer]                                   # [1, head, q, k]
    scores = detector_scores(pattern)
    return AttentionView(model.to_str_tokens(prompt), layer, pattern[0].tolist(),
                         {name: scores[i].tolist() for i, name in enumerate(DETECTORS)})


def scores_html(view: AttentionView) -> str:
    head = "".join(f"<th style='padding:2px 6px'>{d}</th>" for d in DETECTORS)
    rows = "".join(
        f"<tr><th>L{view.layer}H{h}</th>"
        + "".join(f"<td style='background:{heat(view.scores[d][h])};padding:2px 6px'>{view.scores[d][h]:.2f}</td>"
                  for d in DETECTORS) + "</tr>"
        for h in range(len(view.patterns)))
    return f"<table class='detector-scores' style='border-collapse:collapse'><tr><th></th>{head}</tr>{rows}</table>"


class AttentionExplorer(PromptExplorer):
    """Prompt box, layer and head pickers, circuitsvis patterns (JavaScript inlined), and each
    head's previous/current/first-token scores beside them."""

    def __init__(self, model, prompt: str = "When Mary and John went to the store, John gave a drink to", layer: int = 0):
        self.layer = widgets.Dropdown(description="Layer", options=list(range(model.cfg.n_layers)), value=layer)
        self.head = widgets.Dropdown(description="Head", value="all",
                                     options=["all"] + list(range(model.cfg.n_heads)))
        self.current: AttentionView | None = None
        super().__init__(model, prompt, [self.layer, self.head])

    def render(self) -> list:
        self.current = view = attention_view(self.model, self.prompt.value, self.layer.value)
        heads = range(len(view.patterns)) if self.head.value == "all" else [self.head.value]
        patterns = torch.tensor([view.patterns[h] for h in heads])
        rendered = cv.attention.attention_heads(
            attention=patterns, tokens=[t if t.strip() else repr(t) for t in view.tokens],
            attention_head_names=[f"L{view.layer}H{h}" for h in heads])
        out = html_output(inline_html(rendered).data, min_width="480px")
        caption = widgets.HTML(f"<b>Detector scores</b> (mean attention over the prompt)<br>{scores_html(view)}"
                               f"<br><small>{html.escape(' '.join(view.tokens))}</small>")
        return [widgets.HBox([out, caption], layout=widgets.Layout(flex_flow="row wrap"))]
