"""``HookedGPT2``: a Hugging Face GPT-2 seen through TransformerLens-style names.

The wrapped ``GPT2LMHeadModel`` does every computation; the lens adds hook points,
an activation cache, tokenization helpers and weight views. Its logits are the HF
model's logits.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Iterable, Sequence

import torch
from torch import Tensor

from course.lens import weights as W
from course.lens.cache import ActivationCache
from course.lens.errors import PromptError
from course.lens.hook_points import NameFilter, act_name, all_hook_names, check_hook_name, select
from course.lens.instrument import ATTN_IMPLEMENTATION, HookFn, Instrument, Lazy


@dataclass(frozen=True)
class LensConfig:
    n_layers: int
    n_heads: int
    d_model: int
    d_head: int
    d_mlp: int
    d_vocab: int
    n_ctx: int
    act_fn: str

    @classmethod
    def from_hf(cls, config) -> "LensConfig":
        return cls(
            n_layers=config.n_layer, n_heads=config.n_head, d_model=config.n_embd,
            d_head=config.n_embd // config.n_head, d_mlp=config.n_inner or 4 * config.n_embd,
            d_vocab=config.vocab_size, n_ctx=config.n_positions, act_fn=config.activation_function,
        )


class HookedGPT2:
    """A GPT-2 with hook points. Build one with :func:`course.load_model`."""

    def __init__(self, hf_model, tokenizer=None, name: str = "model"):
        self.hf = hf_model.eval()
        self.tokenizer = tokenizer
        self.name = name
        self.cfg = LensConfig.from_hf(hf_model.config)
        self.hf.set_attn_implementation(ATTN_IMPLEMENTATION)
        self.hook_names = all_hook_names(self.cfg.n_layers)
        self._stacks = W.consolidate(self.hf)

    def __repr__(self) -> str:
        c = self.cfg
        return (f"HookedGPT2({self.name!r}: {c.n_layers} layers, {c.n_heads} heads, d_model {c.d_model}, "
                f"context {c.n_ctx}, vocab {c.d_vocab}, on {self.device})")

    # -- device ------------------------------------------------------------------------
    @property
    def device(self) -> torch.device:
        return self.hf.transformer.wte.weight.device

    def to(self, device) -> "HookedGPT2":
        self.hf.to(device)
        self._stacks = W.consolidate(self.hf)   # .to() gives each parameter its own storage again
        return self

    # -- tokens ------------------------------------------------------------------------
    def _need_tokenizer(self):
        if self.tokenizer is None:
            raise PromptError(f"{self.name} has no tokenizer: pass token ids (a LongTensor [batch, pos]) instead of text.")
        return self.tokenizer

    def to_tokens(self, text: str | Sequence[str], prepend_bos: bool = True) -> Tensor:
        """Text -> token ids ``[batch, pos]`` on the model's device (right-padded for a list)."""
        tok = self._need_tokenizer()
        texts = [text] if isinstance(text, str) else list(text)
        if not texts or any(not isinstance(t, str) for t in texts):
            raise PromptError("to_tokens takes a string or a list of strings.")
        if any(t == "" for t in texts):
            raise PromptError("The prompt is empty: give at least one character of text.")
        rows = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
        if prepend_bos:
            rows = [[tok.bos_token_id] + r for r in rows]
        width = max(map(len, rows))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.bos_token_id
        ids = torch.full((len(rows), width), pad, dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return self._check_tokens(ids)

    def to_str_tokens(self, text_or_tokens, prepend_bos: bool = True) -> list[str]:
        """One string per token of a single prompt (text or ``[pos]`` / ``[1, pos]`` ids)."""
        tok = self._need_tokenizer()
        if isinstance(text_or_tokens, str):
            ids = self.to_tokens(text_or_tokens, prepend_bos)[0]
        else:
            ids = torch.as_tensor(text_or_tokens)
            if ids.ndim == 2 and ids.shape[0] == 1:
                ids = ids[0]
            if ids.ndim != 1:
                raise PromptError(f"to_str_tokens takes one prompt; got tokens of shape {tuple(ids.shape)}.")
        return [tok.decode([int(i)]) for i in ids]

    def to_string(self, tokens) -> str | list[str]:
        tok = self._need_tokenizer()
        tokens = torch.as_tensor(tokens)
        if tokens.ndim == 0:
            tokens = tokens[None]
        return tok.decode(tokens) if tokens.ndim == 1 else tok.batch_decode(tokens)

    def to_single_token(self, text: str) -> int:
        ids = self._need_tokenizer()(text, add_special_tokens=False)["input_ids"]
        if len(ids) != 1:
            raise PromptError(f"{text!r} is {len(ids)} tokens, not one: {self.to_str_tokens(text, False)}.")
        return ids[0]

    def _check_tokens(self, tokens) -> Tensor:
        if isinstance(tokens, (str, list, tuple)) and (isinstance(tokens, str) or all(isinstance(t, str) for t in tokens)):
            return self.to_tokens(tokens)
        if not isinstance(tokens, Tensor):
            raise PromptError(f"Expected text or a LongTensor of token ids [batch, pos]; got {type(tokens).__name__}.")
        if tokens.dtype not in (torch.long, torch.int32, torch.int64):
            raise PromptError(f"Token ids must be integers (torch.long); got {tokens.dtype}. Use model.to_tokens(text).")
        if tokens.ndim == 1:
            tokens = tokens[None]
        if tokens.ndim != 2:
            raise PromptError(f"Token ids must have shape [batch, pos]; got {tuple(tokens.shape)}.")
        if tokens.shape[1] == 0:
            raise PromptError("The prompt is empty (0 tokens): give at least one token.")
        if tokens.shape[1] > self.cfg.n_ctx:
            raise PromptError(f"The prompt is {tokens.shape[1]} tokens but {self.name}'s context is "
                              f"{self.cfg.n_ctx}: shorten it, or keep only the last {self.cfg.n_ctx} tokens.")
        if int(tokens.min()) < 0 or int(tokens.max()) >= self.cfg.d_vocab:
            raise PromptError(f"Token ids must lie in [0, {self.cfg.d_vocab}); got {int(tokens.min())}..{int(tokens.max())}.")
        return tokens.long().to(self.device)

    # -- running -------------------------------------------------------------------------
    def forward(self, tokens, attention_mask: Tensor | None = None) -> Tensor:
        """Logits ``[batch, pos, d_vocab]`` for text or token ids."""
        return self._logits(self._check_tokens(tokens), attention_mask)

    __call__ = forward

    def _logits(self, ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        return self.hf(input_ids=ids, attention_mask=attention_mask, use_cache=False).logits

    def _resolve_hooks(self, fwd_hooks: Iterable) -> dict[str, list[HookFn]]:
        fns: dict[str, list[HookFn]] = {}
        for item in fwd_hooks:
            try:
                where, fn = item
            except (TypeError, ValueError):
                raise PromptError("fwd_hooks is a list of (hook name, function) pairs.") from None
            names = [n for n in self.hook_names if where(n)] if callable(where) else [
                check_hook_name(act_name(where), self.hook_names)]
            for n in names:
                fns.setdefault(n, []).append(fn)
        return fns

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable = ()):
        """Keep ``fwd_hooks`` active for the calls inside the ``with`` block."""
        with Instrument(self.hf, self.cfg.n_heads, self._resolve_hooks(fwd_hooks)):
            yield self

    def run_with_hooks(self, tokens, fwd_hooks: Iterable = (), attention_mask=None) -> Tensor:
        """Logits with ``fwd_hooks`` (``[(name or predicate, fn(activation, hook))]``) active."""
        ids = self._check_tokens(tokens)
        with self.hooks(fwd_hooks):
            return self._logits(ids, attention_mask)

    def run_with_cache(self, tokens, names_filter: NameFilter = None, fwd_hooks: Iterable = (),
                       attention_mask=None, device=None) -> tuple[Tensor, ActivationCache]:
        """(logits, cache) with every hook point that ``names_filter`` selects stored.

        ``names_filter``: None (all but the per-head ``attn.hook_result``), a name, a list
        of names, or a predicate on names. Cached tensors are detached; with
        ``fwd_hooks`` the cache holds the values after those hooks changed them.
        """
        ids = self._check_tokens(tokens)
        store: dict[str, Tensor] = {}
        fns = self._resolve_hooks(fwd_hooks)

        def save(x, hook):
            if isinstance(x, Lazy):                 # resolved by the cache when first read
                store[hook.name] = x if device is None else Lazy(lambda: x().to(device))
            else:
                store[hook.name] = x.detach() if device is None else x.detach().to(device)

        save.accepts_lazy = True

        for name in select(names_filter, self.hook_names):
            fns.setdefault(name, []).append(save)
        with Instrument(self.hf, self.cfg.n_heads, fns):
            logits = self._logits(ids, attention_mask)
        return logits, ActivationCache(store, self)

    # -- weight views ------------------------------------------------------------------------
    def _views(self):
        if not W.is_consolidated(self.hf, self._stacks):
            self._stacks = W.consolidate(self.hf)
        return self._stacks

    @property
    def W_E(self) -> Tensor:
        """Token embedding ``[d_vocab, d_model]``."""
        return self.hf.transformer.wte.weight

    @property
    def W_pos(self) -> Tensor:
        """Position embedding ``[n_ctx, d_model]``."""
        return self.hf.transformer.wpe.weight

    @property
    def W_U(self) -> Tensor:
        """Unembedding ``[d_model, d_vocab]`` (tied to ``W_E`` in GPT-2)."""
        return self.hf.lm_head.weight.T

    @property
    def b_U(self) -> Tensor:
        """GPT-2 has no unembedding bias: zeros ``[d_vocab]``."""
        bias = self.hf.lm_head.bias
        return bias if bias is not None else torch.zeros(self.cfg.d_vocab, device=self.device)

    W_Q = property(lambda self: W.qkv_weight(self._views(), 0, self.cfg.n_heads),
                   doc="Queries ``[layer, head, d_model, d_head]``.")
    W_K = property(lambda self: W.qkv_weight(self._views(), 1, self.cfg.n_heads),
                   doc="Keys ``[layer, head, d_model, d_head]``.")
    W_V = property(lambda self: W.qkv_weight(self._views(), 2, self.cfg.n_heads),
                   doc="Values ``[layer, head, d_model, d_head]``.")
    b_Q = property(lambda self: W.qkv_bias(self._views(), 0, self.cfg.n_heads), doc="``[layer, head, d_head]``.")
    b_K = property(lambda self: W.qkv_bias(self._views(), 1, self.cfg.n_heads), doc="``[layer, head, d_head]``.")
    b_V = property(lambda self: W.qkv_bias(self._views(), 2, self.cfg.n_heads), doc="``[layer, head, d_head]``.")
    W_O = property(lambda self: W.o_weight(self._views(), self.cfg.n_heads),
                   doc="Head outputs ``[layer, head, d_head, d_model]``.")
    b_O = property(lambda self: self._views()["o_b"], doc="``[layer, d_model]``.")
    W_in = property(lambda self: self._views()["in_w"], doc="MLP input ``[layer, d_model, d_mlp]``.")
    b_in = property(lambda self: self._views()["in_b"], doc="``[layer, d_mlp]``.")
    W_out = property(lambda self: self._views()["out_w"], doc="MLP output ``[layer, d_mlp, d_model]``.")
    b_out = property(lambda self: self._views()["out_b"], doc="``[layer, d_model]``.")
    ln1_w = property(lambda self: self._views()["ln1_w"], doc="``[layer, d_model]``.")
    ln1_b = property(lambda self: self._views()["ln1_b"], doc="``[layer, d_model]``.")
    ln2_w = property(lambda self: self._views()["ln2_w"], doc="``[layer, d_model]``.")
    ln2_b = property(lambda self: self._views()["ln2_b"], doc="``[layer, d_model]``.")

    @property
    def ln_final_w(self) -> Tensor:
        return self.hf.transformer.ln_f.weight

    @property
    def ln_final_b(self) -> Tensor:
        return self.hf.transformer.ln_f.bias
