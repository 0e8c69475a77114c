"""Shared embedding statistics for the names kept out of IOI (``train --name-stats shared``).

Names kept out of IOI are trained only in one-person and plain sentences, so their embedding rows
drift apart from the IOI names' as a group: in every run of recipe_attempts.md their mean sits as
far from the IOI names' mean as a name sits from its own group's mean, and their rows spread
about a quarter less. With ``shared`` the trainer moves, after every optimizer step, the kept-out
rows as a block so that their mean and their mean distance from it equal the IOI names'. What
each kept-out name is (its row minus the group mean, up to one common scale) is still learned
from its own sentences only; no IOI sentence ever contains one of them.

With ``codes`` no name's row is learned on its own: every name (in IOI or kept out) is a fixed random
direction, drawn once from the seed, around a mean and at a scale that all names share and that
training does learn. A kept-out name then differs from an IOI name only in which random code it
drew, so whatever the model learns to do with names in IOI sentences it must learn for codes in
general; what it knows about one person (their likes, their recipient sentences) it has to keep
in its layers, keyed on the code.
"""
from __future__ import annotations

import torch

NAME_STATS = ("free", "shared", "codes")


def check_name_stats(choice: str, code_dim: int = 0, d_model: int | None = None) -> None:
    if choice not in NAME_STATS:
        raise ValueError(f"unknown --name-stats {choice!r}: choose one of {', '.join(NAME_STATS)}")
    if code_dim and choice != "codes":
        raise ValueError(f"--name-code-dim {code_dim} only applies with --name-stats codes (got {choice!r}); "
                         "add --name-stats codes or drop --name-code-dim")
    if code_dim < 0 or (d_model is not None and code_dim > d_model):
        raise ValueError(f"--name-code-dim must lie between 1 and the width ({d_model}), or be 0 for the whole "
                         f"width; got {code_dim}")


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


def name_codes(n: int, d_model: int, seed: int, dim: int = 0) -> torch.Tensor:
    """``[n, d_model]`` fixed random directions with mean zero and mean row norm one.

    ``dim`` > 0 draws them inside a random ``dim``-dimensional subspace. With fewer dimensions
    than training names, the names seen in IOI span the whole subspace, so whatever the model
    does *linearly* with a name's code is pinned down on every code the subspace holds, a
    kept-out name's included; with ``dim`` = 0 (the whole width, wider than the IOI names are
    many) a kept-out code is partly in directions no IOI name ever used."""
    g = torch.Generator().manual_seed(seed)
    if dim:
        basis, _ = torch.linalg.qr(torch.randn(d_model, dim, generator=g))     # [d_model, dim], orthonormal
        codes = torch.randn(n, dim, generator=g) @ basis.T
    else:
        codes = torch.randn(n, d_model, generator=g)
    codes -= codes.mean(0)
    return codes / codes.norm(dim=-1).mean()


@torch.no_grad()
def apply_codes(weight: torch.Tensor, ids: list[int], codes: torch.Tensor) -> None:
    """Set the rows ``ids`` of ``weight`` ``[vocab, d_model]`` in place to their current mean plus
    ``codes`` ``[len(ids), d_model]`` times their current mean distance from it: only the shared
    mean and scale survive an optimizer step, each name's own direction stays its code."""
    mean, spread = group_statistics(weight, ids)
    weight[ids] = mean + codes.to(weight) * spread
