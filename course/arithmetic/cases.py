"""Accuracy by case: carry or not, two- or three-digit sums, and by answer digit."""

from __future__ import annotations

import torch

from course.arithmetic.batch import AdditionBatch, answer_correct


def accuracy_by_case(model, batch: AdditionBatch, right=None) -> list[dict]:
    """One row per case: its name, count, whole-answer accuracy and accuracy of the ones and tens digits."""
    right = answer_correct(model, batch) if right is None else right
    whole = (right | ~batch.answer_mask).all(1)
    idx = torch.arange(len(batch.prompts))
    ones, tens = right[idx, batch.ones_pos], right[idx, batch.tens_pos]
    big = batch.sums >= 100
    cases = {"all": torch.ones_like(big), "no carry": ~batch.carry, "carry": batch.carry,
             "sum < 100": ~big, "sum >= 100": big}
    rows = []
    for name, m in cases.items():
        n = int(m.sum())
        rows.append({"case": name, "n": n, "accuracy": float(whole[m].float().mean()) if n else float("nan"),
                     "ones digit": float(ones[m].float().mean()) if n else float("nan"),
                     "tens digit": float(tens[m].float().mean()) if n else float("nan")})
    return rows


@torch.no_grad()
def failures(model, batch: AdditionBatch, right=None) -> list[tuple[str, str]]:
    """(line, what the model wrote) for every sum the model gets wrong, greedy-decoded."""
    right = answer_correct(model, batch) if right is None else right
    whole = (right | ~batch.answer_mask).all(1)
    out = []
    for p, ok in zip(batch.prompts, whole.tolist()):
        if not ok:
            said = model.generate(p.text, max_new_tokens=len(model.to_tokens(p.answer, prepend_bos=False)[0]))
            out.append((p.text + p.answer, said[len(p.text):]))
    return out
