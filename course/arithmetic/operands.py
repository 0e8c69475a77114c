"""Which heads move which operand digits to the answer: attention, and patching one digit."""

from __future__ import annotations

import random

import torch
from torch import Tensor

from course.arithmetic.batch import AdditionBatch, addition_batch
from course.data.addition import AdditionPrompt


@torch.no_grad()
def operand_attention(model, batch: AdditionBatch) -> Tensor:
    """``[layer, head, 2, 4]``: mean attention from the positions that predict the answer's ones
    digit (row 0) and tens digit (row 1) to the four operand digits (``OPERAND_DIGITS``)."""
    names = [f"blocks.{l}.attn.hook_pattern" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(batch.tokens.to(model.device), names_filter=names)
    idx = torch.arange(len(batch.prompts))
    out = []
    for name in names:
        pattern = cache[name].cpu()                                     # [n, head, q, k]
        rows = []
        for q in (batch.ones_pos - 1, batch.tens_pos - 1):
            rows.append(pattern[idx, :, q][:, :, batch.operand_pos].mean(0))   # [head, 4]
        out.append(torch.stack(rows, 1))
    return torch.stack(out)


def _changed(p: AdditionPrompt, digit: int, rng: random.Random) -> AdditionPrompt:
    a, b = [list(divmod(p.a, 10)), list(divmod(p.b, 10))]
    which, place = divmod(digit, 2)
    nums = [a, b]
    low = 1 if place == 0 else 0
    nums[which][place] = rng.choice([d for d in range(low, 10) if d != nums[which][place]])
    return AdditionPrompt(nums[0][0] * 10 + nums[0][1], nums[1][0] * 10 + nums[1][1])


@torch.no_grad()
def digit_patching(model, prompts: list[AdditionPrompt], digit: int, target: str = "ones", seed: int = 0) -> Tensor:
    """``[layer, head]``: how much of the answer digit's change each head carries when one operand
    digit changes. Each prompt gets a partner with operand digit ``digit`` (index into
    ``OPERAND_DIGITS``) changed; the head's output at the position predicting the ``target``
    digit ("ones" or "tens") is patched from the partner into the clean run, and the score is
    the logit difference (partner's digit minus clean digit) it moves, as a share of the
    difference between the two unpatched runs (1: the head alone carries the change)."""
    rng = random.Random(seed)
    pairs = [(p, _changed(p, digit, rng)) for p in prompts]
    pairs = [(p, q) for p, q in pairs if len(str(p.a + p.b)) == len(str(q.a + q.b))
             and str(p.a + p.b)[-1 if target == "ones" else -2] != str(q.a + q.b)[-1 if target == "ones" else -2]]
    if not pairs:
        raise ValueError("no prompt pair changes that answer digit")
    clean, other = addition_batch(model, [p for p, _ in pairs]), addition_batch(model, [q for _, q in pairs])
    at = clean.ones_pos if target == "ones" else clean.tens_pos
    idx = torch.arange(len(pairs))
    good, bad = clean.tokens[idx, at], other.tokens[idx, at]
    names = [f"blocks.{l}.attn.hook_z" for l in range(model.cfg.n_layers)]
    _, cache = model.run_with_cache(other.tokens.to(model.device), names_filter=names)

    def diff(logits):
        last = logits[idx, at - 1].cpu()
        return last[idx, bad] - last[idx, good]

    base, full = diff(model(clean.tokens.to(model.device))), diff(model(other.tokens.to(model.device)))
    n, n_heads = len(pairs), model.cfg.n_heads
    out = torch.zeros(model.cfg.n_layers, n_heads)
    rows = torch.arange(n * n_heads)
    heads, q = rows // n, (at - 1).repeat(n_heads)                 # copy h of the batch patches head h
    for layer in range(model.cfg.n_layers):
        source = cache[names[layer]][idx, at - 1].repeat(n_heads, 1, 1)     # [n * heads, head, d_head]

        def patch(z, hook):
            z = z.clone()
            z[rows, q, heads] = source[rows, heads]
            return z
        logits = model.run_with_hooks(clean.tokens.repeat(n_heads, 1).to(model.device), [(names[layer], patch)])
        last = logits[rows, q].cpu()
        moved = (last[rows, bad.repeat(n_heads)] - last[rows, good.repeat(n_heads)]).reshape(n_heads, n)
        out[layer] = (moved - base).mean(1) / (full - base).mean()
    return out
