"""What chapter 6 states about its models, computed (never typed): the carry probe's best point,
the heuristic classes and what ablating each breaks, and the phases of grokking."""

from __future__ import annotations

from collections import Counter

import torch

from course.arithmetic import ablate_neurons, answer_correct, classify_neurons, grid_activations, important_neurons
from course.arithmetic.probe import mean_difference, set_at_digit, stream_at_digit, stream_name, written_at_digit


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


def class_ablations(model, batch, classes: dict, right=None, n_controls: int = 3, seed: int = 0) -> list[dict]:
    """Per class: accuracy on ``batch`` with the class's neurons mean-ablated, on carry and no-carry
    sums, and the ones digit of the result most often broken; and a control, the mean accuracy with
    as many of the layer's *other* neurons (not among the ranked ones) ablated, ``n_controls`` draws."""
    right = answer_correct(model, batch) if right is None else right
    whole = (right | ~batch.answer_mask).all(1)
    ranked = {n for n, _, _ in classes["neurons"]}
    others = torch.tensor([n for n in range(len(classes["mean"])) if n not in ranked])
    g = torch.Generator().manual_seed(seed)
    out = []
    for name in sorted({c for _, c, _ in classes["neurons"]}):
        idx = torch.tensor([n for n, c, _ in classes["neurons"] if c == name])
        after = ablate_neurons(model, batch, classes["layer"], idx, classes["mean"][idx])
        ok = (after | ~batch.answer_mask).all(1)
        broken = whole & ~ok
        ones = Counter(int(s) % 10 for s in batch.sums[broken])
        controls = []
        for _ in range(n_controls):
            pick = others[torch.randperm(len(others), generator=g)[:len(idx)]]
            ctrl = ablate_neurons(model, batch, classes["layer"], pick, classes["mean"][pick])
            controls.append(float((ctrl | ~batch.answer_mask).all(1).float().mean()))
        out.append({"class": name, "neurons": len(idx), "accuracy": float(ok.float().mean()),
                    "carry": float(ok[batch.carry].float().mean()), "no carry": float(ok[~batch.carry].float().mean()),
                    "broken": int(broken.sum()), "most broken ones digit": ones.most_common(1)[0][0] if ones else None,
                    "control": sum(controls) / len(controls), "clean": float(whole.float().mean())})
    return out


def ablation_verdicts(ablations: list[dict]) -> list[str]:
    """What chapter 6 concludes from :func:`class_ablations`: each class against its random control,
    and whether the classified neurons or the unclassified ones matter more."""
    lines = []
    for r in ablations:
        lost, lost_ctrl = r["clean"] - r["accuracy"], r["clean"] - r["control"]
        lines.append(f"{r['class']}: ablating its {r['neurons']} neurons costs {lost:.2f} of accuracy; as many "
                     f"other neurons of the layer cost {lost_ctrl:.2f}"
                     + (" — it matters more than a random set" if lost > lost_ctrl + 0.02 else
                        " — no more than a random set"))
    named = [r for r in ablations if r["class"] != "unclassified"]
    unnamed = next((r for r in ablations if r["class"] == "unclassified"), None)
    if named and unnamed:
        best = min(named, key=lambda r: r["accuracy"])
        if unnamed["accuracy"] < best["accuracy"]:
            lines.append(f"the unclassified neurons matter more than any named class ({unnamed['accuracy']:.2f} "
                         f"against {best['accuracy']:.2f} after ablation): the classes found here explain part "
                         f"of what this layer does, not most of it")
        else:
            lines.append(f"the named class {best['class']!r} matters more than the unclassified neurons "
                         f"({best['accuracy']:.2f} against {unnamed['accuracy']:.2f} after ablation)")
    return lines


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
            "circuit_formed": formed, "grokked": grokked, "last_step": measures[-1]["step"],
            "weight_norm_at_formation": norms[0] if norms else None,
            "weight_norm_at_end": norms[-1] if norms else None,
            # a fall of at least 5% from formation to the end: a dip on the way is not a clean-up
            "weight_norm_falls_after_formation": bool(norms) and norms[-1] < 0.95 * norms[0]}


