"""How good is an edit? ROME's three measures, on prompts the edit never saw.

- efficacy: the request's sentence after prefixes not used to make the edit — does the new answer win?
- generalization: the same fact in every other phrasing (the held-out one included) — does it win there?
- specificity: other countries' facts of the same relation — are their answers unchanged?
And the same country's other relations, which a good edit leaves alone too.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch

from course.data import facts
from course.editing.rome import EditRequest, prefixes, with_prefix


def request_for(country: facts.Country, relation: str, new_answer: str) -> EditRequest:
    return EditRequest(country.name, relation, new_answer, facts.fact_prompt(country, relation, 0).text)


def _first_token(model, answer: str) -> int:
    return model.tokenizer(answer, add_special_tokens=False)["input_ids"][0]


@dataclass
class EditPrompts:
    efficacy: list[str]
    generalization: list[str]
    specificity: list[tuple[str, str]]      # (prompt, its true answer)
    same_subject: list[tuple[str, str]]


def edit_prompts(model, request: EditRequest, n_other: int = 20, seed: int = 1) -> EditPrompts:
    country = next(c for c in facts.countries() if c.name == request.country)
    unseen = prefixes(model, 6, seed=seed + 1000)[1:]            # a different seed: never used by the edit
    generalization = [facts.fact_prompt(country, request.relation, p).text for p in range(1, 5)]
    generalization += [facts.fact_prompt(country, request.relation, facts.OPENER_PHRASING, o).text
                       for o in facts.VALIDATION_OPENERS]
    others = [c for c in facts.countries() if c.name != country.name]
    random.Random(seed).shuffle(others)
    spec = [facts.fact_prompt(c, request.relation, 0) for c in others[:n_other]]
    same = [facts.fact_prompt(country, r, 0) for r in facts.RELATIONS if r != request.relation]
    return EditPrompts([with_prefix(p, request.prompt) for p in unseen], generalization,
                       [(p.text, p.answer) for p in spec], [(p.text, p.answer) for p in same])


@torch.no_grad()
def _top_tokens(model, texts: list[str]) -> list[int]:
    return [int(model(t)[0, -1].argmax()) for t in texts]


@torch.no_grad()
def edit_scores(model, request: EditRequest, prompts: EditPrompts, before: dict | None = None) -> dict[str, float]:
    """Shares (0..1): efficacy and generalization (the new answer is the top token), specificity
    and same-subject (a fact the model got right before is still right)."""
    new = _first_token(model, request.new_answer)
    kept = {}
    for key in ("specificity", "same_subject"):
        pairs = getattr(prompts, key)
        now = _top_tokens(model, [t for t, _ in pairs])
        right_before = before[key] if before else [True] * len(pairs)
        ok = [n == _first_token(model, a) for n, (_, a) in zip(now, pairs)]
        kept[key] = sum(o for o, r in zip(ok, right_before) if r) / max(1, sum(right_before))
    return {"efficacy": sum(t == new for t in _top_tokens(model, prompts.efficacy)) / len(prompts.efficacy),
            "generalization": sum(t == new for t in _top_tokens(model, prompts.generalization)) / len(prompts.generalization),
            **kept}


@torch.no_grad()
def right_before(model, prompts: EditPrompts) -> dict[str, list[bool]]:
    """Which specificity and same-subject facts the unedited model gets right (only those count)."""
    return {key: [t == _first_token(model, a) for t, (_, a) in zip(_top_tokens(model, [p for p, _ in pairs]), pairs)]
            for key, pairs in (("specificity", prompts.specificity), ("same_subject", prompts.same_subject))}


def edit_requests(model, n: int = 5, relation: str = "capital", seed: int = 0) -> list:
    """``n`` edits: a country gets another country's (single-token) answer."""
    rng = random.Random(seed)
    cs = list(facts.countries())
    out = []
    while len(out) < n:
        a, b = rng.sample(cs, 2)
        new = " " + b.answer(relation)
        if len(model.tokenizer(new, add_special_tokens=False)["input_ids"]) == 1 and new != " " + a.answer(relation):
            out.append(request_for(a, relation, new))
    return out
