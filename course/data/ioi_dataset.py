"""An IOI dataset for circuit work: clean prompts, their "ABC" counterparts, and positions.

Prompts come in *groups*: one sentence shape (:class:`course.data.ioi.Template`, with
its places and objects fixed) filled with several name pairs, in both name orders.
Names are single tokens, so a group's prompts have equal token lengths and their
positions line up; that is what mean ablation over a group needs.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from course.data import ioi
from course.data.splits import ioi_split
from course.data.vocabulary import single_token_names


@dataclass
class IOIDataset:
    """``n`` prompts. Token tensors are ``[n, pos]`` (right-padded); index tensors ``[n]``.

    - ``clean``: the IOI prompts; ``abc``: the same with a third name at S2;
    - ``io_tok``, ``s_tok``: the answer and the repeated name (with a leading space);
    - ``io_pos``, ``s1_pos``, ``s2_pos``, ``end_pos``: where IO, S's first and second
      mention, and the last token are in ``clean`` (the same places in ``abc``);
    - ``group``: which sentence shape each prompt belongs to.
    """

    prompts: list[ioi.IOIPrompt]
    clean: Tensor
    abc: Tensor
    io_tok: Tensor
    s_tok: Tensor
    io_pos: Tensor
    s1_pos: Tensor
    s2_pos: Tensor
    end_pos: Tensor
    group: Tensor

    def __len__(self) -> int:
        return len(self.prompts)

    def to(self, device) -> "IOIDataset":
        for k, v in vars(self).items():
            if isinstance(v, Tensor):
                setattr(self, k, v.to(device))
        return self


def _positions(row: list[int], tok: int, *alternatives: int) -> list[int]:
    return [i for i, t in enumerate(row) if t == tok or t in alternatives]


def ioi_dataset(model, split: str = "test", n_groups: int = 24, per_group: int = 8, seed: int = 0,
                unseen_names: bool = False) -> IOIDataset:
    """IOI prompts from ``split``'s families ("train", "validation", "test").

    Each of ``n_groups`` sentence shapes gets ``per_group`` name triples (IO, S, and C for
    the ABC prompt), IO first in half of them. Names: held-out pairs' names, or names
    never seen in IOI (``unseen_names``).
    """
    tok = model.tokenizer
    names = ioi_split(single_token_names(tok))
    pool = list(names.unseen_names if unseen_names else names.ioi_names)
    rng = random.Random(seed)
    prompts, abc_prompts, groups = [], [], []
    for g in range(n_groups):
        template = ioi.random_template(rng, split, middle=rng.random() < 0.3)
        for i in range(per_group):
            io, s, c = rng.sample(pool, 3)
            io_first = i % 2 == 0
            prompts.append(ioi.render(template, io, s, io_first))
            abc_prompts.append(ioi.render(template, io, s, io_first, s2=c))
            groups.append(g)
    clean = model.to_tokens([p.text for p in prompts])
    abc = model.to_tokens([p.text for p in abc_prompts])
    cols = {k: [] for k in ("io_tok", "s_tok", "io_pos", "s1_pos", "s2_pos", "end_pos")}
    for p, row in zip(prompts, clean.tolist()):
        io_t, s_t = model.to_single_token(" " + p.io), model.to_single_token(" " + p.s)
        # A name that starts the text has no leading space: match that token as well.
        io_bare, s_bare = model.to_single_token(p.io), model.to_single_token(p.s)
        length = len(tok(p.text, add_special_tokens=False)["input_ids"]) + 1
        io_at, s_at = _positions(row[:length], io_t, io_bare), _positions(row[:length], s_t, s_bare)
        if len(io_at) != 1 or len(s_at) != 2:
            raise ValueError(f"IOI prompt without one IO and two S tokens: {p.text!r}")
        cols["io_tok"].append(io_t)
        cols["s_tok"].append(s_t)
        cols["io_pos"].append(io_at[0])
        cols["s1_pos"].append(s_at[0])
        cols["s2_pos"].append(s_at[1])
        cols["end_pos"].append(length - 1)
    as_tensor = {k: torch.tensor(v, device=clean.device) for k, v in cols.items()}
    return IOIDataset(prompts, clean, abc, group=torch.tensor(groups, device=clean.device), **as_tensor)
