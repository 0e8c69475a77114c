"""ROME's closed-form edit: ``W' = W + (C⁻¹k)ᵀ (v - kW) / (k C⁻¹ kᵀ)`` on the MLP's output weights.

Row-vector convention as the lens: the MLP writes ``post @ W_out[layer]``, so a key ``k``
is a ``[d_mlp]`` activation after the GELU and a value ``v`` a ``[d_model]`` output.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import torch
from torch import Tensor

from course.data.plain import plain_sentence
from course.data.vocabulary import single_token_names
from course.tracing.facts import subject_span


def prefixes(model, n: int = 10, seed: int = 0) -> list[str]:
    """Short corpus sentences to put before a prompt, so a key or value does not depend on
    the prompt starting the text (ROME averages over such prefixes); the first is empty."""
    rng = random.Random(seed)
    names = single_token_names(model.tokenizer)
    return [""] + [plain_sentence(rng, names) for _ in range(n - 1)]


def with_prefix(prefix: str, text: str) -> str:
    return f"{prefix} {text}" if prefix else text


@torch.no_grad()
def mlp_keys(model, layer: int, texts: list[str], positions: list[int]) -> Tensor:
    """``[len(texts), d_mlp]``: ``blocks.{layer}.mlp.hook_post`` of each text at its position."""
    out = []
    for text, pos in zip(texts, positions):
        _, cache = model.run_with_cache(text, names_filter=f"blocks.{layer}.mlp.hook_post")
        out.append(cache["post", layer][0, pos])
    return torch.stack(out)


@torch.no_grad()
def key_second_moment(acts: Tensor) -> Tensor:
    """``acts [..., d_mlp]`` -> ``E[k kᵀ]`` ``[d_mlp, d_mlp]`` (uncentred, as ROME)."""
    flat = acts.reshape(-1, acts.shape[-1]).double()
    return (flat.T @ flat / flat.shape[0]).float()


def closed_form_update(W: Tensor, C: Tensor, k: Tensor, v: Tensor) -> Tensor:
    """The rank-one change ``ΔW [d_mlp, d_model]`` with ``k (W + ΔW) = v`` that disturbs the
    other keys least (in the metric of their second moment ``C``)."""
    C, k, v = C.to(W.device), k.to(W.device), v.to(W.device)               # C is often gathered on the CPU
    direction = torch.linalg.solve(C.double(), k.double())                    # C⁻¹k
    residual = v.double() - k.double() @ W.double()
    return (torch.outer(direction, residual) / (direction @ k.double())).to(W.dtype)


@dataclass
class EditRequest:
    country: str
    relation: str
    new_answer: str        # with its leading space
    prompt: str            # the sentence the edit is written from, ending before the answer


def optimize_value(model, layer: int, request: EditRequest, texts: list[str], steps: int = 150, lr: float = 0.5,
                   weight_decay: float = 1e-3, seed: int = 0, kl_weight: float = 0.0) -> Tensor:
    """δ ``[d_model]`` that, added to layer ``layer``'s MLP output at the subject's last token of
    each text, makes ``request.new_answer`` the next token (a few Adam steps, as ROME).

    ``kl_weight`` > 0 adds ROME's essence-preservation term: the KL divergence, on "{subject} is a",
    from the unedited model's next-token distribution to the edited one's, so the edit changes the
    one fact rather than what the subject is (ROME uses 0.0625). At 0 (the default) the value only
    has to make the new answer win."""
    torch.manual_seed(seed)
    target = model.to_single_token(request.new_answer)
    spans = [subject_span(model, t, request.country) for t in texts]
    tokens = model.to_tokens(texts)
    rows = torch.arange(len(texts), device=tokens.device)
    at = torch.tensor([end - 1 for _, end in spans], device=tokens.device)
    last = torch.tensor([len(model.to_str_tokens(t)) - 1 for t in texts], device=tokens.device)
    delta = torch.zeros(model.cfg.d_model, device=model.device, requires_grad=True)
    opt = torch.optim.Adam([delta], lr=lr)

    def add(x, hook):
        x = x.clone()
        x[rows, at] = x[rows, at] + delta
        return x

    essence = f"{request.country} is a"
    essence_tokens = model.to_tokens(essence)
    essence_at = subject_span(model, essence, request.country)[1] - 1
    if kl_weight:
        with torch.no_grad():
            before = model(essence_tokens)[0, -1].log_softmax(-1)

    def add_essence(x, hook):
        x = x.clone()
        x[0, essence_at] = x[0, essence_at] + delta
        return x

    for p in model.hf.parameters():
        p.requires_grad_(False)
    try:
        with torch.enable_grad():
            for _ in range(steps):
                logits = model.run_with_hooks(tokens, [(f"blocks.{layer}.hook_mlp_out", add)])
                loss = -logits[rows, last].log_softmax(-1)[:, target].mean() + weight_decay * delta.norm() ** 2
                if kl_weight:
                    after = model.run_with_hooks(essence_tokens, [(f"blocks.{layer}.hook_mlp_out", add_essence)])
                    after = after[0, -1].log_softmax(-1)
                    loss = loss + kl_weight * (before.exp() * (before - after)).sum()
                opt.zero_grad()
                loss.backward()
                opt.step()
    finally:
        for p in model.hf.parameters():
            p.requires_grad_(True)
    return delta.detach()


@dataclass
class Edit:
    """A change to ``model.W_out[layer]``; :meth:`apply` and :meth:`undo` (exact: the original is kept)."""

    layer: int
    delta_W: Tensor
    _original: Tensor | None = None

    @torch.no_grad()
    def apply(self, model) -> "Edit":
        if self._original is None:
            self._original = model.W_out[self.layer].clone()
            model.W_out[self.layer] += self.delta_W
        return self

    @torch.no_grad()
    def undo(self, model) -> None:
        if self._original is not None:
            model.W_out[self.layer].copy_(self._original)
            self._original = None

    @property
    def applied(self) -> bool:
        return self._original is not None


def rome_edit(model, layer: int, request: EditRequest, C: Tensor, n_prefixes: int = 10, steps: int = 150,
              seed: int = 0, kl_weight: float = 0.0) -> Edit:
    """The whole edit: key averaged over prefixes, value by optimization (``kl_weight``: ROME's
    essence-preservation term, see :func:`optimize_value`), closed-form update (not applied)."""
    texts = [with_prefix(p, request.prompt) for p in prefixes(model, n_prefixes, seed)]
    positions = [subject_span(model, t, request.country)[1] - 1 for t in texts]
    k = mlp_keys(model, layer, texts, positions).mean(0)
    delta = optimize_value(model, layer, request, texts, steps=steps, seed=seed, kl_weight=kl_weight)
    with torch.no_grad():
        v = k @ model.W_out[layer] + delta
        return Edit(layer, closed_form_update(model.W_out[layer], C, k, v))
