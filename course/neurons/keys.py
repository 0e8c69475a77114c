"""Keys: the contexts that make a neuron fire, and a description of them found by counting."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

import torch
from torch import Tensor


def top_contexts(acts: Tensor, neuron: int, k: int = 10) -> tuple[Tensor, Tensor]:
    """``acts [row, pos, d_mlp]`` -> (values ``[k]``, ``[k, 2]`` (row, pos) of the k largest
    activations of ``neuron``), largest first."""
    values, idx = acts[..., neuron].flatten().topk(k)
    return values, torch.stack([idx // acts.shape[1], idx % acts.shape[1]], -1)


@dataclass
class NeuronDescription:
    """What a neuron's top contexts share: the activating token and the document kind that
    occur most often among them, with their shares."""

    layer: int
    neuron: int
    token: str
    token_share: float
    kind: str
    kind_share: float
    next_token: str
    next_token_share: float

    def __str__(self) -> str:
        return (f"L{self.layer}N{self.neuron}: fires on {self.token!r} ({self.token_share:.0%} of its top contexts), "
                f"in {self.kind} text ({self.kind_share:.0%}); next token {self.next_token!r} "
                f"({self.next_token_share:.0%})")


def describe_neuron(model, stream, acts: Tensor, layer: int, neuron: int, k: int = 20) -> NeuronDescription:
    """Count the activating token, the next token and the document kind over the top ``k`` contexts.

    ``acts``: ``[row, pos, d_mlp]`` for ``layer`` over ``stream.tokens``.
    """
    _, where = top_contexts(acts, neuron, k)
    rows, pos = where[:, 0].tolist(), where[:, 1].tolist()
    width = stream.tokens.shape[1]
    toks = Counter(model.to_string(stream.tokens[r, p]) for r, p in zip(rows, pos))
    nexts = Counter(model.to_string(stream.tokens[r, p + 1]) for r, p in zip(rows, pos) if p + 1 < width)
    kinds = Counter(stream.kind_names[int(stream.kinds[r, p])] for r, p in zip(rows, pos))
    (tok, nt), (kind, nk) = toks.most_common(1)[0], kinds.most_common(1)[0]
    nxt, nn = nexts.most_common(1)[0] if nexts else ("", 0)
    return NeuronDescription(layer, neuron, tok, nt / k, kind, nk / k, nxt, nn / max(1, sum(nexts.values())))
