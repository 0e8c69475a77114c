"""Attach hook points to a Hugging Face GPT-2 with plain PyTorch hooks.

The HF model keeps doing the computation; during one run, :class:`Instrument`
registers hooks on exactly the submodules the requested hook points need (and
removes them afterwards, so a plain forward pays nothing). Each hook point calls
the user's functions in order; a function may return a replacement tensor of the
same shape (patching, ablation) or ``None`` (just looking).

Where a point is not a module boundary:
- ``attn.hook_attn_scores`` / ``attn.hook_pattern`` come from our attention function,
  registered with transformers as ``"course_lens"``; it performs eager attention's
  operations in eager attention's order, so the numbers are the same.
- ``hook_resid_mid`` is read as ``attn_out + resid_pre`` (the block's own sum); a
  replacement is passed on by adjusting the attention output to match it.
- a hooked layer norm runs as ``torch.native_layer_norm`` (the kernel behind its own
  forward, so the output is the same) which also returns the statistics: the scale
  comes for free, ``hook_normalized`` is computed only when read or changed, and only
  when a hook replaces one of them is the output rebuilt from them (so a scale can be
  frozen or patched).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, eager_mask

from course.lens.errors import HookReturnError

ATTN_IMPLEMENTATION = "course_lens"


@dataclass(frozen=True)
class HookPoint:
    """What a hook function receives as its second argument (TransformerLens style)."""

    name: str

    def layer(self) -> int | None:
        parts = self.name.split(".")
        return int(parts[1]) if parts[0] == "blocks" else None


HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor | None]


def lens_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """Eager attention with the scores and the pattern exposed as hook points.

    query/key/value: [batch, head, pos, d_head]. Returns ([batch, pos, head, d_head], pattern).
    """
    run = getattr(module, "_lens_run", None)
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if attention_mask is not None:
        scores = scores + attention_mask
    if run is not None:
        scores = run("attn.hook_attn_scores", scores)
    pattern = nn.functional.softmax(scores, dim=-1).type(value.dtype)
    if run is not None:
        pattern = run("attn.hook_pattern", pattern)
    pattern = nn.functional.dropout(pattern, p=dropout, training=module.training)
    out = torch.matmul(pattern, value).transpose(1, 2)
    return out, pattern


AttentionInterface.register(ATTN_IMPLEMENTATION, lens_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, eager_mask)


class Instrument:
    """Hooks for one run: ``with Instrument(hf_model, n_heads, {name: [fns]}): hf_model(ids)``."""

    def __init__(self, hf_model, n_heads: int, fns: dict[str, list[HookFn]]):
        self.hf = hf_model
        self.n_heads = n_heads
        self.fns = {k: v for k, v in fns.items() if v}
        self.handles: list = []
        self.patched: list = []                     # modules whose forward is replaced for this run
        self.resid_pre: dict[int, torch.Tensor] = {}
        self.points: dict[str, HookPoint] = {name: HookPoint(name) for name in self.fns}

    # -- calling the user's functions -------------------------------------------------
    def run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        for fn in self.fns.get(name, ()):
            out = fn(x, self.points[name])
            if out is not None:
                if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                    got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                    raise HookReturnError(
                        f"The hook on {name} returned {got}; it must return None or a tensor of "
                        f"shape {tuple(x.shape)} (the activation's own shape).")
                x = out
        return x

    def wants(self, *names: str) -> bool:
        return any(n in self.fns for n in names)

    # -- registering PyTorch hooks ------------------------------------------------------
    def __enter__(self):
        t = self.hf.transformer
        by_layer: dict[int, set[str]] = defaultdict(set)
        for name in self.fns:
            if name.startswith("blocks."):
                _, layer, point = name.split(".", 2)
                by_layer[int(layer)].add(point)
        if self.wants("hook_embed"):
            self._fwd(t.wte, lambda m, a, out: self.run("hook_embed", out))
        if self.wants("hook_pos_embed"):
            self._fwd(t.wpe, lambda m, a, out: self.run("hook_pos_embed", out))
        for layer, points in by_layer.items():
            self._block(t.h[layer], f"blocks.{layer}.", points)
        if self.wants("ln_final.hook_scale", "ln_final.hook_normalized"):
            self._layer_norm(t.ln_f, "ln_final.")
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles.clear()
        for module in self.patched:
            del module.forward
        self.patched.clear()
        for blk in self.hf.transformer.h:
            blk.attn._lens_run = None
        self.resid_pre.clear()
        return False

    def _fwd(self, module, fn):
        self.handles.append(module.register_forward_hook(fn))

    def _pre(self, module, fn):
        self.handles.append(module.register_forward_pre_hook(fn))

    def _block(self, blk, p: str, points: set[str]) -> None:
        H = self.n_heads
        layer = int(p.split(".")[1])
        needs_mid = "hook_resid_mid" in points
        if "hook_resid_pre" in points or needs_mid:
            def pre(m, args, kwargs=None):
                x = self.run(p + "hook_resid_pre", args[0])
                self.resid_pre[layer] = x
                return (x, *args[1:])
            self._pre(blk, pre)
        if points & {"ln1.hook_scale", "ln1.hook_normalized"}:
            self._layer_norm(blk.ln_1, p + "ln1.")
        if points & {"ln2.hook_scale", "ln2.hook_normalized"}:
            self._layer_norm(blk.ln_2, p + "ln2.")
        if points & {"attn.hook_q", "attn.hook_k", "attn.hook_v"}:
            def qkv(m, args, out):
                q, k, v = out.unflatten(-1, (3, H, -1)).unbind(-3)
                new = [self.run(p + "attn.hook_" + s, t) for s, t in zip("qkv", (q, k, v))]
                if all(a is b for a, b in zip(new, (q, k, v))):
                    return None
                return torch.stack(new, dim=-3).flatten(-3)
            self._fwd(blk.attn.c_attn, qkv)
        if points & {"attn.hook_attn_scores", "attn.hook_pattern"}:
            blk.attn._lens_run = lambda name, x: self.run(p + name, x)
        if "attn.hook_z" in points:
            def z(m, args):
                return (self.run(p + "attn.hook_z", args[0].unflatten(-1, (H, -1))).flatten(-2),)
            self._pre(blk.attn.c_proj, z)
        if "attn.hook_result" in points:
            def result(m, args, out):
                z = args[0].unflatten(-1, (H, -1))                      # [b, pos, H, d_head]
                w_o = m.weight.unflatten(0, (H, -1))                    # [H, d_head, d_model]
                res = torch.einsum("bphd,hdm->bphm", z, w_o)
                new = self.run(p + "attn.hook_result", res)
                return None if new is res else new.sum(-2) + m.bias
            self._fwd(blk.attn.c_proj, result)
        if points & {"hook_attn_out", "hook_resid_mid"}:
            def attn_out(m, args, out):
                a = self.run(p + "hook_attn_out", out[0])
                if needs_mid:
                    mid = a + self.resid_pre[layer]                     # the block's own sum
                    new_mid = self.run(p + "hook_resid_mid", mid)
                    if new_mid is not mid:
                        a = new_mid - self.resid_pre[layer]
                return (a, *out[1:])
            self._fwd(blk.attn, attn_out)
        if "mlp.hook_pre" in points:
            self._fwd(blk.mlp.c_fc, lambda m, a, out: self.run(p + "mlp.hook_pre", out))
        if "mlp.hook_post" in points:
            self._fwd(blk.mlp.act, lambda m, a, out: self.run(p + "mlp.hook_post", out))
        if "hook_mlp_out" in points:
            self._fwd(blk.mlp, lambda m, a, out: self.run(p + "hook_mlp_out", out))
        if "hook_resid_post" in points:
            def post(m, args, out):
                if isinstance(out, tuple):
                    return (self.run(p + "hook_resid_post", out[0]), *out[1:])
                return self.run(p + "hook_resid_post", out)
            self._fwd(blk, post)

    def _layer_norm(self, ln: nn.LayerNorm, p: str) -> None:
        """While hooked, the layer norm runs as ``native_layer_norm`` (the kernel behind its own
        forward: the same output, bit for bit), which also returns the mean and 1/scale."""
        def forward(x):
            out, mean, rstd = torch.native_layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
            scale = rstd.reciprocal()
            new_scale = self.run(p + "hook_scale", scale)
            name = p + "hook_normalized"
            if new_scale is scale and self.only_caches(name):
                # Nobody will change it: cache it lazily, computed only if someone reads it.
                lazy = Lazy(lambda: (x - mean) * rstd)
                for fn in self.fns.get(name, ()):
                    fn(lazy, self.points[name])
                return out
            normalized = (x - mean) / new_scale
            new_normalized = self.run(name, normalized)
            if new_scale is scale and new_normalized is normalized:
                return out
            return new_normalized * ln.weight + ln.bias
        ln.forward = forward                        # an instance attribute: removed on exit
        self.patched.append(ln)

    def only_caches(self, name: str) -> bool:
        return all(getattr(fn, "accepts_lazy", False) for fn in self.fns.get(name, ()))


class Lazy:
    """An activation computed on first use (the cache resolves it when read)."""

    __slots__ = ("compute",)

    def __init__(self, compute):
        self.compute = compute

    def __call__(self) -> torch.Tensor:
        return self.compute()
