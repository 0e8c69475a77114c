"""QK and OV circuits of a head, kept factored (see :mod:`course.lens.factored`).

The layer norm before attention is handled the way chapter 2 explains: each
embedding row is normalized as if it were the whole residual stream, using the
layer's ``ln1`` weights. That is exact for the embedding alone and a good guide
for layer 0, where the stream is little more than the embeddings.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from course.lens.factored import FactoredMatrix


def through_ln1(model, layer: int, rows: Tensor) -> Tensor:
    """``rows [n, d_model]`` normalized by layer ``layer``'s first layer norm."""
    return torch.nn.functional.layer_norm(rows, (model.cfg.d_model,), model.ln1_w[layer], model.ln1_b[layer],
                                          eps=model.hf.config.layer_norm_epsilon)


def qk(model, layer: int, head: int, queries: Tensor, keys: Tensor) -> FactoredMatrix:
    """Attention scores between query rows and key rows (``[n_q, d_model]``, ``[n_k, d_model]``,
    already normalized), biases included, scaled by 1/sqrt(d_head): ``[n_q, n_k]``."""
    q = queries @ model.W_Q[layer, head] + model.b_Q[layer, head]
    k = keys @ model.W_K[layer, head] + model.b_K[layer, head]
    return FactoredMatrix(q / math.sqrt(model.cfg.d_head), k.T)


def token_qk(model, layer: int, head: int, query_ids: Tensor, key_ids: Tensor) -> FactoredMatrix:
    return qk(model, layer, head, through_ln1(model, layer, model.W_E[query_ids]),
              through_ln1(model, layer, model.W_E[key_ids]))


def positional_qk(model, layer: int, head: int, n_pos: int | None = None) -> FactoredMatrix:
    n_pos = n_pos or model.cfg.n_ctx
    pos = through_ln1(model, layer, model.W_pos[:n_pos])
    return qk(model, layer, head, pos, pos)


@torch.no_grad()
def effective_embedding(model) -> Tensor:
    """``[d_vocab, d_model]``: each token's embedding plus what layer 0's MLP adds to it,
    ``W_E + MLP0(LN2_0(W_E))`` (layer 0's attention left out, as the field's "extended embedding"
    does): closer than ``W_E`` to what heads of later layers read at a token's position."""
    block = model.hf.transformer.h[0]
    return model.W_E + block.mlp(block.ln_2(model.W_E))


def ov(model, layer: int, head: int, source_ids: Tensor | None = None, target_ids: Tensor | None = None,
       embedding: Tensor | None = None) -> FactoredMatrix:
    """What attending to a source token writes into each target token's logit:
    ``LN1(E[src]) W_V W_O W_U[:, tgt]``, ``[n_src, n_tgt]`` (all tokens when None); ``E`` is
    ``W_E`` unless an ``embedding [d_vocab, d_model]`` is given (e.g. :func:`effective_embedding`)."""
    table = model.W_E if embedding is None else embedding
    emb = table if source_ids is None else table[source_ids]
    unembed = model.W_U if target_ids is None else model.W_U[:, target_ids]
    a = through_ln1(model, layer, emb) @ model.W_V[layer, head]
    return FactoredMatrix(a, model.W_O[layer, head] @ unembed)


def composition_scores(W_A: Tensor, W_B: Tensor) -> Tensor:
    """Elhage et al.'s composition score of every pair, ``||W_A[i] W_B[j]||_F / (||W_A[i]||_F ||W_B[j]||_F)``,
    ``[n_a, d, d] x [n_b, d, d] -> [n_a, n_b]``, without forming the products:
    ``||A B||_F^2 = sum((A^T A) * (B B^T))``."""
    gram_a = W_A.transpose(-1, -2) @ W_A                                     # [n_a, d, d]
    gram_b = W_B @ W_B.transpose(-1, -2)                                     # [n_b, d, d]
    squared = torch.einsum("ixy,jxy->ij", gram_a, gram_b).clamp(min=0)
    norms = gram_a.diagonal(dim1=-2, dim2=-1).sum(-1).sqrt()[:, None] * gram_b.diagonal(dim1=-2, dim2=-1).sum(-1).sqrt()[None]
    return squared.sqrt() / norms
