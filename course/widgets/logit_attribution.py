"""The direct-logit-attribution explorer: which components push the answer up, which push it down?"""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from course.widgets.base import PromptExplorer, figure_output


@dataclass
class AttributionTable:
    """Direct contributions to ``logit(answer) - logit(counterfactual)`` at the last position.

    ``components``: one value per residual-stream write (labels in ``component_labels``);
    ``heads``: ``[layer][head]``. ``components`` sums, with ``bias``, to ``logit_diff``.
    """

    component_labels: list[str]
    components: list[float]
    heads: list[list[float]]
    bias: float
    logit_diff: float


@torch.no_grad()
def attribution_table(model, prompt: str, answer: str, counterfactual: str) -> AttributionTable:
    """Attribute the logit difference to every component and head (final layer norm frozen)."""
    a, c = model.to_single_token(answer), model.to_single_token(counterfactual)
    logits, cache = model.run_with_cache(prompt)
    direction = model.W_U[:, a] - model.W_U[:, c]                                     # [d_model]
    parts, labels = cache.decompose_resid(pos=-1, return_labels=True)                 # [comp, 1, d_model]
    comps = cache.apply_ln_to_stack(parts, pos=-1)[:, 0] @ direction
    heads = cache.apply_ln_to_stack(cache.stack_head_results(pos=-1), pos=-1)[:, 0] @ direction
    return AttributionTable(
        component_labels=labels, components=comps.tolist(),
        heads=heads.view(model.cfg.n_layers, model.cfg.n_heads).tolist(),
        bias=float(model.ln_final_b @ direction),
        logit_diff=float(logits[0, -1, a] - logits[0, -1, c]),
    )


def plot_attribution(table: AttributionTable):
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.2), gridspec_kw={"width_ratios": [3, 2]})
    colours = ["#2a7" if v >= 0 else "#c33" for v in table.components]
    ax1.bar(table.component_labels, table.components, color=colours)
    ax1.axhline(0, color="k", lw=0.5)
    ax1.set_title(f"per component (sum + bias = logit diff {table.logit_diff:.2f})")
    ax1.tick_params(axis="x", rotation=45)
    heads = torch.tensor(table.heads).numpy()
    lim = float(abs(heads).max()) or 1.0
    im = ax2.imshow(heads, cmap="RdBu", vmin=-lim, vmax=lim)
    ax2.set_xlabel("head")
    ax2.set_ylabel("layer")
    ax2.set_xticks(range(heads.shape[1]))
    ax2.set_yticks(range(heads.shape[0]))
    ax2.set_title("per head")
    fig.colorbar(im, ax=ax2)
    fig.tight_layout()
    return fig


class AttributionExplorer(PromptExplorer):
    """Prompt, answer and counterfactual boxes; bar chart per component and a heat map per head."""

    def __init__(self, model, prompt: str = "When Mary and John went to the store, John gave a drink to",
                 answer: str = " Mary", counterfactual: str = " John"):
        box = dict(continuous_update=False, layout=widgets.Layout(width="260px"))
        self.answer = widgets.Text(value=answer, description="Answer", **box)
        self.counterfactual = widgets.Text(value=counterfactual, description="Versus", **box)
        self.table: AttributionTable | None = None
        super().__init__(model, prompt, [self.answer, self.counterfactual])

    def render(self) -> list:
        self.table = attribution_table(self.model, self.prompt.value, self.answer.value, self.counterfactual.value)
        return [figure_output(plot_attribution(self.table))]
