"""Values: what a neuron's output row does to the next-token logits when read directly."""

from __future__ import annotations

import torch
from torch import Tensor


def value_logits(model, layer: int) -> Tensor:
    """``[d_mlp, d_vocab]``: each neuron's output row ``W_out[layer, n]``, centred and scaled by the
    final layer norm's weight (what the final norm does to any write, up to its overall scale),
    through the unembedding."""
    rows = model.W_out[layer]
    return ((rows - rows.mean(-1, keepdim=True)) * model.ln_final_w) @ model.W_U


def value_tokens(model, layer: int, neuron: int, k: int = 8) -> tuple[list[str], list[str]]:
    """The ``k`` tokens a neuron's value promotes most and the ``k`` it suppresses most."""
    with torch.no_grad():
        logits = value_logits(model, layer)[neuron]
    top, bottom = logits.topk(k).indices, (-logits).topk(k).indices
    return [model.to_string(i) for i in top], [model.to_string(i) for i in bottom]
