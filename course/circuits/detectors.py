"""Head detectors: how much each head attends to the previous token, itself, or the first token."""

from __future__ import annotations

import torch
from torch import Tensor

DETECTORS = ("previous", "current", "first")


def detector_scores(pattern: Tensor) -> Tensor:
    """``pattern [batch, head, q, k]`` -> ``[3, head]``: mean attention from each query
    position q >= 1 to q - 1 (previous), to q (current) and to position 0 (first)."""
    n = pattern.shape[-1]
    q = torch.arange(1, n, device=pattern.device)
    prev = pattern[..., q, q - 1].mean((0, -1))
    cur = pattern[..., q, q].mean((0, -1))
    first = pattern[..., q, 0].mean((0, -1))
    return torch.stack([prev, cur, first])


@torch.no_grad()
def all_detector_scores(model, prompts: list[str]) -> Tensor:
    """``[3, layer, head]`` averaged over the prompts (each run on its own: no padding)."""
    total = 0
    for text in prompts:
        _, cache = model.run_with_cache(text, names_filter=lambda n: n.endswith("hook_pattern"))
        total = total + torch.stack([detector_scores(cache["pattern", l]) for l in range(model.cfg.n_layers)], 1)
    return total / len(prompts)


def induction_scores(pattern: Tensor, seq_len: int) -> Tensor:
    """``pattern [batch, head, q, k]`` of a sequence repeated after BOS (``1 + 2 seq_len`` tokens)
    -> ``[head]``: mean attention from each token of the repeat to the token after its first
    occurrence (the diagonal ``seq_len - 1`` below the main one, in the second half)."""
    second = pattern[..., seq_len + 1:2 * seq_len + 1, :]                  # [batch, head, seq_len, k]
    return second.diagonal(offset=2, dim1=-2, dim2=-1)[..., :seq_len].mean((0, -1))
