"""Heatmaps of averaged causal traces: one panel per kind of state, layers by position roles."""

from __future__ import annotations

import matplotlib.pyplot as plt


def plot_average(average, title: str = ""):
    """``average``: a :class:`course.tracing.TraceAverage`; returns the figure."""
    # constrained layout keeps the figure's title clear of the panels' titles and the colour bar
    fig, axes = plt.subplots(1, len(average.kinds), figsize=(4.3 * len(average.kinds), 3.4), sharey=True,
                             squeeze=False, layout="constrained")
    for ax, kind in zip(axes[0], average.kinds):
        im = ax.imshow(average.recovered[kind].numpy(), cmap="Purples", vmin=0, vmax=1, aspect="auto")
        ax.set_xticks(range(len(average.buckets)), average.buckets, rotation=40, ha="right")
        ax.set_title(f"restore {kind}" + (f", window {average.window}" if average.window > 1 else ""))
    axes[0, 0].set_ylabel("layer")
    axes[0, 0].set_yticks(range(average.recovered[average.kinds[0]].shape[0]))
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label="share of the answer recovered")
    if title:
        fig.suptitle(title)
    return fig
