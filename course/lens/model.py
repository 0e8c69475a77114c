"""``HookedGPT2``: a Hugging Face GPT-2 seen through TransformerLens-style names.

The wrapped ``GPT2LMHeadModel`` holds every parameter; the lens adds hook points, an
activation cache, tokenization helpers, generation and weight views. Its logits are the
HF model's logits.

Conventions (which TransformerLens setting our numbers equal; README "Using the toolkit"):
weights and activations are TransformerLens's with ``fold_ln=False`` and no centring,
except that ``hook_pos_embed`` is ``[batch, pos, d_model]``, masked scores are ``-inf``
and ``ln*.hook_normalized`` is before the norm's weight and bias (TransformerLens 3.9 has
the same, folded or not). ``cache.apply_ln_to_stack`` includes the norm's weight, so
``apply_ln_to_stack(x) @ W_U`` and ``logit_attrs`` equal TransformerLens with
``fold_ln=True`` (the tests check both against TransformerLens 3.9).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Sequence

import torch
from torch import Tensor

from course.lens import weights as W
from course.lens.cache import ActivationCache
from course.lens.factored import FactoredMatrix
from course.lens.errors import LensError, PromptError
from course.lens.hook_points import NameFilter, act_name, all_hook_names, check_hook_name, select
from course.lens.instrument import ATTN_IMPLEMENTATION, HookFn, HookPoint, Instrument, Lazy


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
        self._points = {name: HookPoint(name) for name in self.hook_names}
        self._default_names: list[str] | None = None
        self._added: list[_Added] = []              # hooks kept by add_hook / hooks()
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
    def forward(self, input, return_type: str | None = "logits", loss_per_token: bool = False,
                attention_mask: Tensor | None = None):
        """Logits ``[batch, pos, d_vocab]`` for text or token ids, with the model's added hooks active.

        ``return_type``: ``"logits"``, ``"loss"`` (mean next-token cross-entropy, or
        ``[batch, pos - 1]`` with ``loss_per_token=True``), ``"both"`` (logits, loss) or None.
        """
        return self.run_with_hooks(input, return_type=return_type, loss_per_token=loss_per_token,
                                   attention_mask=attention_mask)

    __call__ = forward

    def _logits(self, ids: Tensor, attention_mask: Tensor | None) -> Tensor:
        return self.hf(input_ids=ids, attention_mask=attention_mask, use_cache=False).logits

    def _output(self, logits: Tensor, ids: Tensor, return_type, loss_per_token: bool, attention_mask):
        if return_type not in RETURN_TYPES:
            raise PromptError(f"return_type must be one of {RETURN_TYPES}; got {return_type!r}.")
        if return_type == "logits" or return_type is None:
            return logits if return_type else None
        loss = lm_cross_entropy_loss(logits, ids, attention_mask, loss_per_token)
        return loss if return_type == "loss" else (logits, loss)

    # -- hooks -------------------------------------------------------------------------
    def _names_for(self, where) -> list[str]:
        if callable(where):
            return [n for n in self.hook_names if where(n)]
        return [check_hook_name(act_name(*where) if isinstance(where, tuple) else act_name(where), self.hook_names)]

    def _pairs(self, hooks: Iterable, what: str):
        for item in hooks:
            try:
                where, fn = item
            except (TypeError, ValueError):
                raise PromptError(f"{what} is a list of (hook name, function) pairs.") from None
            for name in self._names_for(where):
                yield name, fn

    def add_hook(self, name, hook: HookFn, dir: str = "fwd", is_permanent: bool = False, prepend: bool = False):
        """Keep ``hook(activation, hook_point)`` on ``name`` (a name or a predicate on names) for
        every later run, until :meth:`reset_hooks`. ``dir="bwd"``: it gets the gradient there."""
        if dir not in ("fwd", "bwd"):
            raise PromptError(f'dir is "fwd" or "bwd"; got {dir!r}.')
        entries = [_Added(dir, n, hook, is_permanent) for n, _ in self._pairs([(name, hook)], "add_hook")]
        self._added = entries + self._added if prepend else self._added + entries
        return entries

    def reset_hooks(self, including_permanent: bool = False) -> None:
        """Remove the hooks added with :meth:`add_hook` (the permanent ones too if asked)."""
        self._added = [] if including_permanent else [h for h in self._added if h.permanent]

    @contextlib.contextmanager
    def hooks(self, fwd_hooks: Iterable = (), bwd_hooks: Iterable = (), reset_hooks_end: bool = True):
        """Keep ``fwd_hooks`` / ``bwd_hooks`` active for every lens call inside the ``with`` block
        (``model(...)``, ``run_with_cache``, ``generate``...); removed at the end."""
        mine = [e for name, fn in self._pairs(fwd_hooks, "fwd_hooks") for e in self.add_hook(name, fn, "fwd")]
        mine += [e for name, fn in self._pairs(bwd_hooks, "bwd_hooks") for e in self.add_hook(name, fn, "bwd")]
        try:
            yield self
        finally:
            if reset_hooks_end:
                ids = {id(e) for e in mine}
                self._added = [h for h in self._added if id(h) not in ids]

    def _instrument(self, fwd_hooks: Iterable = (), bwd_hooks: Iterable = (), graph: bool = False,
                    save=None, save_names: Iterable[str] = (), save_grad=None) -> Instrument:
        """Added hooks first, then this call's hooks, then the cache's savers (which see the edits)."""
        fns: dict[str, list] = {}
        bwd: dict[str, list] = {}
        for h in self._added:
            (fns if h.dir == "fwd" else bwd).setdefault(h.name, []).append(h.fn)
        for name, fn in self._pairs(fwd_hooks, "fwd_hooks"):
            fns.setdefault(name, []).append(fn)
        for name, fn in self._pairs(bwd_hooks, "bwd_hooks"):
            bwd.setdefault(name, []).append(fn)
        for name in save_names:
            fns.setdefault(name, []).append(save)
            if save_grad is not None:
                bwd.setdefault(name, []).append(save_grad)
        return Instrument(self.hf, self.cfg.n_heads, fns, bwd, self._points, graph)

    def run_with_hooks(self, input, fwd_hooks: Iterable = (), bwd_hooks: Iterable = (),
                       reset_hooks_end: bool = True, return_type: str | None = "logits",
                       loss_per_token: bool = False, attention_mask: Tensor | None = None):
        """The output with ``fwd_hooks`` (``[(name or predicate, fn(activation, hook))]``) active.

        ``bwd_hooks`` are attached to the activations' gradients: they run when you call
        ``.backward()`` on (something computed from) the output.
        """
        ids = self._check_tokens(input)
        if not reset_hooks_end:
            for name, fn in self._pairs(fwd_hooks, "fwd_hooks"):
                self.add_hook(name, fn, "fwd")
            for name, fn in self._pairs(bwd_hooks, "bwd_hooks"):
                self.add_hook(name, fn, "bwd")
            fwd_hooks = bwd_hooks = ()
        if not (self._added or fwd_hooks or bwd_hooks):
            logits = self._logits(ids, attention_mask)               # nothing to hook: HF's own forward
        else:
            with self._instrument(fwd_hooks, bwd_hooks):
                logits = self._logits(ids, attention_mask)
        return self._output(logits, ids, return_type, loss_per_token, attention_mask)

    def run_with_cache(self, input, names_filter: NameFilter = None, fwd_hooks: Iterable = (), device=None,
                       remove_batch_dim: bool = False, incl_bwd: bool = False, keep_graph: bool = False,
                       metric: Callable[[Tensor], Tensor] | None = None, return_type: str | None = "logits",
                       loss_per_token: bool = False, attention_mask: Tensor | None = None):
        """(output, cache) with every hook point that ``names_filter`` selects stored.

        ``names_filter``: None (all but the per-head ``attn.hook_result``), a name, a list
        of names, or a predicate on names. Cached tensors are detached; with ``fwd_hooks``
        (or hooks added to the model) the cache holds the values after those hooks.

        Gradients: ``incl_bwd=True`` also differentiates one number, ``metric(output)`` (or
        the output itself, e.g. with ``return_type="loss"``), and caches its gradient at each
        point as ``"<name>_grad"`` (TransformerLens's convention), for attribution patching.
        ``keep_graph=True`` keeps the cached tensors in the autograd graph, so
        ``torch.autograd.grad(logits[0, -1, t], cache["resid_mid", 1])`` backpropagates from
        any output to any activation. Neither accumulates gradients into the parameters.
        """
        ids = self._check_tokens(input)
        store: dict[str, Tensor] = {}
        names = self._select(names_filter)
        grad_needed = incl_bwd or keep_graph

        def save(x, hook):
            if isinstance(x, Lazy):                 # resolved by the cache when first read
                store[hook.name] = x if device is None else Lazy(lambda: x().to(device))
            else:
                x = x if keep_graph or not x.requires_grad else x.detach()
                store[hook.name] = x if device is None else x.to(device)

        save.accepts_lazy = True

        def save_grad(grad, hook):
            store[hook.name + "_grad"] = grad.detach() if device is None else grad.detach().to(device)

        instrument = self._instrument(fwd_hooks, (), grad_needed, save, names, save_grad if incl_bwd else None)
        with torch.enable_grad() if grad_needed else contextlib.nullcontext(), instrument:
            out = self._output(self._logits(ids, attention_mask), ids, return_type, loss_per_token, attention_mask)
            if incl_bwd:
                target = metric(out) if metric is not None else out
                if not isinstance(target, Tensor) or target.numel() != 1:
                    raise LensError("incl_bwd=True differentiates one number: pass metric=fn(output) giving "
                                    "a scalar (e.g. a logit difference), or return_type=\"loss\".")
                inputs = [t for t in instrument.inputs if t.requires_grad]
                torch.autograd.grad(target, inputs, retain_graph=keep_graph, allow_unused=True)
        cache = ActivationCache(store, self, keep_graph=keep_graph)
        if remove_batch_dim:
            cache.remove_batch_dim()
        return out, cache

    def _select(self, names_filter: NameFilter) -> list[str]:
        if names_filter is None:                    # the common case: resolved once
            if self._default_names is None:
                self._default_names = select(None, self.hook_names)
            return self._default_names
        return select(names_filter, self.hook_names)

    # -- generating ----------------------------------------------------------------------
    @torch.no_grad()
    def generate(self, input, max_new_tokens: int = 10, stop_at_eos: bool = True, eos_token_id: int | None = None,
                 do_sample: bool = False, top_k: int | None = None, top_p: float | None = None,
                 temperature: float = 1.0, seed: int | None = None, prepend_bos: bool = True,
                 return_type: str = "input", fwd_hooks: Iterable = ()):
        """Continue a prompt token by token: greedy by default, sampled with ``do_sample=True``
        (reproducible with ``seed``). Every hook active on the model applies at every step
        (``with model.hooks(fwd_hooks=[...]):`` steers generation); each step reruns the whole
        sequence, so a hook on all positions sees the new tokens too.

        ``return_type``: ``"input"`` (text for text, tokens for tokens), ``"str"`` or ``"tokens"``.
        """
        ids = self.to_tokens(input, prepend_bos) if _is_text(input) else self._check_tokens(input)
        if _is_text(input) and not isinstance(input, str) and len({len(self.to_tokens(t, prepend_bos)[0])
                                                                    for t in input}) > 1:
            raise PromptError("generate takes prompts of equal length in tokens: give them one at a time.")
        if return_type not in ("input", "str", "tokens"):
            raise PromptError(f'return_type is "input", "str" or "tokens"; got {return_type!r}.')
        eos = eos_token_id if eos_token_id is not None else getattr(self.tokenizer, "eos_token_id", None)
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        finished = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
        for _ in range(max_new_tokens):
            if ids.shape[1] >= self.cfg.n_ctx:
                break                                                  # the context is full
            logits = self.run_with_hooks(ids, fwd_hooks)[:, -1].float()
            next_ids = sample_next(logits, do_sample, top_k, top_p, temperature, generator)
            if stop_at_eos and eos is not None:
                next_ids = torch.where(finished, eos, next_ids)
                finished |= next_ids == eos
            ids = torch.cat([ids, next_ids[:, None]], dim=1)
            if stop_at_eos and eos is not None and bool(finished.all()):
                break
        if return_type == "tokens" or (return_type == "input" and not _is_text(input)):
            return ids
        text = self.to_string(ids[:, 1:] if prepend_bos and _is_text(input) else ids)
        return text[0] if isinstance(input, str) else text

    # -- directions and factored circuits ------------------------------------------------------
    def tokens_to_residual_directions(self, tokens) -> Tensor:
        """The unembedding direction of each token: ``[..., d_model]`` (``[d_model]`` for one token).

        ``tokens``: a token id, a one-token string, or a tensor of ids of any shape.
        """
        if isinstance(tokens, str):
            tokens = self.to_single_token(tokens)
        if isinstance(tokens, int):
            return self.W_U[:, tokens]
        tokens = torch.as_tensor(tokens, device=self.device)
        return self.W_U[:, tokens].movedim(0, -1)

    @property
    def W_E_pos(self) -> Tensor:
        """Token and position embeddings stacked: ``[d_vocab + n_ctx, d_model]`` (a copy)."""
        return torch.cat([self.W_E, self.W_pos], dim=0)

    @property
    def QK(self) -> FactoredMatrix:
        """Each head's ``W_Q W_Kᵀ``, kept factored: ``[layer, head, d_model, d_model]``."""
        return FactoredMatrix(self.W_Q, self.W_K.transpose(-1, -2))

    @property
    def OV(self) -> FactoredMatrix:
        """Each head's ``W_V W_O``, kept factored: ``[layer, head, d_model, d_model]``."""
        return FactoredMatrix(self.W_V, self.W_O)

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


RETURN_TYPES = ("logits", "loss", "both", None)


@dataclass(frozen=True, eq=False)
class _Added:
    """A hook added to the model with :meth:`HookedGPT2.add_hook`."""

    dir: str
    name: str
    fn: HookFn
    permanent: bool


def _is_text(x) -> bool:
    return isinstance(x, str) or (isinstance(x, (list, tuple)) and bool(x) and all(isinstance(t, str) for t in x))


def lm_cross_entropy_loss(logits: Tensor, tokens: Tensor, attention_mask: Tensor | None = None,
                          per_token: bool = False) -> Tensor:
    """Next-token cross-entropy: ``[batch, pos - 1]`` per token, else the mean (over unmasked pairs)."""
    log_probs = logits.log_softmax(-1)[:, :-1]
    predicted = log_probs.gather(-1, tokens[:, 1:, None])[..., 0]
    if attention_mask is not None:
        mask = (attention_mask[:, :-1] * attention_mask[:, 1:]).to(predicted.dtype)
        predicted = predicted * mask
        n = mask.sum()
    else:
        n = predicted.numel()
    return -predicted if per_token else -predicted.sum() / n


def sample_next(logits: Tensor, do_sample: bool, top_k, top_p, temperature: float, generator) -> Tensor:
    """One token per row of ``logits [batch, d_vocab]``: the argmax, or a sample."""
    if not do_sample or temperature == 0:
        return logits.argmax(-1)
    logits = logits / temperature
    if top_k is not None:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p                 # keep the smallest set reaching top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    probs = logits.softmax(-1).cpu()
    return torch.multinomial(probs, 1, generator=generator)[:, 0].to(logits.device)
