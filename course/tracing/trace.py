"""Restore one clean state (or a window of layers) at one position into a run with a noised subject.

Every position of a prompt is restored in one batched forward pass per layer: row block
``i`` of the batch restores position ``i``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm   # a text bar: no widget left behind in saved notebooks or the book

from course.data import facts

KINDS = {"resid": "hook_resid_post", "mlp": "hook_mlp_out", "attn": "hook_attn_out"}
BUCKETS = ("before the subject", "subject, first", "subject, middle", "subject, last",
           "after the subject", "last token")


@torch.no_grad()
def noise_scale(model, multiple: float = 3.0) -> float:
    """``multiple`` times the standard deviation of the subjects' token embeddings (as ROME)."""
    ids = model.tokenizer([" " + c.name for c in facts.countries()], add_special_tokens=False)["input_ids"]
    return multiple * float(model.W_E[torch.tensor([i for row in ids for i in row])].std())


def subject_noise(model, n_samples: int, n_subject: int, seed: int = 0, scale: float | None = None) -> Tensor:
    """Gaussian noise ``[n_samples, n_subject, d_model]`` at ROME's scale, the same for a seed."""
    g = torch.Generator().manual_seed(seed)
    scale = noise_scale(model) if scale is None else scale
    return (torch.randn(n_samples, n_subject, model.cfg.d_model, generator=g) * scale).to(model.device)


def _layers_in_window(layer: int, window: int, n_layers: int) -> range:
    return range(max(0, layer - window // 2), min(n_layers, layer - window // 2 + window))


@torch.no_grad()
def trace_fact(model, tokens: Tensor, subject: tuple[int, int], answer: int, noise: Tensor,
               kind: str = "resid", window: int = 1) -> dict:
    """Probability of ``answer`` with the subject noised and one state restored.

    Returns ``{"restored": [layer, pos], "clean": p, "corrupt": p}`` (means over the noise samples);
    ``restored[l, i]``: the clean ``kind`` output of layers ``l - window//2 ...`` (``window`` of them)
    put back at position ``i``.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {list(KINDS)}; got {kind!r}.")
    n_layers, n_pos, n_samples = model.cfg.n_layers, tokens.shape[1], noise.shape[0]
    names = [f"blocks.{l}.{KINDS[kind]}" for l in range(n_layers)]
    clean_logits, cache = model.run_with_cache(tokens, names_filter=names)
    start, end = subject

    def corrupt(x, hook):
        x = x.clone()
        x[:, start:end] += noise.repeat(x.shape[0] // n_samples, 1, 1)
        return x

    batch = tokens.repeat(n_pos * n_samples, 1)                    # row r restores position r // n_samples
    rows = torch.arange(batch.shape[0], device=tokens.device)
    where = rows // n_samples

    def restore(x, hook):
        x = x.clone()
        x[rows, where] = cache[hook.name][0, where]
        return x

    corrupt_p = model.run_with_hooks(tokens.repeat(n_samples, 1), [("hook_embed", corrupt)])[:, -1].softmax(-1)
    restored = torch.zeros(n_layers, n_pos)
    for layer in range(n_layers):
        hooks = [("hook_embed", corrupt)] + [(names[l], restore) for l in _layers_in_window(layer, window, n_layers)]
        p = model.run_with_hooks(batch, hooks)[:, -1].softmax(-1)[:, answer]
        restored[layer] = p.view(n_pos, n_samples).mean(-1).cpu()
    return {"restored": restored, "clean": float(clean_logits[0, -1].softmax(-1)[answer]),
            "corrupt": float(corrupt_p[:, answer].mean())}


def bucket_positions(n_pos: int, subject: tuple[int, int]) -> list[list[int]]:
    """Positions of a prompt by role, in the order of ``BUCKETS`` (a one-token subject is its own last token)."""
    start, end = subject
    last = n_pos - 1
    return [list(range(0, start)), [start] if end - start > 1 else [], list(range(start + 1, end - 1)), [end - 1],
            [i for i in range(end, last)], [last]]


@dataclass
class TraceAverage:
    """``recovered[kind]``: ``[layer, bucket]``, the share of the clean-minus-corrupt probability
    that restoring brings back, averaged over facts (and over the positions of a bucket)."""

    kinds: list[str]
    buckets: tuple[str, ...]
    recovered: dict[str, Tensor]
    clean: float
    corrupt: float
    n_facts: int
    window: int


def average_traces(model, traced_facts, kinds=tuple(KINDS), window: int = 1, n_samples: int = 8,
                   seed: int = 0, progress: bool = True) -> TraceAverage:
    """Causal traces of many facts, aligned by position role and averaged (facts whose subject
    has no middle token do not count towards that bucket)."""
    sums = {k: torch.zeros(model.cfg.n_layers, len(BUCKETS)) for k in kinds}
    counts = torch.zeros(len(BUCKETS))
    clean = corrupt = 0.0
    for i, f in enumerate(tqdm(traced_facts, desc="tracing", delay=1.0, disable=not progress, leave=False)):
        noise = subject_noise(model, n_samples, f.subject[1] - f.subject[0], seed=seed + i)
        buckets = bucket_positions(f.tokens.shape[1], f.subject)
        for kind in kinds:
            t = trace_fact(model, f.tokens, f.subject, f.answer, noise, kind, window)
            recovered = (t["restored"] - t["corrupt"]) / max(t["clean"] - t["corrupt"], 1e-6)
            for b, pos in enumerate(buckets):
                if pos:
                    sums[kind][:, b] += recovered[:, pos].mean(-1)
        counts += torch.tensor([float(bool(pos)) for pos in buckets])
        clean, corrupt = clean + t["clean"], corrupt + t["corrupt"]
    n = len(traced_facts)
    return TraceAverage(list(kinds), BUCKETS, {k: v / counts.clamp(min=1) for k, v in sums.items()},
                        clean / n, corrupt / n, n, window)
