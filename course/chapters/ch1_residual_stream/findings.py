"""Claims chapter 1 makes about the course model, computed from the model itself.

Each function returns the numbers the chapter prints and the tests assert; none is
typed in anywhere.
"""

from __future__ import annotations

import random

import torch

from course.data import facts, ioi
from course.data.splits import ioi_split
from course.data.vocabulary import single_token_names


@torch.no_grad()
def fact_emergence(model, relation: str = "capital", phrasing: int = 0) -> dict[str, float]:
    """Share of facts whose answer first becomes the logit lens's top token at each depth.

    Keys: the depth labels ("embed", "before L1", ..., "output") and "never".
    """
    prompts = [facts.fact_prompt(c, relation, phrasing) for c in facts.countries()]
    labels = ["embed"] + [f"before L{i}" for i in range(1, model.cfg.n_layers)] + ["output"]
    names = [f"blocks.{i}.hook_resid_pre" for i in range(model.cfg.n_layers)]
    names.append(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")
    tokens = model.to_tokens([p.text for p in prompts])               # right-padded; causal, so harmless
    last = torch.tensor([len(model.to_str_tokens(p.text)) - 1 for p in prompts])
    _, cache = model.run_with_cache(tokens, names_filter=names)
    resid = cache.accumulated_resid()[:, torch.arange(len(prompts)), last]  # [depth, fact, d_model]
    top = (cache.apply_ln_final(resid) @ model.W_U).argmax(-1)             # [depth, fact]
    want = torch.tensor([model.tokenizer(p.answer, add_special_tokens=False)["input_ids"][0] for p in prompts])
    hit = top == want.to(top.device)
    first = torch.where(hit.any(0), hit.float().argmax(0), len(labels))    # first depth with a hit
    counts = torch.bincount(first.cpu(), minlength=len(labels) + 1)
    return {k: float(v) / len(prompts) for k, v in zip(labels + ["never"], counts)}


def ioi_batch(model, n_prompts: int, seed: int = 0):
    """IOI prompts of one sentence shape (so equal lengths): (tokens, answer ids, counterfactual ids)."""
    rng = random.Random(seed)
    names = ioi_split(single_token_names(model.tokenizer)).ioi_names
    shape = ioi.random_template(rng, "train", middle=False)
    prompts = [ioi.render(shape, *rng.sample(names, 2), io_first=i % 2 == 0) for i in range(n_prompts)]
    tokens = model.to_tokens([p.text for p in prompts])
    answer = torch.tensor([model.to_single_token(p.answer) for p in prompts], device=model.device)
    counter = torch.tensor([model.to_single_token(p.distractor) for p in prompts], device=model.device)
    return tokens, answer, counter


def _ioi_template_batch(model, template, names, n: int, rng: random.Random):
    """``n`` prompts of one held-out sentence shape: (tokens, IO ids, S ids, and ``[n, pos]`` masks of
    every position holding IO, and S)."""
    prompts = [ioi.render(template, *rng.sample(names, 2), io_first=i % 2 == 0) for i in range(n)]
    tokens = model.to_tokens([p.text for p in prompts])
    answer = torch.tensor([model.to_single_token(p.answer) for p in prompts])
    counter = torch.tensor([model.to_single_token(p.distractor) for p in prompts])
    # A name at the start of a sentence is another token (no leading space): find it by its text.
    words = [[w.strip() for w in model.to_str_tokens(row)] for row in tokens]
    at_io = torch.tensor([[x == p.io for x in w] for w, p in zip(words, prompts)])
    at_s = torch.tensor([[x == p.s for x in w] for w, p in zip(words, prompts)])
    return tokens, answer, counter, at_io, at_s


def _interval(values: torch.Tensor) -> tuple[float, float, float]:
    """Mean and a 95% interval for it (normal approximation over prompts)."""
    mean = float(values.mean())
    half = 1.96 * float(values.std()) / len(values) ** 0.5
    return mean, mean - half, mean + half


@torch.no_grad()
def ioi_attribution_intervals(model, n_templates: int = 8, per_template: int = 24, seed: int = 0,
                              split: str = "test", n_top_heads: int = 2) -> dict:
    """Direct logit attribution of IO vs S, per component and per head, over held-out prompts.

    The prompts come from ``n_templates`` sentence shapes of the ``split`` families (``"test"``:
    families the model never trained on and that chose no checkpoint), ``per_template`` each, with
    names the model saw in IOI. Each component's contribution is averaged over the prompts with a
    95% interval; a component pushes *towards* or *against* the answer only where its whole interval
    is on that side of 0. For the ``n_top_heads`` heads with the largest push, also: their attention
    from the last position to IO and to S (all its mentions), and how their write splits into raising
    logit(IO) and lowering logit(S).
    """
    rng = random.Random(seed)
    names = ioi_split(single_token_names(model.tokenizer)).ioi_names
    name_ids = torch.tensor([model.to_single_token(" " + n) for n in names])
    w_name = model.W_U[:, name_ids.to(model.W_U.device)].mean(1)                         # [d_model]
    comp_rows, head_rows, ld_rows, io_w, s_w, att_io, att_s = [], [], [], [], [], [], []
    templates = []
    while len(templates) < n_templates:
        t = ioi.random_template(rng, split)
        if t not in templates:
            templates.append(t)
    for t in templates:
        tokens, answer, counter, p_io, p_s = _ioi_template_batch(model, t, names, per_template, rng)
        logits, cache = model.run_with_cache(tokens)
        rows = torch.arange(len(answer))
        ld_rows.append((logits[rows, -1, answer] - logits[rows, -1, counter]).cpu())
        w_io, w_s = model.W_U[:, answer].T, model.W_U[:, counter].T                      # [batch, d_model]
        parts, labels = cache.decompose_resid(pos=-1, return_labels=True)
        parts = cache.apply_ln_to_stack(parts, pos=-1)
        comp_rows.append(((parts * (w_io - w_s)).sum(-1)).cpu())                         # [comp, batch]
        heads, head_labels = cache.stack_head_results(pos=-1, return_labels=True)
        heads = cache.apply_ln_to_stack(heads, pos=-1)
        head_rows.append(((heads * (w_io - w_s)).sum(-1)).cpu())                         # [head, batch]
        io_w.append((heads * (w_io - w_name)).sum(-1).cpu())                             # vs a typical name
        s_w.append((heads * (w_s - w_name)).sum(-1).cpu())
        pattern = torch.stack([cache["pattern", layer][:, :, -1] for layer in range(model.cfg.n_layers)], 1)
        pattern = pattern.flatten(1, 2).cpu()                                            # [batch, head, key]
        att_io.append((pattern * p_io[:, None].float()).sum(-1).T)                     # [head, batch]
        att_s.append((pattern * p_s[:, None].float()).sum(-1).T)
    comps, heads_ = torch.cat(comp_rows, 1), torch.cat(head_rows, 1)
    io_w, s_w = torch.cat(io_w, 1), torch.cat(s_w, 1)
    att_io, att_s = torch.cat(att_io, 1), torch.cat(att_s, 1)

    def table(values, labels):
        out = {}
        for lab, v in zip(labels, values):
            mean, lo, hi = _interval(v)
            out[lab] = {"mean": mean, "low": lo, "high": hi, "share_negative": float((v < 0).float().mean()),
                        "spread": float(v.std())}
        return out

    components, heads = table(comps, labels), table(heads_, head_labels)
    top = sorted(heads, key=lambda h: -heads[h]["mean"])[:n_top_heads]
    # Measured against the mean unembedding of the IOI names, so "raises IO" and "lowers S" are
    # relative to a typical name, not to the head's write along directions every name shares.
    top_heads = {}
    for h in top:
        i = head_labels.index(h)
        top_heads[h] = {"attention_to_io": float(att_io[i].mean()), "attention_to_s": float(att_s[i].mean()),
                        "raises_io": float(io_w[i].mean()), "lowers_s": float(-s_w[i].mean())}
    top_component = max(components, key=lambda c: components[c]["mean"])
    return {
        "n_prompts": comps.shape[1], "n_templates": n_templates, "split": split,
        "logit_diff": _interval(torch.cat(ld_rows)),
        "components": components, "heads": heads,
        "top_component": top_component, "top_heads": top_heads,
        "towards_components": [c for c, r in components.items() if r["low"] > 0],
        "against_components": [c for c, r in components.items() if r["high"] < 0],
        "against_heads": [h for h, r in heads.items() if r["high"] < 0],
        "unclear_components": [c for c, r in components.items() if r["low"] <= 0 <= r["high"]],
    }


@torch.no_grad()
def fact_rank_curve(model, relation: str = "capital", phrasing: int = 0) -> dict:
    """What the logit lens sees of every fact at each depth.

    For every invented country's fact prompt, at each depth ("embed", "before L1", ..., "output"):
    the rank of the answer among all tokens (0 = top), and whether the lens's top token is the
    prompt's own last token. Returns ``{"depths": [...], "median_rank": [...], "answer_on_top":
    [...], "top_is_last_token": [...], "last_token": str, "d_vocab": int}`` (shares over facts).
    """
    prompts = [facts.fact_prompt(c, relation, phrasing) for c in facts.countries()]
    labels = ["embed"] + [f"before L{i}" for i in range(1, model.cfg.n_layers)] + ["output"]
    names = [f"blocks.{i}.hook_resid_pre" for i in range(model.cfg.n_layers)]
    names.append(f"blocks.{model.cfg.n_layers - 1}.hook_resid_post")
    tokens = model.to_tokens([p.text for p in prompts])
    rows = torch.arange(len(prompts))
    last = torch.tensor([len(model.to_str_tokens(p.text)) - 1 for p in prompts])
    _, cache = model.run_with_cache(tokens, names_filter=names)
    resid = cache.accumulated_resid()[:, rows, last]                              # [depth, fact, d_model]
    logits = cache.apply_ln_final(resid) @ model.W_U                              # [depth, fact, vocab]
    want = torch.tensor([model.tokenizer(p.answer, add_special_tokens=False)["input_ids"][0] for p in prompts])
    want = want.to(logits.device)
    answer_logit = logits[:, rows, want]                                          # [depth, fact]
    rank = (logits > answer_logit[..., None]).sum(-1).float().cpu()
    top = logits.argmax(-1).cpu()
    last_tokens = tokens.cpu()[rows, last]
    return {"depths": labels, "median_rank": rank.median(1).values.tolist(),
            "answer_on_top": (rank == 0).float().mean(1).tolist(),
            "top_is_last_token": (top == last_tokens).float().mean(1).tolist(),
            "last_token": model.to_string(last_tokens[:1]), "d_vocab": int(logits.shape[-1]),
            "n_facts": len(prompts)}


def _signed(r: dict) -> str:
    return f"{r['mean']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]"


def attribution_report(summary: dict) -> list[str]:
    """The lines chapter 1 prints for :func:`ioi_attribution_intervals`: a table with intervals, the
    components and heads whose interval is on one side of 0, and what the top heads do."""
    ld, ld_lo, ld_hi = summary["logit_diff"]
    comps, heads = summary["components"], summary["heads"]
    lines = [f"{summary['n_prompts']} held-out prompts ({summary['n_templates']} sentence shapes from the "
             f"{summary['split']} families): mean logit difference {ld:.2f} [{ld_lo:.2f}, {ld_hi:.2f}]",
             f"{'component':<10s} {'mean [95% interval]':>24s}  negative on",
             *[f"{c:<10s} {_signed(r):>24s}  {r['share_negative']:.0%} of prompts" for c, r in comps.items()]]
    towards = ", ".join(f"{c} ({comps[c]['mean']:+.2f})" for c in summary["towards_components"]) or "none"
    lines.append(f"towards the answer (interval above 0): {towards}")
    if summary["against_components"]:
        lines.append("against the answer (interval below 0): "
                     + ", ".join(f"{c} ({comps[c]['mean']:+.2f})" for c in summary["against_components"]))
    else:
        lines.append("against the answer (interval below 0): none")
    lines.append(f"too small or too variable to call (interval includes 0): "
                 f"{', '.join(summary['unclear_components']) or 'none'}")
    if summary["against_heads"]:
        total = sum(heads[h]["mean"] for h in summary["against_heads"])
        lines.append("heads against the answer (interval below 0): "
                     + ", ".join(f"{h} ({heads[h]['mean']:+.2f})" for h in summary["against_heads"])
                     + f"; together {abs(total) / ld:.1%} of the logit difference (a 95% interval misses 0 by "
                       f"chance for about {0.05 * len(heads):.1f} of {len(heads)} heads)")
    else:
        lines.append("heads against the answer (interval below 0): none")
    top_c = summary["top_component"]
    kind = "an attention layer" if top_c.startswith("attn") else "an MLP" if top_c.startswith("mlp") else "the embeddings"
    lines.append(f"largest push: {top_c} ({comps[top_c]['mean']:+.2f}), {kind}")
    best_head = next(iter(summary["top_heads"]))
    mlps = [c for c in comps if c.startswith("mlp")]
    best_mlp = max(mlps, key=lambda c: comps[c]["mean"])
    more = "more" if comps[best_mlp]["mean"] > heads[best_head]["mean"] else "less"
    lines.append(f"the largest MLP write, {best_mlp} ({comps[best_mlp]['mean']:+.2f}), is {more} than the "
                 f"largest single head's, {best_head} ({heads[best_head]['mean']:+.2f})")
    for h, t in summary["top_heads"].items():
        lines.append(f"{h}: {_signed(heads[h])}; from the last position it puts {t['attention_to_s']:.2f} of its "
                     f"attention on S and {t['attention_to_io']:.2f} on IO; against a typical name its write "
                     f"lowers S by {t['lowers_s']:.2f} and raises IO by {t['raises_io']:.2f}")
        lines.append(f"  so {h} {head_role(t)}")
    return lines


def head_role(t: dict) -> str:
    """What a head does for IOI, from where it looks and what its write does to IO and S."""
    if t["attention_to_s"] > 2 * t["attention_to_io"] and t["lowers_s"] > 2 * max(t["raises_io"], 0):
        return ("raises the answer by pushing S down: it attends to S and writes against it (not a name "
                "mover, which attends to IO and copies it)")
    if t["attention_to_io"] > 2 * t["attention_to_s"] and t["raises_io"] > 2 * max(t["lowers_s"], 0):
        return "attends to IO and copies it up, as GPT-2 small's name movers do"
    return "mixes the two: neither attending to S and suppressing it, nor attending to IO and copying it, dominates"


def rank_report(curve: dict) -> list[str]:
    """The lines chapter 1 prints for :func:`fact_rank_curve`, with a verdict on what the lens sees."""
    lines = [f"{'depth':>10s}  {'answer on top':>13s}  {'median rank':>11s}  top token is '{curve['last_token']}'"]
    for d, on_top, rank, own in zip(curve["depths"], curve["answer_on_top"], curve["median_rank"],
                                    curve["top_is_last_token"]):
        lines.append(f"{d:>10s}  {on_top:13.0%}  {rank:>6.0f} of {curve['d_vocab']}  {own:.0%}")
    early = range(len(curve["depths"]) - 1)
    echo = min(curve["top_is_last_token"][i] for i in early)
    if echo >= 0.9:
        share = "every fact" if echo == 1 else f"at least {echo:.0%} of facts"
        lines.append(f"Before the output the lens's top token is the prompt's own last token on {share} "
                     f"at every depth: the plain lens decodes the early stream as if it were the "
                     f"last one, and here it reads back the current token, not the model's guess.")
    first_rank, last_early = curve["median_rank"][0], curve["median_rank"][len(curve["depths"]) - 2]
    trend = "climbs" if last_early < first_rank else "does not climb"
    lines.append(f"The answer's median rank {trend} from {first_rank:.0f} to {last_early:.0f} before the last "
                 f"layer, and is {curve['median_rank'][-1]:.0f} at the output ({curve['answer_on_top'][-1]:.0%} "
                 f"of facts on top).")
    return lines
