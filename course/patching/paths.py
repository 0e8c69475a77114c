"""Path patching: change only what some heads send *directly* to others' inputs.

The receivers' queries, keys or values are recomputed from the clean residual stream
plus the senders' change (corrupted output − clean output, through ``W_O``), with the
layer norm recomputed on that stream; every other path stays clean. What the
receivers then write flows on through the rest of the network as usual.
"""

from __future__ import annotations

from typing import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor

from course.patching.heads import Head

INPUTS = {"q": "W_Q", "k": "W_K", "v": "W_V"}


def sender_delta(model, clean_z: dict[int, Tensor], corrupt_z: dict[int, Tensor], senders: Iterable[Head],
                 below: int) -> Tensor:
    """The senders' summed change to the stream ``[batch, pos, d_model]``, from layers < ``below``."""
    delta = 0
    for layer, head in senders:
        if layer < below:
            diff = corrupt_z[layer][:, :, head] - clean_z[layer][:, :, head]      # [batch, pos, d_head]
            delta = delta + diff @ model.W_O[layer, head]
    return delta


def path_patch(model, tokens: Tensor, clean_cache, corrupt_cache, senders: Iterable[Head],
               receivers: Iterable[Head], into: str | Iterable[str] = "q") -> Tensor:
    """Logits ``[batch, pos, d_vocab]`` after patching senders → receivers' ``into`` inputs.

    clean_cache / corrupt_cache: caches of ``tokens`` and of the corrupted prompts holding
    every layer's ``attn.hook_z`` and (clean) ``hook_resid_pre``. ``into``: "q", "k", "v"
    or several of them.
    """
    senders, receivers = list(senders), list(receivers)
    into = [into] if isinstance(into, str) else list(into)
    clean_z = {l: clean_cache["z", l] for l in range(model.cfg.n_layers)}
    corrupt_z = {l: corrupt_cache["z", l] for l in range(model.cfg.n_layers)}
    eps = model.hf.config.layer_norm_epsilon
    new_inputs: dict[tuple[int, str], dict[int, Tensor]] = {}
    with torch.no_grad():
        for layer, head in receivers:
            delta = sender_delta(model, clean_z, corrupt_z, senders, below=layer)
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
