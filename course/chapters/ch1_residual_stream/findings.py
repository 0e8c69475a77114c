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
    answer = torch.tensor([model.to_single_token(p.answer) for p in prompts])
    counter = torch.tensor([model.to_single_token(p.distractor) for p in prompts])
    return tokens, answer, counter


@torch.no_grad()
def ioi_attribution_summary(model, n_prompts: int = 60, seed: int = 0) -> dict:
    """Mean direct logit attribution of IO vs S over IOI prompts, per component and per head."""
    tokens, answer, counter = ioi_batch(model, n_prompts, seed)
    logits, cache = model.run_with_cache(tokens)
    direction = (model.W_U[:, answer] - model.W_U[:, counter]).T                       # [batch, d_model]
    parts, labels = cache.decompose_resid(pos=-1, return_labels=True)
    comps = (cache.apply_ln_to_stack(parts, pos=-1) * direction).sum(-1).mean(1)        # [comp]
    heads, head_labels = cache.stack_head_results(pos=-1, return_labels=True)
    per_head = (cache.apply_ln_to_stack(heads, pos=-1) * direction).sum(-1).mean(1)     # [layer * head]
    rows = torch.arange(len(answer))
    return {
        "logit_diff": float((logits[rows, -1, answer] - logits[rows, -1, counter]).mean()),
        "components": dict(zip(labels, comps.tolist())),
        "heads": dict(zip(head_labels, per_head.tolist())),
        "top_component": labels[int(comps.argmax())],
        "top_head": head_labels[int(per_head.argmax())],
        "negative_components": [lab for lab, v in zip(labels, comps.tolist()) if v < -0.1],
        "negative_heads": [lab for lab, v in zip(head_labels, per_head.tolist()) if v < -0.1],
    }
