"""Activations of the course model, streamed in shuffled batches for training a dictionary.

Each batch is a pair ``(x [batch, d_in], target [batch, d_out])`` read at two hook points
of the same forward pass (the same point for an SAE). The forward pass stops at the deeper
of the two points: the layers above it are never computed.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from course.neurons import text_stream


class _Enough(Exception):
    """Raised by the last hook needed: the rest of the forward pass is not computed."""


@torch.no_grad()
def read_sites(model, tokens: Tensor, names: list[str]) -> dict[str, Tensor]:
    """``{name: [batch, pos, d]}`` for the hook points ``names``, stopping the forward pass after the
    deepest of them (the lens restores the model when the hook raises)."""
    order = {n: i for i, n in enumerate(model.hook_names)}
    last = max(names, key=order.__getitem__)
    out: dict[str, Tensor] = {}

    def save(x, hook):
        out[hook.name] = x.detach()
        if hook.name == last and len(out) == len(set(names)):
            raise _Enough

    try:
        model.run_with_hooks(tokens, fwd_hooks=[(n, save) for n in set(names)], return_type=None)
    except _Enough:
        pass
    return out


class ActivationStream:
    """An endless, seeded stream of corpus text run through ``model``, served as shuffled
    batches of ``batch_size`` tokens' activations ``(x, target)``.

    Text: rows of ``row_len`` tokens of the course corpus (``course.neurons.text_stream``, a
    new seed per chunk of ``rows_per_chunk`` rows). A chunk's tokens are shuffled together, so
    a batch mixes many documents. ``tokens_read`` counts the tokens served so far.
    """

    def __init__(self, model, hook_name: str, target_hook_name: str | None = None, batch_size: int = 4096,
                 row_len: int = 64, rows_per_chunk: int = 512, forward_rows: int = 64, seed: int = 0):
        self.model, self.hook_name = model, hook_name
        self.target_hook_name = target_hook_name or hook_name
        self.batch_size, self.row_len, self.rows_per_chunk = batch_size, row_len, rows_per_chunk
        self.forward_rows, self.seed = forward_rows, seed
        self.tokens_read = 0

    def chunk(self, index: int) -> tuple[Tensor, Tensor]:
        """The ``index``-th chunk's activations, flattened over (row, pos) and not shuffled."""
        stream = text_stream(self.model, self.rows_per_chunk, self.row_len, seed=self.seed * 100_003 + index)
        names = [self.hook_name, self.target_hook_name]
        xs, ys = [], []
        for start in range(0, self.rows_per_chunk, self.forward_rows):
            acts = read_sites(self.model, stream.tokens[start:start + self.forward_rows], names)
            xs.append(acts[self.hook_name].flatten(0, 1))
            ys.append(acts[self.target_hook_name].flatten(0, 1))
        return torch.cat(xs), torch.cat(ys)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        g = torch.Generator().manual_seed(self.seed)
        index = 0
        x_left = y_left = None
        while True:
            x, y = self.chunk(index)
            index += 1
            order = torch.randperm(x.shape[0], generator=g).to(x.device)
            x, y = x[order], y[order]
            if x_left is not None:
                x, y = torch.cat([x_left, x]), torch.cat([y_left, y])
            n = x.shape[0] // self.batch_size * self.batch_size
            for start in range(0, n, self.batch_size):
                self.tokens_read += self.batch_size
                yield x[start:start + self.batch_size], y[start:start + self.batch_size]
            x_left, y_left = x[n:], y[n:]
