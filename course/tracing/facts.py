"""The facts to trace: prompts whose answer the model gets right, with the subject's token span."""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from course.data import facts

# "In {c}, ..." for every relation: the subject comes early and several tokens follow it,
# so that where the fact is recalled (on the subject) and where it is read out (at the end)
# are different positions.
TRACE_PHRASING = 2


@dataclass
class TracedFact:
    text: str
    tokens: Tensor            # [1, pos], with BOS
    subject: tuple[int, int]  # token positions [start, end) of the subject in ``tokens``
    answer: int               # the answer's (first) token id
    country: str
    relation: str


def subject_span(model, text: str, subject: str) -> tuple[int, int]:
    """Token positions ``[start, end)`` (BOS counted) of the tokens that overlap ``subject`` in ``text``."""
    at = text.find(subject)
    if at < 0:
        raise ValueError(f"the subject {subject!r} does not occur in {text!r}.")
    offsets = model.tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    inside = [i for i, (a, b) in enumerate(offsets) if a < at + len(subject) and b > at]
    return inside[0] + 1, inside[-1] + 2


@torch.no_grad()
def known_facts(model, n: int = 30, phrasing: int = TRACE_PHRASING, seed: int = 0) -> list[TracedFact]:
    """``n`` facts (relations taken in turn, countries in a seeded order) that the model completes
    correctly: its top next token is the answer's first token."""
    rng = random.Random(seed)
    order = list(facts.countries())
    rng.shuffle(order)
    out: list[TracedFact] = []
    for i, country in enumerate(order * len(facts.RELATIONS)):
        relation = facts.RELATIONS[i % len(facts.RELATIONS)]
        p = facts.fact_prompt(country, relation, phrasing)
        tokens = model.to_tokens(p.text)
        answer = model.tokenizer(p.answer, add_special_tokens=False)["input_ids"][0]
        if int(model(tokens)[0, -1].argmax()) == answer:
            out.append(TracedFact(p.text, tokens, subject_span(model, p.text, country.name), answer,
                                  country.name, relation))
        if len(out) == n:
            break
    return out
