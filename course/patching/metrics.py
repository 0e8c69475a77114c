"""What patching experiments measure."""

from __future__ import annotations

import torch
from torch import Tensor


def logit_diff(logits: Tensor, end_pos: Tensor, good: Tensor, bad: Tensor) -> Tensor:
    """logit(good) − logit(bad) at each prompt's ``end_pos``: ``[batch]``.

    logits: ``[batch, pos, d_vocab]``; end_pos, good, bad: ``[batch]`` integer tensors.
    """
    rows = torch.arange(logits.shape[0], device=logits.device)
    last = logits[rows, end_pos]
    return last[rows, good] - last[rows, bad]


def normalized(value: Tensor | float, clean: Tensor | float, corrupt: Tensor | float) -> Tensor | float:
    """0 where ``value`` equals the corrupted run's metric, 1 where it equals the clean run's."""
    return (value - corrupt) / (clean - corrupt)
