"""Activation patching and its gradient approximation, swept over every layer × position or head.

The sweeps patch *clean* activations into the *corrupted* run (a metric of 1 then means the
patched activation alone restores the clean behaviour). They are batched: the corrupted
prompts are repeated once per patched cell and every copy gets its own patch, so a whole
layer × position map costs one forward pass per layer instead of one per cell.

The layer × head sweep does less than a forward pass per layer, and is still exact (equal to
a loop of single-head patches, which the tests check):

- the corrupted run is computed once; patching head h of layer l adds
  ``(z_clean − z_corrupt)[h] @ W_O[l, h]`` to that run's stream after layer l's attention, so
  only what follows (layer l's MLP and the later layers) is run again, for all heads of the
  layer at once;
- positions before the first one where a clean and a corrupted ``z`` differ stay as in the
  corrupted run (attention is causal): only the later positions are run again, their
  attention reading the corrupted run's keys and values for the earlier ones;
- given ``positions`` (the positions the metric reads), the last layer runs its queries, its
  MLP and the unembedding there only.

``metric(logits) -> scalar`` is any function of a batch's logits (e.g. the normalized logit
difference); the sweeps call it once per cell, on that cell's copy of the batch.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor
from transformers.activations import NewGELUActivation

POINTS = {"resid_pre": "hook_resid_pre", "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}
WHAT = ("resid_pre", "attn_out", "mlp_out", "heads")


def _names(model, what: str) -> list[str]:
    if what == "heads":
        return [f"blocks.{l}.attn.hook_z" for l in range(model.cfg.n_layers)]
    return [f"blocks.{l}.{POINTS[what]}" for l in range(model.cfg.n_layers)]


@torch.no_grad()
def patch_sweep(model, corrupt: Tensor, clean_cache, metric: Callable[[Tensor], Tensor], what: str = "heads",
                progress: Callable[[int, int], None] | None = None, positions: Tensor | int | None = None) -> Tensor:
    """Exact activation patching of every cell: ``[layer, head]`` for ``what="heads"``, else
    ``[layer, pos]`` (``what`` in ``resid_pre``, ``attn_out``, ``mlp_out``).

    corrupt: ``[batch, pos]`` tokens whose positions line up with the clean prompts';
    clean_cache holds the clean run's activations at the patched points.
    positions (heads only): the position(s) the metric reads, ``[batch]`` (or ``[batch, k]``,
    or one int for every prompt), e.g. each prompt's last token. Given, the head sweep computes
    the logits there only; the metric's logits hold NaN at every other position, so a metric that
    reads elsewhere gives NaN, never a wrong number.
    """
    if what not in WHAT:
        raise ValueError(f"what must be one of {WHAT}, not {what!r}")
    if what == "heads":
        with torch.inference_mode():
            return _head_sweep(model, corrupt, clean_cache, metric, positions, progress)
    if positions is not None:
        raise ValueError("positions is only used by the head sweep (what='heads')")
    batch, n_pos = corrupt.shape
    n_cells = model.cfg.n_heads if what == "heads" else n_pos
    cells = torch.arange(n_cells, device=corrupt.device)
    out = torch.zeros(model.cfg.n_layers, n_cells)
    copies = corrupt.repeat(n_cells, 1)                                   # copy c is rows c*batch ... (c+1)*batch
    for layer, name in enumerate(_names(model, what)):
        clean = clean_cache[name]

        def hook(x, hp, clean=clean):
            x = x.view(n_cells, batch, *x.shape[1:]).clone()
            if what == "heads":
                x[cells, :, :, cells] = clean.permute(2, 0, 1, 3)         # copy h: head h from the clean run
            else:
                x[cells, :, cells] = clean.permute(1, 0, 2)               # copy p: position p from the clean run
            return x.view(n_cells * batch, *x.shape[2:])

        logits = model.run_with_hooks(copies, fwd_hooks=[(name, hook)])
        for c, chunk in enumerate(logits.split(batch)):
            out[layer, c] = float(metric(chunk))
        if progress:
            progress(layer + 1, model.cfg.n_layers)
    return out


def _head_sweep(model, corrupt: Tensor, clean_cache, metric, positions, progress) -> Tensor:
    """:func:`patch_sweep` for ``what="heads"`` (the module docstring says how)."""
    hf, n_layers, n_heads = model.hf, model.cfg.n_layers, model.cfg.n_heads
    blocks = hf.transformer.h
    batch, n_pos = corrupt.shape
    keep = [f"blocks.{l}.{p}" for l in range(n_layers)
            for p in ("attn.hook_z", "attn.hook_k", "attn.hook_v", "hook_resid_mid")]
    logits, run = model.run_with_cache(corrupt, names_filter=keep)          # the corrupted run, once
    rows = torch.arange(batch, device=corrupt.device)[:, None]
    if positions is None:
        reads, seen = None, logits.clone()                  # the metric's logits: corrupted, patched from p0 on
    else:
        reads = torch.as_tensor(positions, device=corrupt.device).long()
        reads = (reads.expand(batch) if reads.ndim == 0 else reads).reshape(batch, -1)          # [batch, k]
        seen = torch.full_like(logits, float("nan"))
    out = torch.zeros(n_layers, n_heads)
    for layer in range(n_layers):
        diff = clean_cache["z", layer].to(logits.dtype) - run["z", layer]                  # [batch, pos, head, d_head]
        changed = diff.ne(0).flatten(2).any(-1).any(0).nonzero()
        p0 = int(changed[0]) if len(changed) else n_pos - 1       # positions < p0: as in the corrupted run
        if reads is not None:
            p0 = min(p0, int(reads.min()))
        # copy h, positions p0…: the corrupted stream after this layer's attention, plus head h's change
        x = run["resid_mid", layer][:, p0:] + torch.einsum("bphd,hdm->hbpm", diff[:, p0:], model.W_O[layer])
        every = torch.arange(p0, n_pos, device=x.device)                  # the absolute positions of x's rows
        last = None if reads is None else reads - p0                      # the rows the metric reads
        for later in range(layer, n_layers):
            block, at_end = blocks[later], later == n_layers - 1 and last is not None
            attn_out = (_attention(block, x, run, later, p0, reads if at_end else every, last if at_end else None)
                        if later > layer else 0)
            if at_end:
                x = x[:, rows, last]                       # from here on, only what the metric reads
            x = x + attn_out
            x = x + _mlp(block.mlp, block.ln_2(x))
        patched = hf.lm_head(hf.transformer.ln_f(x))                           # [head, batch, k or pos - p0, vocab]
        for head in range(n_heads):
            if reads is None:
                seen[:, p0:] = patched[head]
            else:
                seen[rows, reads] = patched[head]
            out[layer, head] = float(metric(seen))
        if progress:
            progress(layer + 1, n_layers)
    return out


def _mlp(mlp, x: Tensor) -> Tensor:
    """``mlp(x)``; GPT-2's "gelu_new" (the tanh approximation) through PyTorch's fused kernel."""
    if isinstance(mlp.act, NewGELUActivation):
        return mlp.c_proj(F.gelu(mlp.c_fc(x), approximate="tanh"))
    return mlp(x)


def _attention(block, x: Tensor, run, layer: int, p0: int, query: Tensor, last: Tensor | None) -> Tensor:
    """Block ``layer``'s attention output for the copies' stream ``x`` ``[copy, batch, pos - p0, d_model]``,
    whose positions < p0 are the corrupted run's (their keys and values come from ``run``).

    query: the absolute positions of the rows of ``x`` (``[pos - p0]``), or, with ``last``
    (``[batch, k]``, rows of ``x``), those rows' absolute positions ``[batch, k]``: only they are returned.
    """
    attn = block.attn
    n_copies, batch = x.shape[:2]
    q, k, v = attn.c_attn(block.ln_1(x)).split(attn.split_size, dim=-1)
    q, k, v = (t.unflatten(-1, (attn.num_heads, attn.head_dim)) for t in (q, k, v))   # [copy, batch, pos, head, d_head]
    if last is not None:
        q = q[:, torch.arange(batch, device=x.device)[:, None], last]
    keys, values = ([run[name, layer][:, :p0].expand(n_copies, -1, -1, -1, -1), new]
                    for name, new in (("k", k), ("v", v)))
    k, v = torch.cat(keys, 2).transpose(2, 3), torch.cat(values, 2).transpose(2, 3)   # [copy, batch, head, pos, d_head]
    scores = q.transpose(2, 3) @ k.transpose(-1, -2) * attn.scaling                   # [copy, batch, head, query, key]
    blocked = torch.arange(k.shape[-2], device=x.device) > query[..., None]            # causal
    scores = scores.masked_fill(blocked if last is None else blocked[:, None], float("-inf"))
    z = (scores.softmax(-1) @ v).transpose(2, 3).flatten(-2)                            # [copy, batch, query, d_model]
    return attn.c_proj(z)


def attribution_sweep(model, corrupt: Tensor, clean_cache, metric: Callable[[Tensor], Tensor],
                      what: str = "heads") -> Tensor:
    """The first-order (gradient) estimate of :func:`patch_sweep`'s change of the metric, from one
    forward and one backward pass of the corrupted prompts: ``(clean − corrupt) · ∂metric/∂act``
    summed over the batch and the activation's width. Add the corrupted metric to compare with
    :func:`patch_sweep`."""
    if what not in WHAT:
        raise ValueError(f"what must be one of {WHAT}, not {what!r}")
    names = _names(model, what)
    _, cache = model.run_with_cache(corrupt, names_filter=names, incl_bwd=True, metric=metric)
    rows = []
    for name in names:
        change = (clean_cache[name] - cache[name]) * cache[name + "_grad"]
        rows.append(change.sum((0, 1, 3)) if what == "heads" else change.sum((0, 2)))
    return torch.stack(rows).cpu()
