"""IOI prompts on held-out data: the families, name pairs and names that no training text used.

The model card, the evaluation and the chapters read their IOI figures from these prompts.
"""

from __future__ import annotations

import random

from course.data import ioi
from course.data.ioi_handwritten import HANDWRITTEN
from course.data.splits import ioi_split
from course.data.vocabulary import single_token_names


def held_out_ioi_prompts(tokenizer, n: int = 400, seed: int = 0, unseen_names: bool = False,
                         split: str = "test") -> list[ioi.IOIPrompt]:
    """Prompts whose intro, re-mention and ending families all come from ``split``
    ("test", "validation" or "train"), on held-out name pairs (or on names never in IOI)."""
    names = ioi_split(single_token_names(tokenizer))
    rng = random.Random(seed)
    pairs = [tuple(sorted(p)) for p in sorted(names.held_out_pairs, key=sorted)]
    prompts = []
    for _ in range(n):
        io, s = rng.sample(names.unseen_names, 2) if unseen_names else rng.sample(rng.choice(pairs), 2)
        prompts.append(ioi.ioi_prompt(rng, io, s, split))
    return prompts


def handwritten_ioi_prompts(tokenizer, seed: int = 0, per_sentence: int = 8) -> list[ioi.IOIPrompt]:
    """The hand-written sentences (course.data.ioi_handwritten), each with several held-out name pairs."""
    names = ioi_split(single_token_names(tokenizer))
    rng = random.Random(seed)
    pairs = [tuple(sorted(p)) for p in sorted(names.held_out_pairs, key=sorted)]
    prompts = []
    for sentence in HANDWRITTEN:
        for _ in range(per_sentence):
            io, s = rng.sample(rng.choice(pairs), 2)
            prompts.append(ioi.IOIPrompt(sentence.format(IO=io, S=s), io, s))
    return prompts


NAME_GROUPS = ("both kept out", "IO kept out", "S kept out", "neither")


def name_group_prompts(tokenizer, split: str = "test", n: int = 400, seed: int = 0) -> dict[str, list[ioi.IOIPrompt]]:
    """``n`` prompts on ``split``'s families for each of :data:`NAME_GROUPS`: whether IO and S
    are names kept out of IOI (any names of the group, held-out pairs or not)."""
    names = ioi_split(single_token_names(tokenizer))
    kept_out, ioi_names = list(names.unseen_names), list(names.ioi_names)
    pools = dict(zip(NAME_GROUPS, [(kept_out, kept_out), (kept_out, ioi_names), (ioi_names, kept_out),
                                   (ioi_names, ioi_names)]))
    out = {}
    for group, (io_pool, s_pool) in pools.items():
        rng, prompts = random.Random(seed), []
        while len(prompts) < n:
            io, s = rng.choice(io_pool), rng.choice(s_pool)
            if io != s:
                prompts.append(ioi.ioi_prompt(rng, io, s, split))
        out[group] = prompts
    return out
