"""What the capstone computes for the student: open questions on this model to start from, and
the measurements behind the worked example."""

from __future__ import annotations

import torch

from course.patching import logit_diff, patch_heads


def _name(layer: int, head: int) -> str:
    return f"L{layer}H{head}"


@torch.no_grad()
def starting_ideas(model) -> list[dict]:
    """Open questions the toolkit answers in minutes, each with the measurement that raises it and
    a one-line hint of the technique: ``[{"question", "because", "hint"}]``."""
    from course.circuits.ioi import head_statistics, runs
    from course.data.ioi_dataset import ioi_dataset
    from course.saes import load_shipped_sae
    from course.training.evaluate import induction_measures

    ideas = []
    r = runs(model, ioi_dataset(model, "validation", n_groups=6, per_group=4, seed=5))
    stats = head_statistics(model, r)
    effect = stats["direct_effect"]
    top = divmod(int(effect.abs().argmax()), model.cfg.n_heads)
    ideas.append({"question": f"Is {_name(*top)} needed for IOI, or only large? What does it read, and from where?",
                  "because": f"it writes {float(effect[top]):+.2f} of the logit difference directly on validation "
                             f"IOI prompts (attention from the end: to S2 {float(stats['end_to_s2'][top]):.2f}, "
                             f"to IO {float(stats['end_to_io'][top]):.2f})",
                  "hint": "mean-ablate it (course.patching.patch_heads) against the other heads of its layer as a "
                          "control; path-patch into its q, k and v (course.patching.path_patch)"})
    _, scores = induction_measures(model.hf, model.tokenizer, n_seqs=10, lengths=(20, 30))
    scores[0] = 0                                  # layer 0 cannot compose: an induction head is later
    ind = divmod(int(scores.argmax()), model.cfg.n_heads)
    ideas.append({"question": f"Does {_name(*ind)} copy names from earlier in a story, not only random tokens?",
                  "because": f"its induction score on repeated random tokens is {float(scores[ind]):.2f}",
                  "hint": "build prompts where a name repeats after a token seen before it; ablate the head and "
                          "compare the loss on the repeated name with and without"})
    sae = load_shipped_sae(model)
    promote = (sae.W_dec * model.ln_final_w) @ model.W_U                          # [d_sae, d_vocab]
    f = int(promote.max(-1).values.argmax())
    token = model.to_string(int(promote[f].argmax()))
    ideas.append({"question": f"Is SAE feature {f} causal for {token!r}, or does it only predict it?",
                  "because": f"its decoder direction raises the logit of {token!r} most of any feature's "
                             f"({float(promote[f].max()):.2f} per unit of activation)",
                  "hint": "steer with it (course.saes.steering) over a sweep of scales; measure P(token) and the "
                          "KL to the clean next-token distribution, and find where text breaks"})
    return ideas


@torch.no_grad()
def head_ablation(model, head: tuple[int, int], n_groups: int = 12, per_group: int = 4, seed: int = 0) -> dict:
    """Mean-ablate ``head`` on held-out IOI prompts (test families) and, as a control, each other head
    of its layer: the mean logit difference (IO − S) clean, with the head ablated, and the controls';
    ``per_prompt`` holds the same per prompt (``[n]`` lists) for paired comparisons."""
    from course.data.ioi_dataset import ioi_dataset

    data = ioi_dataset(model, "test", n_groups=n_groups, per_group=per_group, seed=seed)
    layer = head[0]
    _, cache = model.run_with_cache(data.clean, names_filter=lambda n: n.endswith("hook_z"))
    mean_z = {layer: cache["z", layer].mean(0, keepdim=True).expand_as(cache["z", layer])}

    def ld(heads) -> list[float]:
        logits = patch_heads(model, data.clean, heads, mean_z) if heads else model(data.clean)
        return logit_diff(logits, data.end_pos, data.io_tok, data.s_tok).float().cpu().tolist()

    clean, ablated = ld([]), ld([head])
    others = [h for h in range(model.cfg.n_heads) if h != head[1]]
    controls = [ld([(layer, h)]) for h in others]
    mean = lambda xs: sum(xs) / len(xs)   # noqa: E731
    return {"head": _name(*head), "prompts": len(data.prompts), "clean": mean(clean), "ablated": mean(ablated),
            "controls": [mean(c) for c in controls], "control_heads": [_name(layer, h) for h in others],
            "per_prompt": {"clean": clean, "ablated": ablated, "controls": controls}}


def margin_over_control(found: dict) -> tuple[str, float, float]:
    """The control head with the largest mean drop, and the head's extra drop over it: its mean over
    prompts and that mean's standard error (paired, prompt by prompt)."""
    i = max(range(len(found["controls"])), key=lambda j: found["clean"] - found["controls"][j])
    diffs = [c - a for c, a in zip(found["per_prompt"]["controls"][i], found["per_prompt"]["ablated"])]
    n = len(diffs)
    m = sum(diffs) / n
    se = (sum((d - m) ** 2 for d in diffs) / (n - 1) / n) ** 0.5 if n > 1 else float("inf")
    return found["control_heads"][i], m, se


def head_ablation_report(found: dict) -> str:
    """One sentence: the drop the head causes, the drops of its layer's other heads (the control), and
    a verdict that follows from the margin over the strongest control and its standard error."""
    drop = found["clean"] - found["ablated"]
    drops = sorted(found["clean"] - c for c in found["controls"])
    share = drop / found["clean"] if found["clean"] else 0.0
    rival, margin, se = margin_over_control(found)
    if margin > 2 * se:
        verdict = (f"more than any other head of its layer: {margin:.2f} more than the next, {rival} "
                   f"(± {se:.2f}, one standard error over prompts, so the margin is over twice its error)")
    elif margin > 0:
        verdict = (f"a little more than the next head of its layer, {rival}, by {margin:.2f} ± {se:.2f} (one "
                   "standard error over prompts): under twice its error, so not clearly singled out")
    else:
        verdict = f"no more than another head of its layer ({rival}): it is not singled out"
    return (f"{found['prompts']} held-out IOI prompts: logit difference {found['clean']:.2f} clean, "
            f"{found['ablated']:.2f} with {found['head']} mean-ablated (a drop of {drop:.2f}, "
            f"{share:.0%} of it); the other heads of its layer, one at a time, drop it by "
            f"{drops[0]:.2f} to {drops[-1]:.2f}: {found['head']} drops it {verdict}")
