"""Patch or ablate the outputs of chosen attention heads.

A head's output is its ``attn.hook_z`` slice ``[batch, pos, d_head]`` (before ``W_O``,
which is linear, so replacing z replaces the head's whole contribution).
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import Tensor

Head = tuple[int, int]


def group_mean(x: Tensor, group: Tensor) -> Tensor:
    """Replace each row of ``x`` ``[batch, ...]`` by the mean of the rows in its group ``[batch]``.

    Mean ablation over prompts of one sentence shape keeps positions aligned.
    """
    out = torch.empty_like(x)
    for g in group.unique():
        rows = group == g
        out[rows] = x[rows].mean(0, keepdim=True)
    return out


def head_z_hooks(heads: Iterable[Head], source: dict[int, Tensor]) -> list:
    """Hooks that set each head's z to ``source[layer][:, :, head]`` (``source[layer]``: ``[batch, pos, head, d_head]``)."""
    by_layer: dict[int, list[int]] = {}
    for layer, head in heads:
        by_layer.setdefault(layer, []).append(head)

    def make(layer: int, hs: list[int]):
        def hook(z, hp):
            z = z.clone()
            z[:, :, hs] = source[layer][:, :, hs].to(z.dtype)
            return z
        return hook

    return [(f"blocks.{layer}.attn.hook_z", make(layer, hs)) for layer, hs in sorted(by_layer.items())]


def patch_heads(model, tokens: Tensor, heads: Iterable[Head], source: dict[int, Tensor]) -> Tensor:
    """Logits ``[batch, pos, d_vocab]`` with ``heads``' outputs taken from ``source`` (per layer z)."""
    return model.run_with_hooks(tokens, fwd_hooks=head_z_hooks(heads, source))
