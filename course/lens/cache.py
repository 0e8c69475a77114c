"""The activation cache: what one run wrote at each hook point, and ways to slice it.

Index it with full names (``cache["blocks.0.attn.hook_pattern"]``) or short ones
(``cache["pattern", 0]``). The helpers turn the residual stream into stacks along
a leading "component" axis, the form used for the logit lens and for direct logit
attribution.
"""

from __future__ import annotations

from typing import Iterator

import torch
from torch import Tensor

from course.lens.hook_points import act_name, check_hook_name
from course.lens.instrument import Lazy


class ActivationCache:
    def __init__(self, store: dict[str, Tensor], model):
        self._store = store
        self.model = model

    # -- dict-like access --------------------------------------------------------------
    def _key(self, key) -> str:
        name = act_name(*key) if isinstance(key, tuple) else act_name(key)
        if name not in self._store:
            valid = list(self._store)
            if name in self.model.hook_names:
                raise KeyError(f"{name!r} was not cached in this run: widen names_filter to include it.")
            check_hook_name(name, valid)   # raises with a suggestion
        return name

    def __getitem__(self, key) -> Tensor:
        name = self._key(key)
        value = self._store[name]
        if isinstance(value, Lazy):                 # computed on first read
            value = self._store[name] = value().detach()
        return value

    def __contains__(self, key) -> bool:
        try:
            self._key(key)
            return True
        except KeyError:
            return False

    def __iter__(self) -> Iterator[str]:
        return iter(self._store)

    def __len__(self) -> int:
        return len(self._store)

    def keys(self):
        return self._store.keys()

    def items(self):
        return [(k, self[k]) for k in self._store]

    def to(self, device) -> "ActivationCache":
        return ActivationCache({k: v.to(device) for k, v in self.items()}, self.model)

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hook points: {', '.join(list(self)[:4])}, ...)"

    # -- the residual stream -------------------------------------------------------------
    def _layers(self, layer: int | None) -> int:
        n = self.model.cfg.n_layers
        return n if layer is None else (layer if layer >= 0 else n + 1 + layer)

    @staticmethod
    def _at(t: Tensor, pos) -> Tensor:
        """Select positions on the pos axis (-2) of ``[..., pos, d]``; an int keeps no pos axis."""
        return t if pos is None else t[..., pos, :]

    def accumulated_resid(self, layer: int | None = None, pos=None, return_labels: bool = False):
        """The stream before each layer up to ``layer``, then after the last when layer is None.

        Returns ``[layer + 1, batch, (pos,) d_model]``: row 0 is the embeddings alone,
        row L the stream entering layer L; with ``layer=None`` the final row is the
        stream after the last block (what the final layer norm sees).
        """
        n = self._layers(layer)
        rows = [self[f"blocks.{i}.hook_resid_pre"] for i in range(min(n, self.model.cfg.n_layers))]
        labels = [f"L{i}" for i in range(len(rows))]
        if n == self.model.cfg.n_layers:
            rows.append(self[f"blocks.{n - 1}.hook_resid_post"])
            labels.append("final")
        out = torch.stack([self._at(r, pos) for r in rows])
        return (out, labels) if return_labels else out

    def decompose_resid(self, layer: int | None = None, pos=None, return_labels: bool = False):
        """The stream as the writes that sum to it: ``[component, batch, (pos,) d_model]``.

        Components: token embedding, position embedding, then each layer's attention
        and MLP output, up to (not including) ``layer``; all layers when None.
        """
        n = self._layers(layer)
        parts = [("embed", self["hook_embed"]), ("pos_embed", self["hook_pos_embed"])]
        for i in range(min(n, self.model.cfg.n_layers)):
            parts += [(f"attn_{i}", self[f"blocks.{i}.hook_attn_out"]),
                      (f"mlp_{i}", self[f"blocks.{i}.hook_mlp_out"])]
        pos_embed = parts[1][1]
        # The position embedding has batch 1 in HF; give it the batch size of the rest.
        parts[1] = ("pos_embed", pos_embed.expand_as(parts[0][1]))
        out = torch.stack([self._at(t, pos) for _, t in parts])
        return (out, [name for name, _ in parts]) if return_labels else out

    def stack_head_results(self, layer: int | None = None, pos=None, return_labels: bool = False):
        """Each head's write into the stream, ``[layer * head, batch, (pos,) d_model]``.

        Computed from the cached ``hook_z`` and ``W_O`` (no bias: the output bias belongs
        to no head, and is added once per layer).
        """
        n = self._layers(layer)
        out, labels = [], []
        for i in range(min(n, self.model.cfg.n_layers)):
            z = self._at(self[f"blocks.{i}.attn.hook_z"].transpose(-2, -3), pos)  # [b, H, (pos,) d_head]
            z = z.movedim(1, 0)                                                   # [H, b, (pos,) d_head]
            w_o = self.model.W_O[i]                                               # [H, d_head, d_model]
            out.append(torch.einsum("h...d,hdm->h...m", z, w_o))
            labels += [f"L{i}H{h}" for h in range(self.model.cfg.n_heads)]
        out = torch.cat(out)
        return (out, labels) if return_labels else out

    # -- the final layer norm ------------------------------------------------------------
    def apply_ln_final(self, resid: Tensor) -> Tensor:
        """The final layer norm as the model applies it, to each row with its own statistics.

        ``[..., d_model] -> [..., d_model]``; used by the logit lens, where each row is a
        whole (partial) residual stream.
        """
        return self.model.hf.transformer.ln_f(resid)

    def apply_ln_to_stack(self, stack: Tensor, pos=None) -> Tensor:
        """Put components that sum to the final stream through the final layer norm, linearly.

        Each component is centred, divided by the scale the model really used (cached
        ``ln_final.hook_scale``) and multiplied by the norm's weight. The results sum,
        plus the norm's bias, to the normalized final stream, so ``(...) @ W_U``
        attributes the logits to components. ``stack``: ``[component, batch, (pos,) d_model]``.
        """
        scale = self._at(self["ln_final.hook_scale"], pos)          # [batch, (pos,) 1]
        centred = stack - stack.mean(-1, keepdim=True)
        return centred / scale * self.model.hf.transformer.ln_f.weight
