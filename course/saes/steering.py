"""Steering: add a direction to the residual stream during generation, and compare a feature's
decoder direction with an activation-addition vector (Turner et al. 2023)."""

from __future__ import annotations

import torch
from torch import Tensor

from course.saes.activations import read_sites


def steering_hook(direction: Tensor, scale: float):
    """A forward hook adding ``scale * direction`` at every position (but the first, the BOS
    token, which every sequence shares and whose stream is of another size)."""
    def hook(x, hook):
        x = x.clone()
        x[:, 1:] += scale * direction.to(x.dtype)
        return x
    return hook


def generate_steered(model, prompt: str, hook_name: str, direction: Tensor | None, scale: float = 0.0,
                     max_new_tokens: int = 12) -> str:
    """Greedy continuation of ``prompt`` with ``scale * direction`` added at ``hook_name`` (none if None)."""
    hooks = [] if direction is None or scale == 0 else [(hook_name, steering_hook(direction, scale))]
    with model.hooks(fwd_hooks=hooks):
        out = model.generate(prompt, max_new_tokens=max_new_tokens, return_type="str")
    return out[len(prompt):] if out.startswith(prompt) else out


@torch.no_grad()
def activation_addition(model, hook_name: str, plus: str, minus: str) -> Tensor:
    """Turner et al.'s steering vector: the stream at ``hook_name`` on ``plus`` minus on ``minus``,
    at the last token of each (prompts of any length)."""
    a = read_sites(model, model.to_tokens(plus), [hook_name])[hook_name][0, -1]
    b = read_sites(model, model.to_tokens(minus), [hook_name])[hook_name][0, -1]
    return a - b


@torch.no_grad()
def next_token_shift(model, prompts: list[str], hook_name: str, direction: Tensor, scale: float,
                     token_ids: Tensor) -> float:
    """Mean change, over ``prompts``, of the total next-token probability of ``token_ids`` when
    ``scale * direction`` is added at ``hook_name`` (a measure of what steering did)."""
    hooks = [(hook_name, steering_hook(direction, scale))]
    delta = 0.0
    for p in prompts:
        tokens = model.to_tokens(p)
        clean = model(tokens)[0, -1].softmax(-1)[token_ids].sum()
        steered = model.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1].softmax(-1)[token_ids].sum()
        delta += float(steered - clean) / len(prompts)
    return delta


@torch.no_grad()
def next_token_kl(model, prompts: list[str], hook_name: str, direction: Tensor, scale: float) -> float:
    """Mean KL divergence (clean ‖ steered) of the next-token distribution over ``prompts``:
    how much steering changes what the model predicts, whatever it changes it to."""
    hooks = [(hook_name, steering_hook(direction, scale))]
    total = 0.0
    for p in prompts:
        tokens = model.to_tokens(p)
        clean = model(tokens)[0, -1].log_softmax(-1)
        steered = model.run_with_hooks(tokens, fwd_hooks=hooks)[0, -1].log_softmax(-1)
        total += float((clean.exp() * (clean - steered)).sum()) / len(prompts)
    return total