def grokking_report(phases: dict) -> str:
    """The sentence chapter 6 prints about the phases, with the weight norm's verdict computed."""
    text = (f"memorization: train loss below a tenth of its start by step {phases['memorized']} (test loss still "
            f"{phases['test_loss_when_memorized']:.2f}); circuit formation: restricted loss below a tenth of its "
            f"start at checkpoint {phases['circuit_formed']}; cleanup: test loss below 0.1 from step "
            f"{phases['grokked']}.")
    a, b = phases["weight_norm_at_formation"], phases["weight_norm_at_end"]
    if a is None:
        return text + " The circuit never formed, so there is no clean-up to look for."
    text += f" The weight norm goes from {a:.0f} at formation to {b:.0f} at the last checkpoint ({b / a - 1:+.0%}):"
    if phases["weight_norm_falls_after_formation"]:
        return text + " it falls, as in Nanda et al.'s clean-up, where weight decay removes the memorized part."
    return text + (" it does not fall. Here the test loss drops without the fall of the weight norm that marks "
                   "Nanda et al.'s clean-up (weight decay shrinking the weights as the memorizing components go); "
                   f"training stopped at step {phases['last_step']}, so a later fall is not measured.")


def _by_carry(ok: torch.Tensor, carry: torch.Tensor) -> tuple[float, float]:
    return float(ok[carry].float().mean()), float(ok[~carry].float().mean())


def carry_switch(model, fit, choose, report, n_controls: int = 10, seed: int = 0) -> dict:
    """Switch the carry off (and on) along a direction of the stream at the position predicting the tens digit.

    That position holds a different token in two-digit answers (the space before the answer) and in
    three-digit ones (the hundreds digit), so the lines are grouped by their answer's length and each
    group gets its own direction and layer. In a group, at each layer, between its attention and its
    MLP, the carry direction is the mean stream of the group's carry sums minus that of its others (on
    ``fit``). "Off" sets each line's component along it to the mean of the no-carry sums, "on" to that
    of the carry sums. The group's layer is the one where switching off is most selective on its lines
    of ``choose`` (carry accuracy lost minus no-carry accuracy lost); everything reported is on
    ``report``, each group switched at its own layer. Controls, ``n_controls`` random directions each
    (means reported): set to their own no-carry mean (the same rule), and set to it minus the carry
    direction's gap between the means (the same push). "exact": switching off loses at least 0.5 of the
    carry sums and at most 0.05 of the others; "controls_not_selective": neither control loses more
    than 0.15 more of the carry sums than of the others. Accuracies are of whole answers, teacher-forced.
    """
    def whole(right, batch):
        return (right | ~batch.answer_mask).all(1)

    def length(batch):
        return batch.answer_mask.sum(1)

    def fitted_at(layer, digits):
        x = stream_at_digit(model, fit.select(length(fit) == digits), stream_name(model, layer, mid=True))
        carry = fit.carry[length(fit) == digits]
        d = mean_difference(x, carry)
        proj = x @ (d / d.norm())
        return {"plain": x[~carry], "direction": d, "off_value": float(proj[~carry].mean()),
                "on_value": float(proj[carry].mean())}

    def switched(setting):
        """``[n]``: whole answers of ``report`` right, each group's lines set to ``setting[digits]``,
        a (direction, value)."""
        ok = torch.zeros(len(report.prompts), dtype=torch.bool)
        for g in groups:
            rows = length(report) == g["digits"]
            part = report.select(rows)
            ok[rows] = whole(set_at_digit(model, part, g["hook"], *setting[g["digits"]]), part)
        return ok

    groups = []
    for digits in sorted(set(length(report).tolist())):
        part = choose.select(length(choose) == digits)
        clean_part = whole(answer_correct(model, part), part)
        scores, fitted = [], []
        for layer in range(model.cfg.n_layers):
            fitted.append(fitted_at(layer, digits))
            name = stream_name(model, layer, mid=True)
            after = whole(set_at_digit(model, part, name, fitted[-1]["direction"], fitted[-1]["off_value"]),
                          part)
            lost = [c - a for c, a in zip(_by_carry(clean_part, part.carry), _by_carry(after, part.carry))]
            scores.append(lost[0] - lost[1])
        layer = max(range(len(scores)), key=lambda l: scores[l])
        groups.append({"digits": digits, "layer": layer, "hook": stream_name(model, layer, mid=True),
                       "selectivity_by_layer": scores, **fitted[layer],
                       "gap": fitted[layer]["on_value"] - fitted[layer]["off_value"]})
    right = {"clean": whole(answer_correct(model, report), report),
             "off": switched({g["digits"]: (g["direction"], g["off_value"]) for g in groups}),
             "on": switched({g["digits"]: (g["direction"], g["on_value"]) for g in groups})}
    clean, switched_off, switched_on = (_by_carry(right[k], report.carry) for k in ("clean", "off", "on"))
    written = {"off": [""] * len(report.prompts), "on": [""] * len(report.prompts)}
    for g in groups:
        rows = (length(report) == g["digits"]).nonzero().flatten().tolist()
        for k in written:
            for i, w in zip(rows, written_at_digit(model, report.select(rows), g["hook"], g["direction"],
                                                g[k + "_value"])):
                written[k][i] = w

    def ten_away(s, step):
        """What a line whose sum were s + 10·step writes there: its tens digit or, where the answer's length
        changes, its first digit (95 + 10 = 105: "1")."""
        t = s + 10 * step
        return str(t)[0] if len(str(t)) != len(str(s)) else str(t)[-2]

    def moved(k, lines, step):
        """Of the ``lines`` that switch ``k`` breaks: the share that write the answer ``step`` tens away, and examples."""
        broken = (right["clean"] & ~right[k] & lines).nonzero().flatten().tolist()
        sums = [report.prompts[i].a + report.prompts[i].b for i in broken]
        hits = [written[k][i] == ten_away(s, step) for i, s in zip(broken, sums)]
        examples = [(report.prompts[i].a, report.prompts[i].b, written[k][i]) for i in broken[:3]]
        return (sum(hits) / len(hits) if hits else float("nan")), examples
    g_rand = torch.Generator().manual_seed(seed)
    same_rule, same_push = [], []
    for _ in range(n_controls):
        rule, push = {}, {}
        for g in groups:
            r = torch.randn(g["direction"].shape[0], generator=g_rand)
            own_off = float((g["plain"] @ (r / r.norm())).mean())
            rule[g["digits"]], push[g["digits"]] = (r, own_off), (r, own_off - g["gap"])
        same_rule.append(_by_carry(switched(rule), report.carry))
        same_push.append(_by_carry(switched(push), report.carry))
    mean = lambda xs: (sum(x[0] for x in xs) / len(xs), sum(x[1] for x in xs) / len(xs))   # noqa: E731
    rule, push = mean(same_rule), mean(same_push)
    carry_lost, plain_lost = clean[0] - switched_off[0], clean[1] - switched_off[1]
    selective = lambda acc: (clean[0] - acc[0]) - (clean[1] - acc[1])                     # noqa: E731
    for g in groups:
        del g["plain"]
        rows = length(report) == g["digits"]
        g.update({"lines": int(rows.sum()),
                  **{k: _by_carry(right[k][rows], report.carry[rows]) for k in ("clean", "off", "on")}})
    (short, short_examples), (over, over_examples) = moved("off", report.carry, -1), moved("on", ~report.carry, 1)
    return {"groups": groups, "clean": clean, "off": switched_off, "on": switched_on,
            "control_rule": rule, "control_push": push,
            "off_one_ten_short": short, "off_examples": short_examples,
            "on_one_ten_over": over, "on_examples": over_examples,
            "exact": carry_lost >= 0.5 and plain_lost <= 0.05,
            "controls_not_selective": max(selective(rule), selective(push)) <= 0.15}


