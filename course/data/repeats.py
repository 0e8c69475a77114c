"""Repeated random token sequences: the raw material of induction heads.

A sequence of random tokens carries no information the first time; the second
time, every token can be predicted by looking back at what followed it before.
The length varies, so no fixed positional offset solves the task.
"""

from __future__ import annotations

import random

import torch


def repeated_tokens(rng: random.Random, vocab: range, min_len: int = 8, max_len: int = 40,
                    max_repeats: int = 4, max_total: int = 120) -> list[int]:
    """One training document: a random sequence repeated 2 to ``max_repeats`` times."""
    while True:
        n = rng.randint(min_len, max_len)
        reps = rng.randint(2, max_repeats)
        if n * reps <= max_total:
            seq = [rng.choice(vocab) for _ in range(n)]
            return seq * reps


def repeated_batch(n_seqs: int, seq_len: int, vocab: range, bos: int, seed: int = 0, device=None) -> torch.Tensor:
    """Evaluation batch ``[n_seqs, 1 + 2*seq_len]``: BOS, then a random sequence twice; on ``device``
    (the model's, to compare with its outputs) or the CPU. The same tokens on every device."""
    g = torch.Generator().manual_seed(seed)
    half = torch.randint(vocab.start, vocab.stop, (n_seqs, seq_len), generator=g)
    bos_col = torch.full((n_seqs, 1), bos, dtype=torch.long)
    return torch.cat([bos_col, half, half], dim=1).to(device)
