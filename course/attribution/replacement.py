"""The local replacement model: the real model's computation on one prompt, made linear.

Attention patterns and every layer norm's scale are frozen at their values on the prompt;
each MLP is replaced by its transcoder's output plus an error term per (layer, position),
the difference between the real MLP's output and the transcoder's. On the prompt it
reproduces the model's logits exactly. With the feature activations frozen too, everything
downstream of the token embeddings and the MLP writes is linear: that is what makes the
direct effects of :mod:`course.attribution.graph` well defined.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from course.attribution.transcoders import TranscoderSet, input_site, output_site


@dataclass
class LocalReplacement:
    model: object
    transcoders: TranscoderSet
    tokens: Tensor              # [1, pos]
    ln1_scale: Tensor           # [layer, pos, 1]
    ln2_scale: Tensor           # [layer, pos, 1]
    ln_final_scale: Tensor      # [pos, 1]
    patterns: Tensor            # [layer, head, query, key]
    activations: Tensor         # [layer, pos, d_sae]: the transcoders' features on the real MLP inputs
    errors: Tensor              # [layer, pos, d_model]: real MLP output minus the transcoder's
    logits: Tensor              # [pos, d_vocab]: the real model's

    @classmethod
    @torch.no_grad()
    def build(cls, model, transcoders: TranscoderSet, prompt) -> "LocalReplacement":
        """Run the real model once on ``prompt`` (text or ``[1, pos]`` tokens) and freeze what it needs."""
        tokens = model.to_tokens(prompt) if isinstance(prompt, str) else torch.as_tensor(prompt).reshape(1, -1)
        L = model.cfg.n_layers
        names = ([f"blocks.{l}.ln1.hook_scale" for l in range(L)] + [f"blocks.{l}.ln2.hook_scale" for l in range(L)]
                 + [f"blocks.{l}.attn.hook_pattern" for l in range(L)] + [input_site(l) for l in range(L)]
                 + [output_site(l) for l in range(L)] + ["ln_final.hook_scale"])
        logits, cache = model.run_with_cache(tokens, names_filter=names)
        acts, errors = [], []
        for l in range(L):
            tc = transcoders[l]
            f = tc.encode(cache[input_site(l)][0])
            acts.append(f)
            errors.append(cache[output_site(l)][0] - tc.decode(f))
        return cls(model, transcoders, tokens,
                   torch.stack([cache[f"blocks.{l}.ln1.hook_scale"][0] for l in range(L)]),
                   torch.stack([cache[f"blocks.{l}.ln2.hook_scale"][0] for l in range(L)]),
                   cache["ln_final.hook_scale"][0],
                   torch.stack([cache[f"blocks.{l}.attn.hook_pattern"][0] for l in range(L)]),
                   torch.stack(acts), torch.stack(errors), logits[0])

    @property
    def n_layers(self) -> int:
        return self.activations.shape[0]

    @property
    def n_pos(self) -> int:
        return self.tokens.shape[1]

    def embedding(self) -> Tensor:
        """Token plus position embedding of each position, ``[pos, d_model]``: the input nodes."""
        m = self.model
        return m.W_E[self.tokens[0]] + m.W_pos[: self.n_pos]

    def mlp_writes(self, activations: Tensor | None = None) -> Tensor:
        """What each replaced MLP writes, ``[layer, pos, d_model]``: the transcoder's decoding of
        ``activations`` (default: the frozen ones) plus the error term."""
        acts = self.activations if activations is None else activations
        return torch.stack([self.transcoders[l].decode(acts[l]) for l in range(self.n_layers)]) + self.errors

    def forward(self, embedding: Tensor | None = None, writes: Tensor | None = None) -> dict[str, Tensor]:
        """The linear model. ``embedding [..., pos, d_model]`` and ``writes [layer, ..., pos, d_model]``
        (defaults: the prompt's) may carry leading batch dimensions (e.g. one per backward target).

        Returns ``mlp_in`` (ln_2's normalized input per layer, ``[layer, ..., pos, d_model]``: what the
        transcoders read) and ``logits [..., pos, d_vocab]``.
        """
        m = self.model
        resid = self.embedding() if embedding is None else embedding
        writes = self.mlp_writes() if writes is None else writes
        mlp_in = []
        for l in range(self.n_layers):
            x = _centre(resid) / self.ln1_scale[l] * m.ln1_w[l] + m.ln1_b[l]
            v = torch.einsum("...kd,hde->...khe", x, m.W_V[l]) + m.b_V[l]
            z = torch.einsum("hqk,...khe->...qhe", self.patterns[l], v)
            resid = resid + torch.einsum("...qhe,hed->...qd", z, m.W_O[l]) + m.b_O[l]
            mlp_in.append(_centre(resid) / self.ln2_scale[l])
            resid = resid + writes[l]
        final = _centre(resid) / self.ln_final_scale * m.ln_final_w + m.ln_final_b
        return {"mlp_in": torch.stack(mlp_in), "logits": final @ m.W_U + m.b_U}

    def pre_activations(self, mlp_in: Tensor) -> Tensor:
        """Every transcoder's pre-activations from ``mlp_in [layer, ..., pos, d_model]``: ``[layer, ..., pos, d_sae]``."""
        return torch.stack([self.transcoders[l].pre_activations(mlp_in[l]) for l in range(self.n_layers)])


def _centre(x: Tensor) -> Tensor:
    return x - x.mean(-1, keepdim=True)
