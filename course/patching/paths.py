"""Path patching: change only what some components send *directly* to heads' inputs.

The receivers' queries, keys or values are recomputed from the clean residual stream
plus the senders' change (corrupted output − clean output), with the layer norm
recomputed on that stream; every other path stays clean. What the receivers then write
flows on through the rest of the network as usual.

A sender is any component that writes to the stream below the receiver: a head
``(layer, head)`` (its change through ``W_O``), an MLP ``"mlp{layer}"``, or ``"embed"``
(token and position embeddings together).
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from course.patching.heads import Head

INPUTS = {"q": "W_Q", "k": "W_K", "v": "W_V"}


Sender = Head | str


def sender_layer(sender: Sender) -> int:
    """The layer a sender writes in: the embeddings count as layer −1 (below every head)."""
    if isinstance(sender, str):
        if sender == "embed":
            return -1
        if sender.startswith("mlp") and sender[3:].isdigit():
            return int(sender[3:])
        raise ValueError(f"unknown sender {sender!r}: use (layer, head), 'mlp<layer>' (e.g. 'mlp0') or 'embed'")
    return int(sender[0])


def sender_names(model) -> list[Sender]:
    """Every possible sender, in the order they write: embed, then each layer's heads and MLP."""
    out: list[Sender] = ["embed"]
    for layer in range(model.cfg.n_layers):
        out += [(layer, h) for h in range(model.cfg.n_heads)] + [f"mlp{layer}"]
    return out


def sender_delta(model, clean_cache, corrupt_cache, senders: Iterable[Sender], below: int) -> Tensor:
    """The senders' summed change to the stream ``[batch, pos, d_model]``, from senders that write
    below layer ``below`` (an MLP in layer l writes after that layer's heads read: l < ``below``)."""
    delta = 0
    for s in senders:
        if sender_layer(s) >= below:
            continue
        if s == "embed":
            diff = ((corrupt_cache["hook_embed"] + corrupt_cache["hook_pos_embed"])
                    - (clean_cache["hook_embed"] + clean_cache["hook_pos_embed"]))
        elif isinstance(s, str):
            diff = corrupt_cache["mlp_out", sender_layer(s)] - clean_cache["mlp_out", sender_layer(s)]
        else:
            layer, head = s
            z = corrupt_cache["z", layer][:, :, head] - clean_cache["z", layer][:, :, head]   # [batch, pos, d_head]
            diff = z @ model.W_O[layer, head]
        delta = delta + diff
    return delta


def path_patch(model, tokens: Tensor, clean_cache, corrupt_cache, senders: Iterable[Sender],
               receivers: Iterable[Head], into: str | Iterable[str] = "q") -> Tensor:
    """Logits ``[batch, pos, d_vocab]`` after patching senders → receivers' ``into`` inputs.

    clean_cache / corrupt_cache: caches of ``tokens`` and of the corrupted prompts holding
    what the senders need (``attn.hook_z`` for heads, ``hook_mlp_out`` for MLPs, ``hook_embed``
    and ``hook_pos_embed`` for the embeddings) and the clean ``hook_resid_pre``. ``into``: "q",
    "k", "v" or several of them.
    """
    senders, receivers = list(senders), list(receivers)
    for s in senders:
        sender_layer(s)                                       # an unknown sender fails here, in words
    into = [into] if isinstance(into, str) else list(into)
    bad = [x for x in into if x not in INPUTS]
    if bad:
        raise ValueError(f"into={bad[0]!r}: a head's inputs are 'q', 'k' and 'v'")
    eps = model.hf.config.layer_norm_epsilon
    new_inputs: dict[tuple[int, str], dict[int, Tensor]] = {}
    with torch.no_grad():
        for layer, head in receivers:
            delta = sender_delta(model, clean_cache, corrupt_cache, senders, below=layer)
            if not torch.is_tensor(delta):
                continue                                      # no sender below this receiver
            resid = clean_cache["resid_pre", layer] + delta
            normed = F.layer_norm(resid, (model.cfg.d_model,), model.ln1_w[layer], model.ln1_b[layer], eps)
            for x in into:
                w = getattr(model, INPUTS[x])[layer, head]                        # [d_model, d_head]
                b = getattr(model, "b_" + x.upper())[layer, head]
                new_inputs.setdefault((layer, x), {})[head] = normed @ w + b       # [batch, pos, d_head]

    def make(values: dict[int, Tensor]):
        def hook(act, hp):
            act = act.clone()
            for head, v in values.items():
                act[:, :, head] = v.to(act.dtype)
            return act
        return hook

    hooks = [(f"blocks.{layer}.attn.hook_{x}", make(vals)) for (layer, x), vals in new_inputs.items()]
    return model.run_with_hooks(tokens, fwd_hooks=hooks)
