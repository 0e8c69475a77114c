"""Key–value agreement (Geva et al. 2021): does a neuron's value promote the token that
actually follows the contexts that make it fire?"""

from __future__ import annotations

import torch
from torch import Tensor

from course.neurons.values import value_logits


def next_token_agreement(acts: Tensor, tokens: Tensor, values: Tensor, k_contexts: int = 10,
                         k_tokens: int = 10) -> Tensor:
    """``[d_mlp]``: for each neuron, the share of its ``k_contexts`` top contexts (last position
    excluded: nothing follows it) whose next token is among its value's ``k_tokens`` top tokens.

    ``acts [row, pos, d_mlp]``, ``tokens [row, pos]``, ``values [d_mlp, d_vocab]``.
    """
    rows, pos, d_mlp = acts.shape
    scores = acts[:, :-1].reshape(-1, d_mlp)                             # [row * (pos-1), d_mlp]
    following = tokens[:, 1:].reshape(-1).to(acts.device)                 # the next token of each
    top = scores.topk(k_contexts, dim=0).indices                          # [k_contexts, d_mlp]
    promoted = values.topk(k_tokens, dim=-1).indices.to(acts.device)      # [d_mlp, k_tokens]
    hits = (following[top].T[:, :, None] == promoted[:, None, :]).any(-1)  # [d_mlp, k_contexts]
    return hits.float().mean(-1)


@torch.no_grad()
def agreement_by_layer(model, acts: Tensor, tokens: Tensor, k_contexts: int = 10, k_tokens: int = 10,
                       seed: int = 0, n_null: int = 1) -> dict[str, list[float]]:
    """Mean agreement per layer against chance: the same measure with each neuron given another
    neuron's value (of the same layer, a random permutation), ``n_null`` times.

    ``acts [layer, row, pos, d_mlp]``. Returns per layer ``agreement``, ``baseline`` (the
    shuffles' mean), ``null_high`` (their 95th percentile) and ``p_value`` (the share of shuffles,
    counting the real pairing, that reach the real agreement: a permutation test).
    """
    g = torch.Generator().manual_seed(seed)
    out = {"agreement": [], "baseline": [], "null_high": [], "p_value": []}
    for layer in range(acts.shape[0]):
        values = value_logits(model, layer).cpu()
        real = float(next_token_agreement(acts[layer], tokens.cpu(), values, k_contexts, k_tokens).mean())
        null = torch.tensor([float(next_token_agreement(acts[layer], tokens.cpu(),
                                                        values[torch.randperm(values.shape[0], generator=g)],
                                                        k_contexts, k_tokens).mean()) for _ in range(n_null)])
        out["agreement"].append(real)
        out["baseline"].append(float(null.mean()))
        out["null_high"].append(float(null.quantile(0.95)))
        out["p_value"].append(float((1 + (null >= real).sum()) / (1 + n_null)))
    return out
