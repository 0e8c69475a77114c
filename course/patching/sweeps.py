"""Activation patching and its gradient approximation, swept over every layer × position or head.

The sweeps patch *clean* activations into the *corrupted* run (a metric of 1 then means the
patched activation alone restores the clean behaviour). They are batched: the corrupted
prompts are repeated once per patched cell and every copy gets its own patch, so a whole
layer × head map costs one forward pass per layer instead of one per head.

``metric(logits) -> scalar`` is any function of a batch's logits (e.g. the normalized logit
difference); the sweeps call it once per cell, on that cell's copy of the batch.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor

POINTS = {"resid_pre": "hook_resid_pre", "attn_out": "hook_attn_out", "mlp_out": "hook_mlp_out"}
WHAT = ("resid_pre", "attn_out", "mlp_out", "heads")


def _names(model, what: str) -> list[str]:
    if what == "heads":
        return [f"blocks.{l}.attn.hook_z" for l in range(model.cfg.n_layers)]
    return [f"blocks.{l}.{POINTS[what]}" for l in range(model.cfg.n_layers)]


@torch.no_grad()
def patch_sweep(model, corrupt: Tensor, clean_cache, metric: Callable[[Tensor], Tensor], what: str = "heads",
                progress: Callable[[int, int], None] | None = None) -> Tensor:
    """Exact activation patching of every cell: ``[layer, head]`` for ``what="heads"``, else
    ``[layer, pos]`` (``what`` in ``resid_pre``, ``attn_out``, ``mlp_out``).

    corrupt: ``[batch, pos]`` tokens whose positions line up with the clean prompts';
    clean_cache holds the clean run's activations at the patched points.
    """
    if what not in WHAT:
        raise ValueError(f"what must be one of {WHAT}, not {what!r}")
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
