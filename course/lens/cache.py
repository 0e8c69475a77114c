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
    def __init__(self, store: dict[str, Tensor], model, keep_graph: bool = False, has_batch_dim: bool = True):
        self._store = store
        self.model = model
        self.keep_graph = keep_graph
        self.has_batch_dim = has_batch_dim

    # -- dict-like access --------------------------------------------------------------
    def _key(self, key) -> str:
        if isinstance(key, str) and key in self._store:
            return key
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
            value = value()
            value = value if self.keep_graph else value.detach()
            if not self.has_batch_dim:
                value = value[0]
            self._store[name] = value
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

    def values(self):
        return [self[k] for k in self._store]

    def items(self):
        return [(k, self[k]) for k in self._store]

    def to(self, device) -> "ActivationCache":
        return ActivationCache({k: v.to(device) for k, v in self.items()}, self.model, self.keep_graph,
                               self.has_batch_dim)

    def remove_batch_dim(self) -> "ActivationCache":
        """Drop the batch axis of a batch-1 cache, in place (``[1, pos, ...]`` -> ``[pos, ...]``)."""
        if not self.has_batch_dim:
            return self
        for name, value in self._store.items():
            batch = value.shape[0] if isinstance(value, Tensor) else 1
            if batch != 1:
                raise ValueError(f"remove_batch_dim needs a batch of one; {name} has batch {batch}.")
        self._store = {k: v[0] if isinstance(v, Tensor) else v for k, v in self._store.items()}
        self.has_batch_dim = False
        return self

    def __repr__(self) -> str:
        return f"ActivationCache({len(self)} hook points: {', '.join(list(self)[:4])}, ...)"

    # -- the residual stream -------------------------------------------------------------
    def _layers(self, layer: int | None) -> int:
        """How many blocks a helper covers: None and -1 mean all of them; -2 all but the last."""
        n = self.model.cfg.n_layers
        layer = n if layer is None else (layer if layer >= 0 else n + 1 + layer)
        if not 0 <= layer <= n:
            raise ValueError(f"layer must lie in [0, {n}] (or be negative, counted from the end); got {layer}.")
        return layer

    @staticmethod
    def _at(t: Tensor, pos_slice, dim: int = -2) -> Tensor:
        """Select positions on axis ``dim``: an int drops the axis; a tuple is ``slice(*tuple)``;
        a slice, a list or a tensor of indices keep it (as TransformerLens's ``Slice``)."""
        if pos_slice is None:
            return t
        if isinstance(pos_slice, tuple):
            pos_slice = slice(*pos_slice)
        elif isinstance(pos_slice, list):
            pos_slice = torch.tensor(pos_slice, device=t.device)
        return t[(slice(None),) * (t.ndim + dim if dim < 0 else dim) + (pos_slice,)]

    def accumulated_resid(self, layer: int | None = None, incl_mid: bool = False, apply_ln: bool = False,
                          pos_slice=None, mlp_input: bool = False, return_labels: bool = False, pos=None):
        """The stream entering each layer up to and including ``layer``; all layers and the final
        stream when ``layer`` is None, -1 or n_layers.

        Returns ``[layer + 1, batch, (pos,) d_model]`` (more with ``incl_mid`` / ``mlp_input``):
        row 0 is the embeddings alone, row L the stream entering layer L, and with ``layer=None``
        the last row is the stream after the last block (what the final layer norm sees).
        ``apply_ln``: for the final layer, the final layer norm as the model applies it (each row
        with its own statistics, weight and bias: ``@ W_U`` is the logit lens); otherwise
        :meth:`apply_ln_to_stack` of that layer. ``pos`` is the course's short name for ``pos_slice``.
        """
        pos_slice = pos if pos_slice is None else pos_slice
        n, final = self._layers(layer), self.model.cfg.n_layers
        rows, labels = [], []
        for i in range(n + 1):
            if i == final:
                rows.append(self[f"blocks.{i - 1}.hook_resid_post"])
                labels.append("final")
                continue
            rows.append(self[f"blocks.{i}.hook_resid_pre"])
            labels.append(f"L{i}")
            if (incl_mid and i < n) or (mlp_input and i == n):
                rows.append(self[f"blocks.{i}.hook_resid_mid"])
                labels.append(f"L{i}_mid")
        out = torch.stack([self._at(r, pos_slice) for r in rows])
        if apply_ln:
            out = (self.apply_ln_final(out) if n == final else
                   self.apply_ln_to_stack(out, n, mlp_input=mlp_input, pos_slice=pos_slice))
        return (out, labels) if return_labels else out

    def decompose_resid(self, layer: int | None = None, mlp_input: bool = False, mode: str = "all",
                        apply_ln: bool = False, pos_slice=None, incl_embeds: bool = True,
                        return_labels: bool = False, pos=None):
        """The stream as the writes that sum to it: ``[component, batch, (pos,) d_model]``.

        Components: token embedding, position embedding (``incl_embeds``), then each layer's
        attention and MLP output (``mode``: ``"all"``, ``"attn"`` or ``"mlp"``) before ``layer``
        (all layers when None); ``mlp_input`` adds layer ``layer``'s attention output.
        """
        if mode not in ("all", "attn", "mlp"):
            raise ValueError(f'mode is "all", "attn" or "mlp"; got {mode!r}.')
        pos_slice = pos if pos_slice is None else pos_slice
        n = self._layers(layer)
        parts = [("embed", self["hook_embed"]), ("pos_embed", self["hook_pos_embed"])] if incl_embeds else []
        for i in range(n):
            if mode != "mlp":
                parts.append((f"attn_{i}", self[f"blocks.{i}.hook_attn_out"]))
            if mode != "attn":
                parts.append((f"mlp_{i}", self[f"blocks.{i}.hook_mlp_out"]))
        if mlp_input and mode != "mlp" and n < self.model.cfg.n_layers:
            parts.append((f"attn_{n}", self[f"blocks.{n}.hook_attn_out"]))
        out = torch.stack([self._at(t, pos_slice) for _, t in parts]) if parts else self._empty(pos_slice)
        if apply_ln:
            out = self.apply_ln_to_stack(out, n, mlp_input=mlp_input, pos_slice=pos_slice)
        return (out, [name for name, _ in parts]) if return_labels else out

    def _empty(self, pos_slice, width: int | None = None) -> Tensor:
        """A stack of no components: ``[0, batch, (pos,) d_model]``."""
        like = self._at(self["hook_embed"], pos_slice)
        return like.new_zeros(0, *like.shape[:-1], width or like.shape[-1])

    def _finish(self, parts: list[Tensor], labels: list[str], n: int, pos_slice, incl_remainder: bool,
                apply_ln: bool, return_labels: bool):
        """Stack per-layer parts; append the remainder (the stream entering block ``n`` minus their
        sum) and put them through that block's layer norm when asked."""
        out = torch.cat(parts) if parts else self._empty(pos_slice)
        if incl_remainder:
            stream = self.accumulated_resid(layer=n, pos_slice=pos_slice)[-1]
            out, labels = torch.cat([out, (stream - out.sum(0))[None]]), labels + ["remainder"]
        if apply_ln:
            out = self.apply_ln_to_stack(out, n, pos_slice=pos_slice)
        return (out, labels) if return_labels else out

    def stack_head_results(self, layer: int | None = None, return_labels: bool = False,
                           incl_remainder: bool = False, pos_slice=None, apply_ln: bool = False, pos=None):
        """Each head's write into the stream, ``[layer * head, batch, (pos,) d_model]``, for the heads
        of the layers before ``layer`` (all when None or -1; none, an empty stack, for 0).

        Computed from the cached ``hook_z`` and ``W_O`` (no bias: the output bias belongs to no
        head). ``incl_remainder`` appends the rest of the stream entering ``layer``.
        """
        pos_slice = pos if pos_slice is None else pos_slice
        n = self._layers(layer)
        out, labels = [], []
        for i in range(n):
            z = self._at(self[f"blocks.{i}.attn.hook_z"], pos_slice, dim=-3)      # [b, (pos,) H, d_head]
            out.append(torch.einsum("...hd,hdm->h...m", z, self.model.W_O[i]))
            labels += [f"L{i}H{h}" for h in range(self.model.cfg.n_heads)]
        return self._finish(out, labels, n, pos_slice, incl_remainder, apply_ln, return_labels)

    def stack_neuron_results(self, layer: int | None = None, pos_slice=None, neuron_slice=None,
                             return_labels: bool = False, incl_remainder: bool = False, apply_ln: bool = False):
        """Each MLP neuron's write into the stream, ``post * W_out[neuron]``:
        ``[layer * neuron, batch, (pos,) d_model]`` for the layers before ``layer``.

        ``neuron_slice`` picks neurons (an int, a slice, a tuple for ``slice(*t)``, a list).
        Large: ``n_layers * d_mlp`` copies of the stream; slice positions and neurons.
        """
        n = self._layers(layer)
        neurons = self._at(torch.arange(self.model.cfg.d_mlp), neuron_slice, dim=0).reshape(-1)
        out, labels = [], []
        for i in range(n):
            post = self._at(self[f"blocks.{i}.mlp.hook_post"], pos_slice)[..., neurons]   # [b, (pos,) N]
            w_out = self.model.W_out[i][neurons].to(post.device)    # a cache may be kept on another device
            out.append(torch.einsum("...n,nm->n...m", post, w_out))
            labels += [f"L{i}N{int(j)}" for j in neurons]
        return self._finish(out, labels, n, pos_slice, incl_remainder, apply_ln, return_labels)

    # -- layer norms -------------------------------------------------------------------------
    def apply_ln_final(self, resid: Tensor) -> Tensor:
        """The final layer norm as the model applies it, to each row with its own statistics.

        ``[..., d_model] -> [..., d_model]``; used by the logit lens, where each row is a
        whole (partial) residual stream.
        """
        return self.model.hf.transformer.ln_f(resid)

    def apply_ln_to_stack(self, residual_stack: Tensor, layer: int | None = None, mlp_input: bool = False,
                          pos_slice=None, batch_slice=None, has_batch_dim: bool = True, pos=None) -> Tensor:
        """Put components that sum to a stream through that stream's layer norm, linearly.

        The layer norm in front of ``layer`` (``ln2`` with ``mlp_input``; the final one for None,
        -1 or n_layers). Each component is centred, divided by the scale the model really used
        (the cached ``hook_scale``) and multiplied by the norm's **weight**; the results sum,
        plus the norm's bias, to the norm's output. So ``stack @ W_U`` attributes the logits
        to components (chapter 1), and ``stack @ W_Q[layer]`` the queries.

        TransformerLens leaves the weight out (with its default ``fold_ln=True`` the weight is
        folded into ``W_U``, ``W_Q``...): our ``apply_ln_to_stack(x) @ W_U`` equals its
        ``apply_ln_to_stack(x) @ W_U`` on a folded model. ``residual_stack``:
        ``[component, batch, (pos,) d_model]``.
        """
        pos_slice = pos if pos_slice is None else pos_slice
        n, final = self._layers(layer), self.model.cfg.n_layers
        if n == final:
            name, ln = "ln_final.hook_scale", self.model.hf.transformer.ln_f
        else:
            name = f"blocks.{n}.ln{2 if mlp_input else 1}.hook_scale"
            ln = self.model.hf.transformer.h[n].ln_2 if mlp_input else self.model.hf.transformer.h[n].ln_1
        scale = self._at(self[name], pos_slice)                        # [batch, (pos,) 1]
        if has_batch_dim and self.has_batch_dim and batch_slice is not None:
            residual_stack = self._at(residual_stack, batch_slice, dim=1)
            scale = self._at(scale, batch_slice, dim=0)
        centred = residual_stack - residual_stack.mean(-1, keepdim=True)
        return centred / scale * ln.weight

    def logit_attrs(self, residual_stack: Tensor, tokens, incorrect_tokens=None, pos_slice=None,
                    batch_slice=None, has_batch_dim: bool = True) -> Tensor:
        """Direct logit attribution: each component's share of the logit of ``tokens`` (minus the
        logit of ``incorrect_tokens``): ``[component, *batch_and_pos]``.

        ``residual_stack`` goes through the final layer norm (:meth:`apply_ln_to_stack`) and onto
        the tokens' unembedding directions; with ``pos_slice`` / ``batch_slice`` as the stack was
        sliced. The components' attributions plus the final norm's bias term sum to the logit.
        """
        directions = self.model.tokens_to_residual_directions(tokens)
        if incorrect_tokens is not None:
            wrong = self.model.tokens_to_residual_directions(incorrect_tokens)
            if wrong.shape != directions.shape:
                raise ValueError(f"tokens and incorrect_tokens must have the same shape; got "
                                 f"{tuple(directions.shape[:-1])} and {tuple(wrong.shape[:-1])}.")
            directions = directions - wrong
        scaled = self.apply_ln_to_stack(residual_stack, None, pos_slice=pos_slice, batch_slice=batch_slice,
                                        has_batch_dim=has_batch_dim)
        return (scaled * directions).sum(-1)