@torch.no_grad()
def carry_writers(model, batch, group: dict) -> dict:
    """Who writes the carry direction: the stream where ``group`` (one of :func:`carry_switch`'s
    groups) switches the carry is a sum of writes (the embeddings, every head up to its layer, the
    MLPs below it, the biases); split the gap between the carry sums' and the others' mean component
    along the carry direction into each writer's share. The shares sum to 1 (the biases write the
    same on every line, so their share is 0). On ``batch``'s lines of the group's answer length."""
    lines = batch.select(batch.answer_mask.sum(1) == group["digits"])
    layer, d = group["layer"], group["direction"] / group["direction"].norm()
    names = ["hook_embed", "hook_pos_embed"] + [f"blocks.{l}.attn.hook_z" for l in range(layer + 1)] + \
            [f"blocks.{l}.hook_mlp_out" for l in range(layer)]
    _, cache = model.run_with_cache(lines.tokens.to(model.device), names_filter=lambda n: n in names)
    rows = torch.arange(len(lines.prompts))
    at = (lines.tens_pos - 1).to(model.device)
    carry = lines.carry.bool()

    def gap(x):                       # x: [n, d_model] -> the carry-minus-other gap of its component along d
        proj = x.cpu().float() @ d.float()
        return float(proj[carry].mean() - proj[~carry].mean())

    shares = {"embed": gap(cache["hook_embed"][rows, at] + cache["hook_pos_embed"][rows, at])}
    for l in range(layer + 1):
        z = cache[f"blocks.{l}.attn.hook_z"][rows, at]                                   # [n, head, d_head]
        for h in range(model.cfg.n_heads):
            shares[f"L{l}H{h}"] = gap(z[:, h] @ model.W_O[l, h])
    for l in range(layer):
        shares[f"mlp{l}"] = gap(cache[f"blocks.{l}.hook_mlp_out"][rows, at])
    total = sum(shares.values())
    ranked = sorted(shares.items(), key=lambda kv: -abs(kv[1]))
    return {"digits": group["digits"], "layer": layer, "gap": total,
            "shares": {k: v / total for k, v in ranked}, "top": ranked[0][0], "top_share": ranked[0][1] / total}


