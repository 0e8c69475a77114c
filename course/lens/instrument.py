"""Attach hook points to a Hugging Face GPT-2 for one run.

The HF model keeps its parameters, its embedding, mask and final stages; during one
run, :class:`Instrument` gives each block that has a requested hook point one Python
forward of its own (an instance attribute, removed on exit, so a plain forward pays
nothing). That forward makes the calls of ``GPT2Block.forward`` and
``GPT2Attention.forward`` in the same order, on the same submodules, and runs every
hook point of the block inline: one Python call per block instead of one PyTorch hook
per point. The tests check it bit for bit against the HF model.

Each hook point calls the user's functions in order; a function may return a
replacement tensor of the same shape (patching, ablation) or ``None`` (just looking).
Backward functions (``bwd``) are attached to the activation as tensor hooks: they see
its gradient and may return a replacement.

Points that are not a module output:
- ``attn.hook_attn_scores`` / ``attn.hook_pattern``: :func:`attend`, eager attention's
  operations in eager attention's order, masked with ``-inf`` (HF's eager mask adds the
  dtype's minimum instead; the pattern is the same to the bit). It is also registered
  with transformers as ``"course_lens"``, so the plain HF forward computes the same way.
- a layer norm with a hooked point runs as ``torch.native_layer_norm`` (the kernel behind
  its own forward: the same output, bit for bit), which also returns the statistics. A
  point that is only cached is handed over as :class:`Lazy` (computed when read).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn
from transformers import AttentionInterface
from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, sdpa_mask

from course.lens.errors import HookReturnError

ATTN_IMPLEMENTATION = "course_lens"


@dataclass(frozen=True)
class HookPoint:
    """What a hook function receives as its second argument (TransformerLens style)."""

    name: str
    ctx: dict = field(default_factory=dict, compare=False, hash=False)

    def layer(self) -> int | None:
        parts = self.name.split(".")
        return int(parts[1]) if parts[0] == "blocks" else None


HookFn = Callable[[torch.Tensor, HookPoint], torch.Tensor | None]


class Lazy:
    """An activation computed on first use (the cache resolves it when read)."""

    __slots__ = ("compute",)

    def __init__(self, compute):
        self.compute = compute

    def __call__(self) -> torch.Tensor:
        return self.compute()


# -- attention ---------------------------------------------------------------------------
def lens_mask(*args, **kwargs):
    """The mask for :func:`attend`: ``True`` where a query may *not* look (or None: causal only).

    A row that may look nowhere (a left-padding query) is left unmasked, as PyTorch's SDPA
    does, so no row of the pattern is NaN; such positions are padding, their outputs unused.
    """
    kwargs.pop("allow_is_causal_skip", None)
    allowed = sdpa_mask(*args, allow_is_causal_skip=True, **kwargs)
    if allowed is None:
        return None
    blocked = ~allowed
    return blocked & ~blocked.all(-1, keepdim=True)


@functools.lru_cache(maxsize=64)
def causal_blocked(q_len: int, k_len: int, device: torch.device) -> torch.Tensor:
    return torch.ones(q_len, k_len, dtype=torch.bool, device=device).triu(1 + k_len - q_len)


def attention_scores(query, key, blocked, scaling):
    """``q kᵀ * scaling`` with ``-inf`` where ``blocked`` (the causal mask when None)."""
    scores = torch.matmul(query, key.transpose(-1, -2)) * scaling
    if blocked is None:
        blocked = causal_blocked(query.shape[-2], key.shape[-2], query.device)
    return scores.masked_fill_(blocked, float("-inf"))


def attend(module, query, key, value, blocked, scaling, dropout=0.0, run=None):
    """Eager attention with ``-inf`` above the diagonal; query/key/value ``[batch, head, pos, d_head]``.

    Returns (``[batch, pos, head, d_head]``, pattern). ``run(point, x)`` runs the hook points.
    """
    scores = attention_scores(query, key, blocked, scaling)
    if run is not None:
        scores = run("attn.hook_attn_scores", scores)
    pattern = nn.functional.softmax(scores, dim=-1).type(value.dtype)
    if run is not None:
        pattern = run("attn.hook_pattern", pattern)
    pattern = nn.functional.dropout(pattern, p=dropout, training=module.training)
    return torch.matmul(pattern, value).transpose(1, 2), pattern


def lens_attention(module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs):
    """The attention function transformers calls for ``attn_implementation="course_lens"``."""
    if scaling is None:
        scaling = query.size(-1) ** -0.5
    return attend(module, query, key, value, attention_mask, scaling, dropout)


AttentionInterface.register(ATTN_IMPLEMENTATION, lens_attention)
ALL_MASK_ATTENTION_FUNCTIONS.register(ATTN_IMPLEMENTATION, lens_mask)


@functools.lru_cache(maxsize=None)
def block_names(layer: int) -> dict[str, str]:
    """Point -> full hook name for one block (built once)."""
    from course.lens.hook_points import BLOCK_POINTS
    return {point: f"blocks.{layer}.{point}" for point in BLOCK_POINTS}


class Instrument:
    """Hooks for one run: ``with Instrument(hf_model, n_heads, {name: [fns]}): hf_model(ids)``.

    ``bwd``: ``{name: [fns]}`` run on the gradient at that point. ``graph=True`` keeps every
    hooked point on the autograd path and makes the embeddings require grad, so gradients
    reach activations even when the parameters are frozen.
    """

    def __init__(self, hf_model, n_heads: int, fns: dict, bwd: dict | None = None,
                 points: dict[str, HookPoint] | None = None, graph: bool = False):
        self.hf = hf_model
        self.n_heads = n_heads
        self.fns = {k: v for k, v in fns.items() if v}
        self.bwd = {k: v for k, v in (bwd or {}).items() if v}
        self.graph = graph or bool(self.bwd)
        self.points = points if points is not None else {}
        self.patched: list = []                     # modules whose forward is replaced for this run
        self.batch = 1
        self.inputs: list[torch.Tensor] = []        # the embeddings, where gradients are taken to

    # -- calling the user's functions -------------------------------------------------
    def point(self, name: str) -> HookPoint:
        p = self.points.get(name)
        if p is None:
            p = self.points[name] = HookPoint(name)
        return p

    def run(self, name: str, x: torch.Tensor) -> torch.Tensor:
        fns = self.fns.get(name)
        if fns:
            hook = self.point(name)
            for fn in fns:
                out = fn(x, hook)
                if out is not None:
                    if not isinstance(out, torch.Tensor) or out.shape != x.shape:
                        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                        raise HookReturnError(
                            f"The hook on {name} returned {got}; it must return None or a tensor of "
                            f"shape {tuple(x.shape)} (the activation's own shape).")
                    x = out
        if self.bwd and name in self.bwd and x.requires_grad:
            hook = self.point(name)
            for fn in self.bwd[name]:
                x.register_hook(functools.partial(_call_bwd, fn, hook))
        return x

    def wants(self, *names: str) -> bool:
        return any(n in self.fns or n in self.bwd for n in names)

    def only_caches(self, name: str) -> bool:
        """Nobody changes or differentiates this point: it may be handed over lazily."""
        return not self.graph and all(getattr(fn, "accepts_lazy", False) for fn in self.fns.get(name, ()))

    def lazy(self, name: str, compute) -> None:
        if name in self.fns:
            value, hook = Lazy(compute), self.point(name)
            for fn in self.fns[name]:
                fn(value, hook)

    # -- installing the forwards ------------------------------------------------------------
    def __enter__(self):
        t = self.hf.transformer
        wanted = set(self.fns) | set(self.bwd)
        if self.graph or wanted & {"hook_embed", "hook_pos_embed"}:
            self._patch(t.wte, self._embed_forward(t.wte))
            self._patch(t.wpe, self._pos_embed_forward(t.wpe))
        for layer, blk in enumerate(t.h):
            names = block_names(layer)
            if wanted.intersection(names.values()):
                self._patch(blk, self._block_forward(blk, names))
        if wanted & {"ln_final.hook_scale", "ln_final.hook_normalized"}:
            ln = t.ln_f
            self._patch(ln, lambda x: self.layer_norm(ln, "ln_final.hook_scale", "ln_final.hook_normalized", x))
        return self

    def __exit__(self, *exc):
        for module in self.patched:
            del module.forward
        self.patched.clear()
        return False

    def _patch(self, module, forward) -> None:
        module.forward = forward                    # an instance attribute: removed on exit
        self.patched.append(module)

    def _embed_forward(self, wte):
        def forward(ids):
            self.batch = ids.shape[0]
            out = type(wte).forward(wte, ids)
            return self.run("hook_embed", self.graph_input(out))
        return forward

    def _pos_embed_forward(self, wpe):
        def forward(position_ids):
            out = type(wpe).forward(wpe, position_ids)          # [1, pos, d_model] in HF
            out = out.expand(self.batch, *out.shape[1:])         # [batch, pos, d_model], as in TransformerLens
            if not self.only_caches("hook_pos_embed"):
                out = out.contiguous()                           # a hook may write into it in place
            return self.run("hook_pos_embed", self.graph_input(out))
        return forward

    def graph_input(self, out: torch.Tensor) -> torch.Tensor:
        """With ``graph``, an embedding is where gradients start: it requires grad even when
        the parameters are frozen."""
        if self.graph:
            if not out.requires_grad:
                out.requires_grad_(True)
            self.inputs.append(out)
        return out

    def _block_forward(self, blk, n: dict[str, str]):
        attn, mlp, H = blk.attn, blk.mlp, self.n_heads
        run = self.run

        def forward(hidden_states, past_key_values=None, attention_mask=None, *args, **kwargs):
            resid_pre = run(n["hook_resid_pre"], hidden_states)
            x = self.layer_norm(blk.ln_1, n["ln1.hook_scale"], n["ln1.hook_normalized"], resid_pre)
            b, p, _ = x.shape
            q, k, v = (t.view(b, p, H, -1) for t in attn.c_attn(x).split(attn.split_size, dim=2))
            q, k, v = run(n["attn.hook_q"], q), run(n["attn.hook_k"], k), run(n["attn.hook_v"], v)
            q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)
            scores_name = n["attn.hook_attn_scores"]
            if self.only_caches(scores_name):       # recomputed from q and k when read, not kept
                self.lazy(scores_name, lambda: attention_scores(q, k, attention_mask, attn.scaling))
                skip = scores_name
            else:
                skip = None
            z, _ = attend(attn, q, k, v, attention_mask, attn.scaling, attn.attn_dropout.p if attn.training else 0.0,
                          lambda point, t: t if n[point] == skip else run(n[point], t))
            z = run(n["attn.hook_z"], z)                                   # [b, pos, H, d_head]
            attn_out = self.head_results(attn.c_proj, n["attn.hook_result"], z)
            attn_out = run(n["hook_attn_out"], attn.resid_dropout(attn_out))
            mid = self.run_or_lazy(n["hook_resid_mid"], attn_out + resid_pre, lambda: attn_out + resid_pre)
            x = self.layer_norm(blk.ln_2, n["ln2.hook_scale"], n["ln2.hook_normalized"], mid)
            pre = run(n["mlp.hook_pre"], mlp.c_fc(x))
            post = self.run_or_lazy(n["mlp.hook_post"], mlp.act(pre), lambda: mlp.act(pre))
            mlp_out = run(n["hook_mlp_out"], mlp.dropout(mlp.c_proj(post)))
            return run(n["hook_resid_post"], mid + mlp_out)
        return forward

    def run_or_lazy(self, name: str, x: torch.Tensor, recompute) -> torch.Tensor:
        """Run the point on ``x``; when it is only cached, hand over ``recompute`` instead, so that
        ``x`` is freed as in a plain forward (an elementwise op, recomputed to the same bits)."""
        if name in self.fns and self.only_caches(name):
            self.lazy(name, recompute)
            return x
        return self.run(name, x)

    def head_results(self, c_proj, name: str, z: torch.Tensor) -> torch.Tensor:
        """The attention output from z; per-head results ``[b, pos, H, d_model]`` only when hooked."""
        merged = z.reshape(*z.shape[:-2], -1).contiguous()
        if not self.wants(name):
            return c_proj(merged)
        w_o = c_proj.weight.unflatten(0, (self.n_heads, -1))              # [H, d_head, d_model]
        if self.only_caches(name):
            self.lazy(name, lambda: torch.einsum("bphd,hdm->bphm", z, w_o))
            return c_proj(merged)
        result = torch.einsum("bphd,hdm->bphm", z, w_o)
        new = self.run(name, result)
        return c_proj(merged) if new is result and not self.graph else new.sum(-2) + c_proj.bias

    def layer_norm(self, ln: nn.LayerNorm, scale_name: str, norm_name: str, x: torch.Tensor) -> torch.Tensor:
        """``ln(x)``, with its scale ``[..., 1]`` and normalized input (before weight and bias) hooked."""
        if not self.wants(scale_name, norm_name):
            return ln(x)
        if self.graph:                              # native_layer_norm's statistics carry no gradient
            centred = x - x.mean(-1, keepdim=True)
            scale = self.run(scale_name, (centred.pow(2).mean(-1, keepdim=True) + ln.eps).sqrt())
            return self.run(norm_name, centred / scale) * ln.weight + ln.bias
        out, mean, rstd = torch.native_layer_norm(x, ln.normalized_shape, ln.weight, ln.bias, ln.eps)
        if self.only_caches(scale_name):
            self.lazy(scale_name, rstd.reciprocal)
            scale = new_scale = None
        else:
            scale = rstd.reciprocal()
            new_scale = self.run(scale_name, scale)
        if new_scale is scale and self.only_caches(norm_name):
            self.lazy(norm_name, lambda: (x - mean) * rstd)
            return out
        normalized = (x - mean) * rstd if new_scale is scale else (x - mean) / new_scale
        new_normalized = self.run(norm_name, normalized)
        if new_scale is scale and new_normalized is normalized:
            return out
        return new_normalized * ln.weight + ln.bias


def _call_bwd(fn, hook, grad):
    return fn(grad, hook)
