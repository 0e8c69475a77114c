"""What chapter 5 states about the course model and its shipped SAE, computed from them.

Each function returns the numbers the chapter prints and the tests assert; none is typed in.
"""

from __future__ import annotations

import torch

from course.saes.features import find_named_features
from course.saes.steering import activation_addition, next_token_kl, next_token_shift
from course.superposition import ToyModel, geometry, train_toy

CATEGORY_FLOOR = 0.5     # a feature is "named" for a category when at least this share of its activation falls there


def sparsity_sweep(n_features: int = 5, d_hidden: int = 2, probabilities=(1.0, 0.3, 0.1, 0.03, 0.01),
                   importance_decay: float = 0.8, steps: int = 1500, seed: int = 0):
    """One toy model per feature probability, trained together; importance ``decay**i``.
    Returns (model, importance, per-instance :class:`course.superposition.Geometry`)."""
    p = torch.tensor(probabilities)[:, None].expand(-1, n_features).contiguous()
    importance = (importance_decay ** torch.arange(n_features)).expand(len(probabilities), -1).contiguous()
    model = ToyModel(len(probabilities), n_features, d_hidden, seed=seed)
    train_toy(model, p, importance, steps=steps, seed=seed)
    return model, importance, geometry(model.W.detach())


def correlated_geometry(probability: float = 0.25, steps: int = 1500, seed: int = 2) -> dict:
    """Four features in two dimensions, as two correlated or two anticorrelated pairs: each pair's
    cosine and the features' norms after training (``W [1, 2, 4]`` for plotting)."""
    out = {}
    for name, kwargs in (("correlated", {"n_correlated_pairs": 2}), ("anticorrelated", {"n_anticorrelated_pairs": 2})):
        m = ToyModel(1, 4, 2, seed=seed)
        train_toy(m, torch.full((1, 4), probability), torch.ones(1, 4), steps=steps, seed=seed, **kwargs)
        W = m.W.detach()
        u = W[0] / W[0].norm(dim=0)
        out[name] = {"W": W, "cosines": [float(u[:, 0] @ u[:, 1]), float(u[:, 2] @ u[:, 3])],
                     "norms": W[0].norm(dim=0).tolist()}
    return out


def superposition_grows_with_sparsity(geoms) -> bool:
    """Dense features get at most d_hidden dimensions; the sparsest instance represents more."""
    return geoms[-1].n_represented > geoms[0].n_represented


def named_features(model, stream, acts) -> dict:
    """The categories for which the SAE has a feature with most of its activation there."""
    found = find_named_features(model, stream, acts)
    return {k: v for k, v in found.items() if v.precision >= CATEGORY_FLOOR}


@torch.no_grad()
def steering_comparison(model, sae, feature: int, token_ids, prompts, plus: str, minus: str,
                        scale: float) -> dict:
    """The shift in next-token probability of ``token_ids``, and the KL divergence of the whole
    next-token distribution, from adding ``scale`` times the feature's decoder direction and
    ``scale`` times the (unit) activation-addition vector ``plus - minus``, at the SAE's site."""
    hook = sae.cfg.hook_name
    direction = sae.W_dec[feature]
    vector = activation_addition(model, hook, plus, minus)
    vector_unit = vector / vector.norm()
    return {"feature": next_token_shift(model, prompts, hook, direction, scale, token_ids),
            "activation_addition": next_token_shift(model, prompts, hook, vector_unit, scale, token_ids),
            "cosine": float(direction @ vector_unit),
            "feature_kl": next_token_kl(model, prompts, hook, direction, scale),
            "activation_addition_kl": next_token_kl(model, prompts, hook, vector_unit, scale)}
