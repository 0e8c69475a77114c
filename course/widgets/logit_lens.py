"""The logit-lens explorer: what would the model say if it stopped after each layer?"""

from __future__ import annotations

import html
from dataclasses import dataclass

import ipywidgets as widgets
import torch

from course.widgets.base import PromptExplorer, heat


@dataclass
class LogitLensTable:
    """Top-k decodings of the residual stream, for every layer and position of one prompt.

    ``top_tokens[layer][pos]`` and ``top_probs[layer][pos]`` are lists of length k,
    best first. Row 0 is the embeddings alone; the last row is the model's output.
    """

    tokens: list[str]
    layers: list[str]
    top_tokens: list[list[list[str]]]
    top_probs: list[list[list[float]]]

    def top(self, layer: int, pos: int) -> tuple[str, float]:
        return self.top_tokens[layer][pos][0], self.top_probs[layer][pos][0]


def token_text(tokenizer, token_id: int) -> str:
    """The text of one token; ids the tokenizer never assigned (the embedding has spare rows) show as <id>."""
    if tokenizer.convert_ids_to_tokens(token_id) is None:
        return f"<unused {token_id}>"
    return tokenizer.decode([token_id])


@torch.no_grad()
def logit_lens_table(model, prompt: str, k: int = 5) -> LogitLensTable:
    """Decode the stream before each layer and after the last, as if it were final."""
    tokens = model.to_tokens(prompt)
    names = [f"blocks.{i}.hook_resid_pre" for i in range(model.cfg.n_layers)]
    names.append(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")
    _, cache = model.run_with_cache(tokens, names_filter=names)
    resid, labels = cache.accumulated_resid(return_labels=True)        # [layer, 1, pos, d_model]
    probs = (cache.apply_ln_final(resid[:, 0]) @ model.W_U).softmax(-1)  # [layer, pos, d_vocab]
    top = probs.topk(k, dim=-1)
    return LogitLensTable(
        tokens=model.to_str_tokens(tokens),
        layers=["embed" if i == 0 else ("output" if lab == "final" else f"before L{i}") for i, lab in enumerate(labels)],
        top_tokens=[[[token_text(model.tokenizer, i) for i in row.tolist()] for row in layer] for layer in top.indices],
        top_probs=top.values.tolist(),
    )


def _cell(tokens: list[str], probs: list[float]) -> str:
    tip = html.escape("\n".join(f"{t!r}: {p:.3f}" for t, p in zip(tokens, probs)), quote=True)
    return (f"<td title='{tip}' style='background:{heat(probs[0])};padding:2px 6px;border:1px solid #ddd;"
            f"font-family:monospace;white-space:pre'>{html.escape(repr(tokens[0]))}<br>"
            f"<small>{probs[0]:.2f}</small></td>")


def render_table_html(table: LogitLensTable) -> str:
    head = "".join(f"<th style='font-family:monospace;padding:2px 6px'>{html.escape(repr(t))}</th>" for t in table.tokens)
    rows = "".join(
        f"<tr><th style='text-align:right;padding-right:6px'>{name}</th>"
        + "".join(_cell(t, p) for t, p in zip(table.top_tokens[i], table.top_probs[i])) + "</tr>"
        for i, name in enumerate(table.layers))
    return (f"<div style='overflow-x:auto'><table class='logit-lens' style='border-collapse:collapse'>"
            f"<tr><th></th>{head}</tr>{rows}</table></div>")


class LogitLensExplorer(PromptExplorer):
    """Prompt box, layer × position grid of the top token and its probability (hover a cell
    for its top k); pick a layer and a position to list the top k below."""

    def __init__(self, model, prompt: str | None = None, k: int = 5):
        if prompt is None:   # a fact the model was taught: the first invented country's capital
            from course.data.facts import countries
            prompt = f"The capital of {countries()[0].name} is"
        self.k = widgets.IntSlider(value=k, min=1, max=10, description="top k", continuous_update=False)
        self.layer = widgets.Dropdown(description="Layer", options=[("output", -1)], value=-1)
        self.position = widgets.Dropdown(description="Position", options=[("last", -1)], value=-1)
        self.table: LogitLensTable | None = None
        super().__init__(model, prompt, [self.k, self.layer, self.position])

    def render(self) -> list:
        self.table = logit_lens_table(self.model, self.prompt.value, self.k.value)
        with self.hold_trait_notifications():
            self._set_options(self.layer, [(name, i) for i, name in enumerate(self.table.layers)])
            self._set_options(self.position, [(f"{i}: {t!r}", i) for i, t in enumerate(self.table.tokens)])
        layer = self.layer.value if self.layer.value is not None and self.layer.value >= 0 else len(self.table.layers) - 1
        pos = self.position.value if self.position.value is not None and self.position.value >= 0 else len(self.table.tokens) - 1
        topk = "".join(f"<li><code>{html.escape(repr(t))}</code> {p:.3f}</li>"
                       for t, p in zip(self.table.top_tokens[layer][pos], self.table.top_probs[layer][pos]))
        detail = (f"<b>{self.table.layers[layer]}, position {pos} ({html.escape(repr(self.table.tokens[pos]))})</b>"
                  f"<ol>{topk}</ol>")
        return [widgets.HTML(render_table_html(self.table)), widgets.HTML(detail)]

    @staticmethod
    def _set_options(dropdown, options):
        if list(dropdown.options) != options:
            keep = dropdown.value
            values = [v for _, v in options]
            dropdown.options = options
            dropdown.value = keep if keep in values else values[-1]
