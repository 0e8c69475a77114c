"""Toy models of superposition (Elhage et al. 2022): more sparse features than dimensions.

    from course.superposition import ToyModel, feature_batch, train_toy, feature_dimensionality
    model = ToyModel(n_instances=8, n_features=5, d_hidden=2)
    losses = train_toy(model, feature_probability=..., importance=...)

The model is ``x' = ReLU(Wᵀ W x + b)``, with an **instance** dimension: ``n_instances`` independent
models train at once, each with its own sparsity (and importances), so one run draws a whole
row of a phase diagram.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn


class ToyModel(nn.Module):
    """``W [instance, d_hidden, feature]``, ``b [instance, feature]``; ``forward(x [batch, instance, feature])``."""

    def __init__(self, n_instances: int, n_features: int, d_hidden: int, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.W = nn.Parameter(nn.init.xavier_normal_(torch.empty(n_instances, d_hidden, n_features), generator=g))
        self.b = nn.Parameter(torch.zeros(n_instances, n_features))

    def forward(self, x: Tensor) -> Tensor:
        hidden = torch.einsum("bif,ihf->bih", x, self.W)            # compress: [batch, instance, d_hidden]
        out = torch.einsum("bih,ihf->bif", hidden, self.W)          # read back with the same W
        return torch.relu(out + self.b)


def feature_batch(batch: int, feature_probability: Tensor, n_correlated_pairs: int = 0,
                  n_anticorrelated_pairs: int = 0, generator=None) -> Tensor:
    """``[batch, instance, feature]``: each feature present with its probability (``[instance]`` or
    ``[instance, feature]``), then uniform in [0, 1].

    The first ``2 n_correlated_pairs`` features come in pairs present together; the next
    ``2 n_anticorrelated_pairs`` in pairs never present together (either one with the pair's
    probability, the other absent); the rest are independent.
    """
    p = feature_probability
    n_instances = p.shape[0]
    n_features = p.shape[1] if p.dim() == 2 else None
    if n_features is None:
        raise ValueError("feature_probability is [instance, feature]; expand a per-instance value first.")
    values = torch.rand(batch, n_instances, n_features, generator=generator)
    present = torch.rand(batch, n_instances, n_features, generator=generator) < p
    c = 2 * n_correlated_pairs
    if c:
        both = torch.rand(batch, n_instances, n_correlated_pairs, generator=generator) < p[:, 0:c:2]
        present[..., 0:c] = both.repeat_interleave(2, dim=-1)
    a = 2 * n_anticorrelated_pairs
    if a:
        pair = torch.rand(batch, n_instances, n_anticorrelated_pairs, generator=generator) < 2 * p[:, c:c + a:2]
        first = torch.rand(batch, n_instances, n_anticorrelated_pairs, generator=generator) < 0.5
        present[..., c:c + a:2] = pair & first
        present[..., c + 1:c + a:2] = pair & ~first
    return values * present


def importance_weighted_loss(out: Tensor, x: Tensor, importance: Tensor) -> Tensor:
    """Per instance, the importance-weighted squared error, averaged over the batch and summed
    over features: ``[instance]``. ``importance [instance, feature]``."""
    return (importance * (out - x).pow(2)).mean(0).sum(-1)


def train_toy(model: ToyModel, feature_probability: Tensor, importance: Tensor, steps: int = 2000,
              batch: int = 512, lr: float = 1e-2, seed: int = 0, n_correlated_pairs: int = 0,
              n_anticorrelated_pairs: int = 0) -> Tensor:
    """Adam with a cosine-free constant rate; returns the loss per instance at the end ``[instance]``."""
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            x = feature_batch(batch, feature_probability, n_correlated_pairs, n_anticorrelated_pairs, g)
            loss = importance_weighted_loss(model(x), x, importance)
            opt.zero_grad()
            loss.sum().backward()
            opt.step()
    return loss.detach()


def feature_dimensionality(W: Tensor) -> Tensor:
    """Elhage et al.'s dimensionality of each feature: ``D_i = ||W_i||² / Σ_j (Ŵ_i · W_j)²``,
    the share of a hidden dimension feature ``i`` gets. ``W [instance, d_hidden, feature]`` ->
    ``[instance, feature]``; 1 for a feature with a dimension of its own, 1/2 for an antipodal pair."""
    norms = W.norm(dim=1)                                           # [instance, feature]
    unit = W / norms.clamp_min(1e-8)[:, None, :]
    overlaps = torch.einsum("ihf,ihg->ifg", unit, W)                # Ŵ_i · W_j
    return norms.pow(2) / overlaps.pow(2).sum(-1).clamp_min(1e-12)


def interference(W: Tensor) -> Tensor:
    """``WᵀW`` per instance, ``[instance, feature, feature]``: the diagonal is each feature's norm², the
    rest how much each feature's read-out picks up the others."""
    return torch.einsum("ihf,ihg->ifg", W, W)


@dataclass
class Geometry:
    """What one trained instance does with its features."""

    norms: Tensor               # [feature] ||W_i||: ~1 represented, ~0 dropped
    superposed: Tensor          # [feature] bool: represented and sharing a dimension with another feature
    dimensionality: Tensor      # [feature]
    n_represented: int
    n_superposed: int


def geometry(W: Tensor, threshold: float = 0.5) -> list[Geometry]:
    """Per instance, which features are represented (norm > ``threshold``) and which share space
    (some other represented feature has |Ŵ_i · W_j| > 0.1)."""
    out = []
    norms = W.norm(dim=1)
    inter = interference(W / norms.clamp_min(1e-8)[:, None, :])
    dims = feature_dimensionality(W)
    for i in range(W.shape[0]):
        represented = norms[i] > threshold
        off = inter[i].abs() * represented[None, :] * represented[:, None]
        off.fill_diagonal_(0)
        superposed = represented & (off > 0.1).any(-1)
        out.append(Geometry(norms[i], superposed, dims[i], int(represented.sum()), int(superposed.sum())))
    return out


def plot_features_2d(W: Tensor, titles: list[str] | None = None, importance: Tensor | None = None,
                     size: float = 1.9, legend: bool = False):
    """Each instance's feature directions (the columns of ``W [instance, 2, feature]``) as arrows
    from the origin, coloured by importance (dark: important); ``size`` inches per panel;
    ``legend`` names each feature with its importance. Returns the matplotlib figure."""
    import matplotlib.pyplot as plt

    n = W.shape[0]
    fig, axes = plt.subplots(1, n, figsize=(size * n + (1.6 if legend else 0), size * 1.1), squeeze=False)
    W = W.detach().cpu()
    for i, ax in enumerate(axes[0]):
        for f in range(W.shape[2]):
            shade = 0.2 + 0.8 * float(importance[i, f] / importance[i].max()) if importance is not None else 1.0
            label = (f"feature {f}" + (f" (importance {float(importance[i, f]):.2f})" if importance is not None
                                        else "")) if legend else None
            ax.plot([0, W[i, 0, f]], [0, W[i, 1, f]], color=plt.cm.viridis(1 - shade), lw=1.5, label=label)
            ax.scatter(W[i, 0, f], W[i, 1, f], color=plt.cm.viridis(1 - shade), s=12)
        ax.set_xlim(-1.5, 1.5), ax.set_ylim(-1.5, 1.5), ax.set_aspect("equal"), ax.set_xticks([]), ax.set_yticks([])
        if titles:
            ax.set_title(titles[i], fontsize=8)
        if legend:
            ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.02, 0.5), frameon=False)
    fig.tight_layout()
    return fig
