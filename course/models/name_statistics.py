"""Shared embedding statistics for the names kept out of IOI (``train --name-stats shared``).

Names kept out of IOI are trained only in one-person and plain sentences, so their embedding rows
drift apart from the IOI names' as a group: in every run of recipe_attempts.md their mean sits as
far from the IOI names' mean as a name sits from its own group's mean, and their rows spread
about a quarter less. With ``shared`` the trainer moves, after every optimizer step, the kept-out
rows as a block so that their mean and their mean distance from it equal the IOI names'. What
each kept-out name is (its row minus the group mean, up to one common scale) is still learned
from its own sentences only; no IOI sentence ever contains one of them.
"""
from __future__ import annotations

import torch

NAME_STATS = ("free", "shared")


def check_name_stats(choice: str) -> None:
    if choice not in NAME_STATS:
        raise ValueError(f"unknown --name-stats {choice!r}: choose one of {', '.join(NAME_STATS)}")


def name_token_ids(tokenizer, names) -> list[int]:
    """The token id of each name with its leading space (every course name is one token)."""
    ids = []
    for name in names:
        toks = tokenizer(" " + name, add_special_tokens=False)["input_ids"]
        if len(toks) != 1:
            raise ValueError(f"name {name!r} is {len(toks)} tokens; only one-token names can share statistics")
        ids.append(toks[0])
    return ids


def group_statistics(weight: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean row ``[d_model]`` and mean distance of the rows from it (a scalar) of ``weight[ids]``."""
    rows = weight[ids]
    mean = rows.mean(0)
    return mean, (rows - mean).norm(dim=-1).mean()


@torch.no_grad()
def share_statistics(weight: torch.Tensor, reference_ids: list[int], moved_ids: list[int]) -> None:
    """Move the rows ``moved_ids`` of ``weight`` ``[vocab, d_model]`` in place, as one block, so that
    their mean and mean spread equal those of the rows ``reference_ids``."""
    ref_mean, ref_spread = group_statistics(weight, reference_ids)
    mean, spread = group_statistics(weight, moved_ids)
    weight[moved_ids] = ref_mean + (weight[moved_ids] - mean) * (ref_spread / spread.clamp_min(1e-8))
