"""Neuron activations (after the GELU) over many rows of text, a batch at a time."""

from __future__ import annotations

import torch
from torch import Tensor
from tqdm import tqdm   # a text bar: no widget left behind in saved notebooks or the book


@torch.no_grad()
def collect_activations(model, tokens: Tensor, layers=None, batch_size: int = 32,
                        progress: bool = True) -> Tensor:
    """``tokens [row, pos]`` -> ``[layer, row, pos, d_mlp]`` (``blocks.{l}.mlp.hook_post``), on the CPU.

    A progress bar appears when the work takes more than a second.
    """
    layers = list(range(model.cfg.n_layers)) if layers is None else list(layers)
    names = [f"blocks.{l}.mlp.hook_post" for l in layers]
    out = []
    for start in tqdm(range(0, tokens.shape[0], batch_size), desc="activations", delay=1.0,
                      disable=not progress, leave=False):
        _, cache = model.run_with_cache(tokens[start:start + batch_size], names_filter=names)
        out.append(torch.stack([cache[n] for n in names]).cpu())
    return torch.cat(out, 1)
