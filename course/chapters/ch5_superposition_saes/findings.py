"""What chapter 5 states about the course model and its shipped SAE, computed from them.

Each function returns the numbers the chapter prints and the tests assert; none is typed in.
"""

from __future__ import annotations

import torch

from course.saes.features import decoder_logit_effects, find_named_features
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


STEERS = 0.05     # a rise of the promoted tokens' next-token probability this large counts as steering
BREAKS = 2.0      # a KL (nats) from the clean next-token distribution this large replaces what the model says


@torch.no_grad()
def steering_sweep(model, sae, feature: int, prompts: list[str], max_activation: float,
                   multiples=(0.0, 0.5, 1.0, 2.0, 4.0, 8.0), k: int = 10) -> dict:
    """Adding ``m * max_activation`` times the feature's decoder direction, for each multiple ``m``:
    the mean rise of the next-token probability of the ``k`` tokens the feature promotes most
    (its decoder direction through the unembedding: what it is *for*), and the KL from the clean
    next-token distribution. ``steers_at``: the first multiple whose rise reaches STEERS;
    ``breaks_at``: the first whose KL reaches BREAKS (None where none does)."""
    promoted = decoder_logit_effects(model, sae)[feature].topk(k).indices
    hook, direction = sae.cfg.hook_name, sae.W_dec[feature]
    rows = []
    for m in multiples:
        scale = m * max_activation
        rows.append({"multiple": m, "scale": scale,
                     "promoted_rise": next_token_shift(model, prompts, hook, direction, scale, promoted),
                     "kl": next_token_kl(model, prompts, hook, direction, scale)})
    steers = next((r["multiple"] for r in rows if r["promoted_rise"] >= STEERS), None)
    breaks = next((r["multiple"] for r in rows if r["kl"] >= BREAKS), None)
    return {"rows": rows, "promoted": [model.to_string(int(i)) for i in promoted], "steers_at": steers,
            "breaks_at": breaks, "feature": feature}


def steering_verdict(sweep: dict) -> str:
    """Where the feature's direction steers, and where it breaks the text, from :func:`steering_sweep`."""
    steers, breaks = sweep["steers_at"], sweep["breaks_at"]
    head = f"feature {sweep['feature']} promotes {sweep['promoted'][:5]}: "
    if steers is None:
        return head + (f"no scale tried raises their probability by {STEERS}; "
                       + (f"from {breaks}x its largest activation the KL passes {BREAKS} (the text breaks)"
                          if breaks is not None else "nor does any break the text"))
    if breaks is None or steers < breaks:
        return head + (f"from {steers}x its largest activation it raises their probability by at least {STEERS} "
                       + (f"before the text breaks at {breaks}x (KL >= {BREAKS}): a window where it steers"
                          if breaks is not None else "and no scale tried breaks the text"))
    return head + (f"the text breaks (KL >= {BREAKS}) at {breaks}x, no later than the probability of what it "
                   f"promotes rises ({steers}x): no scale steers without breaking")
