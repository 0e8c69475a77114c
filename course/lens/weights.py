"""Weight views ``W_Q [L, H, d_model, d_head]`` and friends, as views on the HF parameters.

GPT-2 keeps one parameter per layer; to offer ``[layer, ...]`` tensors without
copying, :func:`consolidate` moves each family of per-layer parameters into one
stacked storage and makes every layer's parameter a view into it. After that,
``model.W_out[1, 7] = 0`` edits the Hugging Face model itself, and the HF model
still computes, trains and saves as before.

Conventions (as in TransformerLens): activations are row vectors, ``x @ W``.
HF's ``Conv1D`` already stores weights as ``[in, out]``, so no transposes.
"""

from __future__ import annotations

import torch
from torch import nn

# family -> (module path under a block, parameter name)
FAMILIES = {
    "attn_w": ("attn.c_attn", "weight"), "attn_b": ("attn.c_attn", "bias"),
    "o_w": ("attn.c_proj", "weight"), "o_b": ("attn.c_proj", "bias"),
    "in_w": ("mlp.c_fc", "weight"), "in_b": ("mlp.c_fc", "bias"),
    "out_w": ("mlp.c_proj", "weight"), "out_b": ("mlp.c_proj", "bias"),
    "ln1_w": ("ln_1", "weight"), "ln1_b": ("ln_1", "bias"),
    "ln2_w": ("ln_2", "weight"), "ln2_b": ("ln_2", "bias"),
}


def consolidate(hf_model) -> dict[str, torch.Tensor]:
    """Re-home each family of per-layer parameters into one ``[n_layers, ...]`` tensor.

    Returns the stacked tensors; the HF parameters become views into them (same
    values, same ``requires_grad``). Call again after moving the model to a device.
    """
    blocks = hf_model.transformer.h
    stacks = {}
    with torch.no_grad():
        for family, (path, attr) in FAMILIES.items():
            modules = [blk.get_submodule(path) for blk in blocks]
            params = [getattr(m, attr) for m in modules]
            stack = torch.stack([p.detach() for p in params])
            for layer, (m, p) in enumerate(zip(modules, params)):
                setattr(m, attr, nn.Parameter(stack[layer], requires_grad=p.requires_grad))
            stacks[family] = stack
    return stacks


def is_consolidated(hf_model, stacks: dict[str, torch.Tensor]) -> bool:
    """Whether the HF parameters still live inside ``stacks`` (a ``.to()`` breaks this)."""
    first = hf_model.transformer.h[0].attn.c_attn.weight
    stack = stacks.get("attn_w")
    return stack is not None and first.data_ptr() == stack.data_ptr() and first.device == stack.device


def split_heads(t: torch.Tensor, n_heads: int) -> torch.Tensor:
    """[..., H*d_head] -> [..., H, d_head] (a view)."""
    return t.unflatten(-1, (n_heads, t.shape[-1] // n_heads))


def qkv_weight(stacks, which: int, n_heads: int) -> torch.Tensor:
    """W_Q / W_K / W_V for which = 0 / 1 / 2: [L, H, d_model, d_head]."""
    w = stacks["attn_w"]                               # [L, d_model, 3 * d_model]
    d = w.shape[1]
    return split_heads(w[..., which * d:(which + 1) * d], n_heads).permute(0, 2, 1, 3)


def qkv_bias(stacks, which: int, n_heads: int) -> torch.Tensor:
    """b_Q / b_K / b_V: [L, H, d_head]."""
    b = stacks["attn_b"]                               # [L, 3 * d_model]
    d = b.shape[1] // 3
    return split_heads(b[..., which * d:(which + 1) * d], n_heads)


def o_weight(stacks, n_heads: int) -> torch.Tensor:
    """W_O: [L, H, d_head, d_model]."""
    w = stacks["o_w"]                                  # [L, H*d_head, d_model]
    return w.unflatten(1, (n_heads, w.shape[1] // n_heads))