def carry_writers_line(w: dict) -> str:
    top3 = ", ".join(f"{k} {v:.2f}" for k, v in list(w["shares"].items())[:3])
    kind = "head" if w["top"].startswith("L") else "component"
    return (f"{w['digits']}-digit answers: of the gap the carry direction measures at layer {w['layer']} "
            f"({w['gap']:.2f}), the largest writers are {top3}: the {kind} {w['top']} moves "
            + ("most of the carry" if w["top_share"] >= 0.5 else "the largest part of the carry, not most of it"))


def sum_readout(model, fit, report, ridge: float = 1e-2) -> dict:
    """How well a linear readout (ridge regression, fitted on ``fit``) recovers the sum a + b from
    the stream at the position predicting the tens digit, entering each block, between the last
    block's attention and MLP ("mid"), and after the last block; mean absolute error on ``report``.

    Baselines: the mean sum (no information), and the best guess from the operands' tens digits
    alone, 10·(a₁ + b₁) + 9 (rough size without the ones digits)."""
    def target(batch):
        return batch.sums.float()

    names = [stream_name(model, l) for l in range(model.cfg.n_layers)]
    names.append(stream_name(model, model.cfg.n_layers - 1, mid=True))
    names.append(stream_name(model, model.cfg.n_layers))
    rows = []
    y_fit, y_rep = target(fit), target(report)
    streams = {}
    for key, batch in (("fit", fit), ("report", report)):
        _, cache = model.run_with_cache(batch.tokens.to(model.device), names_filter=names)
        at = (batch.tens_pos - 1).to(model.device)
        streams[key] = {n: cache[n][torch.arange(len(batch.prompts)), at].cpu().double() for n in names}
    for name in names:
        x_fit, x_rep = streams["fit"][name], streams["report"][name]
        mu, sd = x_fit.mean(0), x_fit.std(0) + 1e-6
        z_fit = torch.cat([(x_fit - mu) / sd, torch.ones(len(x_fit), 1, dtype=torch.float64)], 1)
        z_rep = torch.cat([(x_rep - mu) / sd, torch.ones(len(x_rep), 1, dtype=torch.float64)], 1)
        gram = z_fit.T @ z_fit + ridge * len(z_fit) * torch.eye(z_fit.shape[1], dtype=torch.float64)
        w = torch.linalg.solve(gram, z_fit.T @ y_fit.double())
        pred = (z_rep @ w).float()
        rows.append({"hook": name, "mae": float((pred - y_rep).abs().mean()),
                     "tens_right": float(((pred.round() // 10) == (y_rep // 10)).float().mean())})
    a1 = torch.tensor([p.a // 10 for p in report.prompts])
    b1 = torch.tensor([p.b // 10 for p in report.prompts])
    return {"rows": rows, "mean_guess_mae": float((y_rep - y_fit.mean()).abs().mean()),
            "tens_digits_mae": float((10 * (a1 + b1) + 9 - y_rep).abs().mean())}


def rough_size_verdict(mae: float, readout: dict, layer: int) -> str:
    """Whether the stream entering ``layer`` knows the sum's rough size: its readout error ``mae``
    against the two yardsticks of :func:`sum_readout` (the mean sum, the tens digits alone), with the
    margin. A rough-magnitude pathway needs at least the tens digits' own precision."""
    mean_mae, tens_mae = readout["mean_guess_mae"], readout["tens_digits_mae"]
    head = (f"entering layer {layer}, before the carry is switched there, a linear readout of the sum errs by "
            f"{mae:.1f}; yardsticks: the mean sum {mean_mae:.1f}, the tens digits alone {tens_mae:.1f}")
    if mae <= tens_mae:
        return (head + f". It beats the tens digits alone by {tens_mae - mae:.1f}: the stream knows the rough size "
                "of the sum, more than its tens digits say, before the carry arrives (a rough-magnitude pathway).")
    if mae < mean_mae:
        return (head + f". That is {mae - tens_mae:.1f} worse than the tens digits alone (and {mean_mae - mae:.1f} "
                "better than the mean): the stream holds some of the sum's size, but less than its own tens "
                "digits carry, so this is no evidence of a separate rough-magnitude pathway.")
    return head + ". No better than guessing the mean: nothing of the sum's size is linearly readable there."
