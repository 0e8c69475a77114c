"""What chapter 6 states about its models, computed (never typed): the carry probe's best point,
the heuristic classes and what ablating each breaks, and the phases of grokking."""

from __future__ import annotations

from collections import Counter

import torch

from course.arithmetic import ablate_neurons, answer_correct, classify_neurons, grid_activations, important_neurons


def best_probe(grid: torch.Tensor, positions: list[int], within: float = 0.05) -> dict:
    """The earliest point (layer first, then position) where the carry probe comes within
    ``within`` of its best held-out accuracy anywhere."""
    best = float(grid.max())
    layer, i = next((l, i) for l in range(grid.shape[0]) for i in range(grid.shape[1]) if grid[l, i] >= best - within)
    return {"layer": layer, "position": positions[i], "accuracy": float(grid[layer, i]), "best": best,
            "by_layer": grid.max(1).values.tolist()}


def heuristic_classes(model, batch, layer: int, k: int = 40) -> dict:
    """Classify ``layer``'s ``k`` most important neurons at the position predicting the ones digit."""
    acts = grid_activations(model, batch, layer)
    neurons = important_neurons(model, acts, layer, k)
    a = torch.tensor([p.a for p in batch.prompts])
    b = torch.tensor([p.b for p in batch.prompts])
    found = classify_neurons(acts, a, b, neurons)
    return {"layer": layer, "neurons": found, "counts": Counter(c for _, c, _ in found), "mean": acts.mean(0)}


def class_ablations(model, batch, classes: dict, right=None) -> list[dict]:
    """Per class: accuracy on ``batch`` with the class's neurons mean-ablated, on carry and no-carry
    sums, and the ones digit of the result most often broken."""
    right = answer_correct(model, batch) if right is None else right
    whole = (right | ~batch.answer_mask).all(1)
    out = []
    for name in sorted({c for _, c, _ in classes["neurons"]}):
        idx = torch.tensor([n for n, c, _ in classes["neurons"] if c == name])
        after = ablate_neurons(model, batch, classes["layer"], idx, classes["mean"][idx])
        ok = (after | ~batch.answer_mask).all(1)
        broken = whole & ~ok
        ones = Counter(int(s) % 10 for s in batch.sums[broken])
        out.append({"class": name, "neurons": len(idx), "accuracy": float(ok.float().mean()),
                    "carry": float(ok[batch.carry].float().mean()), "no carry": float(ok[~batch.carry].float().mean()),
                    "broken": int(broken.sum()), "most broken ones digit": ones.most_common(1)[0][0] if ones else None})
    return out


def grokking_phases(curve: list[dict], measures: list[dict]) -> dict:
    """Memorization ends when the train loss first falls below a tenth of its start (the test loss
    is then still high); the circuit has formed at the first later checkpoint where the restricted
    loss (key frequencies only) is below a tenth of its start; cleanup ends when the test loss first
    falls below 0.1. Also: whether the weight norm falls between the circuit's formation and the end."""
    start_train, start_test = curve[0]["train_loss"], curve[0]["test_loss"]
    memorized = next(r["step"] for r in curve if r["train_loss"] < start_train / 10)
    test_then = next(r["test_loss"] for r in curve if r["step"] == memorized)
    formed = next((m["step"] for m in measures if m["step"] >= memorized
                   and m["restricted_loss"] < measures[0]["restricted_loss"] / 10), None)
    grokked = next((r["step"] for r in curve if r["test_loss"] < 0.1), None)
    norms = [m["weight_norm"] for m in measures if formed is not None and m["step"] >= formed]
    return {"memorized": memorized, "test_loss_when_memorized": test_then, "test_loss_at_start": start_test,
            "circuit_formed": formed, "grokked": grokked,
            "weight_norm_falls_after_formation": bool(norms) and norms[-1] < max(norms)}
