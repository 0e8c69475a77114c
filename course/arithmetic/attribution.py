"""Direct logit attribution per answer digit: each head's and each MLP's write, through the final
layer norm, onto the right digit's unembedding, at the position that predicts that digit."""

from __future__ import annotations

import torch
from torch import Tensor

from course.arithmetic.batch import AdditionBatch


@torch.no_grad()
def digit_attribution(model, batch: AdditionBatch, target: str = "ones",
                      relative: bool = False) -> tuple[Tensor, list[str]]:
    """``([component, n], labels)``: components are the token and position embeddings, every head
    (``L{l}H{h}``), the attention output biases together, and every MLP (``MLP{l}``). With the final
    norm's bias term they sum to the logit of the right ``target`` digit ("ones" or "tens").

    ``relative``: attribute the right digit's logit *minus the mean of the ten digits' logits*
    instead, so a component that raises every digit alike (the embedding of a digit position)
    gets no credit for the answer."""
    at = (batch.ones_pos if target == "ones" else batch.tens_pos)
    idx = torch.arange(len(batch.prompts))
    _, cache = model.run_with_cache(batch.tokens.to(model.device))
    q = (at - 1).to(model.device)
    pick = lambda x: x[idx, q]                                                # noqa: E731  [n, d_model]
    parts, labels = [pick(cache["hook_embed"]), pick(cache["hook_pos_embed"])], ["embed", "pos_embed"]
    heads, head_labels = cache.stack_head_results(return_labels=True)        # [layer*head, n, pos, d]
    parts += [pick(h) for h in heads]
    labels += head_labels
    parts.append(torch.stack([model.b_O[l] for l in range(model.cfg.n_layers)]).sum(0).expand(len(idx), -1))
    labels.append("attention biases")
    for l in range(model.cfg.n_layers):
        parts.append(pick(cache["mlp_out", l]))
        labels.append(f"MLP{l}")
    stack = torch.stack(parts)                                               # [component, n, d_model]
    scale = cache["ln_final.hook_scale"][idx, q]                             # [n, 1]
    normed = (stack - stack.mean(-1, keepdim=True)) / scale * model.ln_final_w
    answer = batch.tokens[idx, at].to(model.device)
    direction = model.W_U[:, answer].T                                       # [n, d_model]
    if relative:
        digits = torch.tensor([model.to_single_token(str(d)) for d in range(10)], device=model.device)
        direction = direction - model.W_U[:, digits].mean(1)
    return (normed * direction).sum(-1).cpu(), labels
