"""Neurons as a bag of heuristics (Nikankin et al. 2024): what pattern of the operands or the
result each important neuron responds to, and which sums break when one class is ablated."""

from __future__ import annotations

import torch
from torch import Tensor

from course.arithmetic.batch import AdditionBatch, answer_correct

# Candidate patterns, coarse first: a neuron is given the first whose share of its variance comes
# within 0.9 of the best candidate's (fewer groups explain less by chance).
VARIABLES = {
    "carry (a₀ + b₀ ≥ 10)": lambda a, b: (a % 10 + b % 10 >= 10).long(),
    "sum range (tens of a + b)": lambda a, b: (a + b) // 10,
    "a range (tens of a)": lambda a, b: a // 10,
    "b range (tens of b)": lambda a, b: b // 10,
    "sum mod 10 (ones of a + b)": lambda a, b: (a + b) % 10,
    "a ones digit": lambda a, b: a % 10,
    "b ones digit": lambda a, b: b % 10,
    "ones digits' sum a₀ + b₀": lambda a, b: a % 10 + b % 10,
    "sum a + b": lambda a, b: a + b,
}


@torch.no_grad()
def grid_activations(model, batch: AdditionBatch, layer: int, target: str = "ones", batch_size: int = 512) -> Tensor:
    """``[n, d_mlp]``: neuron activations of ``layer`` at the position that predicts the answer's
    ``target`` digit ("ones" or "tens")."""
    at = (batch.ones_pos if target == "ones" else batch.tens_pos) - 1
    name = f"blocks.{layer}.mlp.hook_post"
    out = []
    for s in range(0, len(batch.prompts), batch_size):
        _, cache = model.run_with_cache(batch.tokens[s:s + batch_size].to(model.device), names_filter=name)
        out.append(cache[name][torch.arange(cache[name].shape[0]), at[s:s + batch_size]].cpu())
    return torch.cat(out)


def explained_variance(acts: Tensor, groups: Tensor) -> Tensor:
    """η²: the share of each neuron's variance explained by the mean of its group.

    acts: [n, d_mlp]; groups: [n] integer labels. Returns [d_mlp] in [0, 1] (0 for a constant neuron)."""
    groups = torch.unique(groups, return_inverse=True)[1]
    k = int(groups.max()) + 1
    count = torch.zeros(k).index_add_(0, groups, torch.ones(len(groups)))
    means = torch.zeros(k, acts.shape[1]).index_add_(0, groups, acts) / count[:, None]
    total = ((acts - acts.mean(0)) ** 2).sum(0)
    within = ((acts - means[groups]) ** 2).sum(0)
    return torch.where(total > 0, 1 - within / total.clamp_min(1e-12), torch.zeros_like(total))


@torch.no_grad()
def important_neurons(model, acts: Tensor, layer: int, k: int = 40) -> Tensor:
    """The ``k`` neurons of ``layer`` whose direct effect on the digit logits varies most over the
    sums: the spread of a neuron's activation times the size of its W_out row's effect on the
    ten digit tokens (centred over the digits)."""
    digits = [model.to_single_token(str(d)) for d in range(10)]
    effect = model.W_out[layer].cpu() @ model.W_U[:, digits].cpu()           # [d_mlp, 10]
    effect = effect - effect.mean(-1, keepdim=True)
    score = acts.std(0) * effect.norm(dim=-1)
    return score.topk(k).indices


def classify_neurons(acts: Tensor, a: Tensor, b: Tensor, neurons: Tensor, floor: float = 0.5) -> list[tuple[int, str, float]]:
    """(neuron, pattern, η²) for each neuron: the coarsest ``VARIABLES`` entry within 0.9 of the
    best; "unclassified" when even the best explains less than ``floor`` of its variance."""
    shares = torch.stack([explained_variance(acts[:, neurons], f(a, b)) for f in VARIABLES.values()])  # [var, k]
    names = list(VARIABLES)
    out = []
    for j, n in enumerate(neurons.tolist()):
        best = float(shares[:, j].max())
        if best < floor:
            out.append((n, "unclassified", best))
            continue
        i = next(i for i in range(len(names)) if shares[i, j] >= 0.9 * best)
        out.append((n, names[i], float(shares[i, j])))
    return out


def ablate_neurons(model, batch: AdditionBatch, layer: int, neurons: Tensor, mean: Tensor) -> Tensor:
    """``answer_correct`` with ``neurons`` of ``layer`` set to their mean activation ``mean [k]`` at
    every position from the first answer-predicting one on."""
    start = int((batch.tens_pos - 1).min())
    idx = neurons.to(model.device)

    def hook(post, hook):
        post = post.clone()
        post[:, start:, idx] = mean.to(post.device)
        return post
    return answer_correct(model, batch, fwd_hooks=[(f"blocks.{layer}.mlp.hook_post", hook)])
