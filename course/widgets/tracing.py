"""The causal-trace explorer: a prompt, its subject, and the three restoration heatmaps."""

from __future__ import annotations

from dataclasses import dataclass

import ipywidgets as widgets
import matplotlib.pyplot as plt
import torch

from course.tracing import KINDS, subject_noise, subject_span, trace_fact
from course.widgets.base import PromptExplorer, figure_output


@dataclass
class TraceView:
    """``restored[kind]``: ``[layer][pos]`` answer probability with that state restored."""

    tokens: list[str]
    subject: tuple[int, int]
    answer: str
    clean: float
    corrupt: float
    restored: dict[str, list[list[float]]]


@torch.no_grad()
def trace_view(model, prompt: str, subject: str, window: int = 1, n_samples: int = 8, seed: int = 0) -> TraceView:
    """Trace the model's own top answer to ``prompt`` with ``subject`` (words of the prompt) noised."""
    if not subject.strip():
        raise ValueError("name the subject: a word or words of the prompt.")
    span = subject_span(model, prompt, subject.strip())
    tokens = model.to_tokens(prompt)
    answer = int(model(tokens)[0, -1].argmax())
    noise = subject_noise(model, n_samples, span[1] - span[0], seed)
    # As in ROME, the window restores several layers of MLP or attention outputs; the residual
    # stream is restored at one layer (restoring it there already carries everything before).
    traces = {k: trace_fact(model, tokens, span, answer, noise, k, 1 if k == "resid" else window) for k in KINDS}
    first = next(iter(traces.values()))
    return TraceView(model.to_str_tokens(tokens), span, model.to_string(answer), first["clean"], first["corrupt"],
                     {k: t["restored"].tolist() for k, t in traces.items()})


def plot_trace(view: TraceView):
    # constrained layout keeps the figure's title clear of the panels' titles and the colour bar
    fig, axes = plt.subplots(1, len(view.restored), figsize=(4.2 * len(view.restored), 0.3 * len(view.tokens) + 1.8),
                             sharey=True, layout="constrained")
    labels = [t + ("*" if view.subject[0] <= i < view.subject[1] else "") for i, t in enumerate(view.tokens)]
    for ax, (kind, values) in zip(axes, view.restored.items()):
        im = ax.imshow(torch.tensor(values).T.numpy(), cmap="Purples", vmin=0, vmax=max(view.clean, 1e-6),
                       aspect="auto")
        ax.set_xlabel("layer")
        ax.set_xticks(range(len(values)))
        ax.set_title(f"restore {kind}")
    axes[0].set_yticks(range(len(labels)), [repr(t) for t in labels])
    fig.suptitle(f"p({view.answer!r}): clean {view.clean:.2f}, subject (*) noised {view.corrupt:.2f}")
    fig.colorbar(im, ax=axes, shrink=0.8)
    return fig


class TraceExplorer(PromptExplorer):
    """Prompt and subject boxes, a window slider; three heatmaps (residual, MLP, attention)."""

    def __init__(self, model, prompt: str, subject: str, window: int = 1):
        self.subject = widgets.Text(value=subject, description="Subject", continuous_update=False)
        self.window = widgets.IntSlider(value=window, min=1, max=model.cfg.n_layers, description="Window",
                                        continuous_update=False)
        self.trace: TraceView | None = None
        super().__init__(model, prompt, [self.subject, self.window])

    def render(self) -> list:
        self.trace = trace_view(self.model, self.prompt.value, self.subject.value, self.window.value)
        return [figure_output(plot_trace(self.trace))]
