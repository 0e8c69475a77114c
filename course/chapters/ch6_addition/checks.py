"""Checks for chapter 6, "Addition circuits".

    from course.chapters.ch6_addition import checks as check
    check.answer_right(answer_right)
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch

from course.checks.core import Case, Exercise, exercise_functions
from course.data.addition import AdditionPrompt

CHAPTER = "ch6_addition"


@lru_cache(maxsize=4)
def _lines(model, hidden: bool):
    from course.arithmetic import addition_batch

    pairs = [(97, 88), (12, 19), (55, 45), (23, 41), (99, 99)] if hidden else [(36, 59), (10, 10), (64, 47), (81, 30)]
    batch = addition_batch(model, [AdditionPrompt(a, b) for a, b in pairs])
    with torch.no_grad():
        logits, cache = model.run_with_cache(batch.tokens.to(model.device),
                                             names_filter=lambda n: n.endswith("hook_pattern"))
    return batch, logits.cpu(), {l: cache["pattern", l].cpu() for l in range(model.cfg.n_layers)}


def _right_cases(model, hidden):
    batch, logits, _ = _lines(model, hidden)
    g = torch.Generator().manual_seed(3 if hidden else 2)
    noisy = logits + 4 * torch.randn(logits.shape, generator=g)          # some answers may turn wrong
    # Lines whose written answer has its first digit changed: the model's prediction is then
    # wrong at one digit and right at the others, however sure the model is.
    digits = torch.tensor([model.to_single_token(str(d)) for d in range(10)])   # beside batch.tokens, on the CPU
    altered = batch.tokens.clone()
    first = batch.answer_mask.float().argmax(-1)                          # each line's first answer digit
    rows = torch.arange(0, len(altered), 2)
    now = (altered[rows, first[rows]][:, None] == digits).float().argmax(-1)
    altered[rows, first[rows]] = digits[(now + 1 + int(hidden)) % 10]
    return [Case("the model's own logits", (logits, batch.tokens, batch.answer_mask)),
            Case("noisy logits (some digits wrong)", (noisy, batch.tokens, batch.answer_mask)),
            Case("every other line's first answer digit changed", (logits, altered, batch.answer_mask)),
            # The same top tokens, but flat: no digit above probability 0.5, so only the argmax is right.
            Case("the model's logits divided by 20 (the same top tokens, all below p = 0.5)",
                 (logits / 20, batch.tokens, batch.answer_mask))]


def _right_by_threshold(logits, tokens, answer_mask):
    p = logits[:, :-1].softmax(-1).gather(-1, tokens[:, 1:, None])[..., 0]
    return ((p > 0.5) | ~answer_mask[:, 1:]).all(-1)


def _attention_cases(model, hidden):
    batch, _, patterns = _lines(model, hidden)
    last = model.cfg.n_layers - 1
    return [Case(f"layer {l}, query before the ones digit", (patterns[l], batch.ones_pos - 1, batch.operand_pos))
            for l in ([last, 0] if hidden else [0, last])] + \
        [Case("query before the tens digit, two keys", (patterns[0], batch.tens_pos - 1, batch.operand_pos[:2]))]


def _component_cases(model, hidden):
    g = torch.Generator().manual_seed(13 if hidden else 12)
    return [Case("x [4, 6], a unit direction, value 0", (torch.randn(4, 6, generator=g), torch.eye(6)[2], 0.0)),
            Case("x [2, 3, 8], a long direction, value 1.5", (torch.randn(2, 3, 8, generator=g),
                                                              3 * torch.randn(8, generator=g), 1.5))]


def _direction_cases(model, hidden):
    g = torch.Generator().manual_seed(43 if hidden else 42)
    carry = torch.rand(50, generator=g) < 0.4
    x = torch.randn(50, 8, generator=g) + 2.0 * carry[:, None].float() * torch.eye(8)[1 if hidden else 3]
    batch, _, _ = _lines(model, hidden)
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.tokens.to(model.device), names_filter="blocks.0.hook_resid_pre")
    stream = cache["blocks.0.hook_resid_pre"][torch.arange(len(batch.prompts)), batch.tens_pos - 1].cpu()
    return [Case("x [50, 8], a planted carry direction", (x, carry)),
            Case("the model's stream before the tens digit", (stream, batch.carry))]


def _variance_cases(model, hidden):
    g = torch.Generator().manual_seed(23 if hidden else 22)
    a = torch.randint(10, 100, (300,), generator=g)
    acts = torch.randn(300, 5, generator=g)
    acts[:, 0] += (a % 10).float()                     # a neuron that reads the ones digit
    acts[:, 3] = 2.0                                   # a dead neuron
    return [Case("groups = a's ones digit (unnumbered labels)", (acts, a % 10 + 7)),
            Case("groups = tens of a", (acts, a // 10)),
            Case("every row its own group", (acts[:20], torch.arange(20)))]


def _basis_cases(model, hidden):
    return [Case(f"p = {p}", (p,)) for p in ([7, 113] if hidden else [5, 11, 113])]


def _wave_cases(model, hidden):
    g = torch.Generator().manual_seed(33 if hidden else 32)
    p = 13 if hidden else 11
    a = torch.arange(p)
    s = (a[:, None] + a[None, :]).float()
    c = torch.arange(4).float()
    waves = torch.cos(2 * math.pi * 3 * (s[:, :, None] - c) / p) + 0.3 * torch.randn(p, p, 4, generator=g)
    return [Case(f"p = {p}, waves at k = 3 plus noise, freqs [3]", (waves, [3])),
            Case(f"p = {p}, random logits, freqs [1, 4]", (torch.randn(p, p, 5, generator=g), [1, 4]))]


# -- likely mistakes ------------------------------------------------------------------------

def _right_without_shift(logits, tokens, answer_mask):
    return ((logits.argmax(-1) == tokens) | ~answer_mask).all(-1)


def _right_any_digit(logits, tokens, answer_mask):
    return ((logits[:, :-1].argmax(-1) == tokens[:, 1:]) & answer_mask[:, 1:]).any(-1)


def _attention_from_keys(pattern, query, keys):
    idx = torch.arange(pattern.shape[0])
    return pattern[idx, :, :, query][:, :, keys].mean(0)


def _component_removed(x, direction, value):
    u = direction / direction.norm()
    return x - (x @ u)[..., None] * u


def _component_unnormalized(x, direction, value):
    return x + (value - x @ direction)[..., None] * direction


def _direction_reversed(x, carry):
    return x[~carry].mean(0) - x[carry].mean(0)


def _direction_from_overall_mean(x, carry):
    return x[carry].mean(0) - x.mean(0)


def _variance_within(acts, groups):
    ids = torch.unique(groups, return_inverse=True)[1]
    k = int(ids.max()) + 1
    count = torch.zeros(k).index_add_(0, ids, torch.ones(len(ids)))
    means = torch.zeros(k, acts.shape[1]).index_add_(0, ids, acts) / count[:, None]
    total = (acts - acts.mean(0)).pow(2).sum(0)
    return torch.where(total > 0, (acts - means[ids]).pow(2).sum(0) / total.clamp_min(1e-12), torch.zeros_like(total))


def _basis_unnormalized(p):
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(2 * math.pi * k * x / p), torch.sin(2 * math.pi * k * x / p)]
    return torch.stack(rows).float()


def _basis_degrees(p):
    x = torch.arange(p, dtype=torch.float64)
    rows = [torch.ones(p, dtype=torch.float64)]
    for k in range(1, p // 2 + 1):
        rows += [torch.cos(k * x / p), torch.sin(k * x / p)]
    b = torch.stack(rows)
    return (b / b.norm(dim=1, keepdim=True)).float()


def _waves_cos_only(logits, freqs):
    p = logits.shape[0]
    a = torch.arange(p, dtype=torch.float64)
    s = a[:, None] + a[None, :]
    out = torch.zeros_like(logits)
    for k in freqs:
        wave = torch.cos(2 * math.pi * k * s / p)
        wave = (wave / wave.norm()).float()
        out += wave[:, :, None] * torch.einsum("ab,abc->c", wave, logits)
    return out


EXERCISES = {ex.name: ex for ex in [
    Exercise(CHAPTER, "answer_right", _right_cases, atol=0, rtol=0, causes=[
        # First: on flat logits a threshold and a missing shift both say "all wrong"; the
        # threshold is the one that passes the confident cases before.
        (_right_by_threshold, "a digit is right when it is the model's top token (argmax), whatever its "
                              "probability; you asked for p > 0.5."),
        (_right_without_shift, "the logits at a position predict the *next* token: compare logits[:, :-1] with "
                               "tokens[:, 1:]."),
        (_right_any_digit, "a sum is right only when *every* answer digit is; you counted one right digit as enough.")]),
    Exercise(CHAPTER, "attention_to", _attention_cases, atol=1e-5, rtol=1e-5, causes=[
        (_attention_from_keys, "query and key are swapped: pattern[batch, head, query, key] — pick the query's row, "
                               "then the keys' columns.")]),
    Exercise(CHAPTER, "set_component", _component_cases, atol=1e-5, rtol=1e-5, causes=[
        (_component_removed, "you removed the component; it should be *set* to value (add value·u back)."),
        (_component_unnormalized, "the direction was not normalized to unit length first.")]),
    Exercise(CHAPTER, "carry_direction", _direction_cases, atol=1e-5, rtol=1e-5, causes=[
        (_direction_reversed, "the direction points the wrong way: carry mean minus no-carry mean, not the reverse."),
        (_direction_from_overall_mean, "subtract the mean of the *no-carry* rows, not the mean of all rows.")]),
    Exercise(CHAPTER, "explained_variance", _variance_cases, atol=1e-4, rtol=1e-4, causes=[
        (_variance_within, "that is the share left *unexplained* (within groups); η² is one minus it.")]),
    Exercise(CHAPTER, "fourier_basis", _basis_cases, atol=1e-5, rtol=1e-4, causes=[
        (_basis_unnormalized, "the rows are not unit length: divide each by its norm."),
        (_basis_degrees, "the frequency is w = 2πk/p; the 2π is missing.")]),
    Exercise(CHAPTER, "project_sum_waves", _wave_cases, atol=1e-4, rtol=1e-4, causes=[
        (_waves_cos_only, "only the cos waves: the sin(w(a + b)) direction of each frequency belongs too.")]),
]}

globals().update(exercise_functions(EXERCISES))
