"""Claims chapter 2 makes about the course model, computed from the model itself.

Each function returns the numbers the chapter prints and the tests assert; none is
typed in anywhere.
"""

from __future__ import annotations

import torch

from course import circuits
from course.data.ioi_held_out import held_out_ioi_prompts


def _held_out_texts(model, n: int = 40, seed: int = 1) -> list[str]:
    """Held-out IOI stories with their answers: plain text for head statistics."""
    return [p.text + p.answer + "." for p in held_out_ioi_prompts(model.tokenizer, n, seed)]


@torch.no_grad()
def previous_token_head(model, min_layer: int = 0) -> dict:
    """The head with the highest previous-token score on held-out text, with the other heads as a
    baseline: {layer, head, score, runner_up (name), runner_up_score, others_median, others_max}."""
    prev = circuits.all_detector_scores(model, _held_out_texts(model))[0, min_layer:]      # [layer, head]
    layer, head = divmod(int(prev.argmax()), model.cfg.n_heads)
    flat = prev.flatten()
    order = flat.argsort(descending=True)
    others = flat[order[1:]]
    second = divmod(int(order[1]), model.cfg.n_heads)
    return {"layer": layer + min_layer, "head": head, "score": float(prev.max()),
            "runner_up": f"L{second[0] + min_layer}H{second[1]}", "runner_up_score": float(others[0]),
            "others_median": float(others.median()), "n_heads": int(flat.numel())}


@torch.no_grad()
def positional_offset_peaks(model, layer: int, head: int, n_pos: int | None = None) -> dict:
    """Where each query position's positional QK scores peak among the keys it can see (j <= i)."""
    scores = circuits.positional_qk(model, layer, head, n_pos).full()
    n = scores.shape[0]
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=scores.device).triu(1), float("-inf"))
    offsets = scores[1:].argmax(-1) - torch.arange(1, n, device=scores.device)     # query 0 sees only itself
    values, counts = offsets.unique(return_counts=True)
    return {"share_at_minus_one": float((offsets == -1).float().mean()),
            "most_common_offset": int(values[counts.argmax()])}


@torch.no_grad()
def offset_baseline(model, layer: int, head: int, n_pos: int | None = None) -> dict:
    """The same share (positional QK peak at offset −1) for every *other* head: its median and maximum."""
    shares = [positional_offset_peaks(model, l, h, n_pos)["share_at_minus_one"]
              for l in range(model.cfg.n_layers) for h in range(model.cfg.n_heads) if (l, h) != (layer, head)]
    shares = torch.tensor(shares)
    return {"others_median": float(shares.median()), "others_max": float(shares.max())}


@torch.no_grad()
def low_rank_savings(model, layer: int, head: int, n_tokens: int = 512, repeats: int = 3) -> dict:
    """Time and memory of the OV circuit's eigenvalues on the first ``n_tokens`` tokens:
    the full ``n x n`` table against the factored form (the full eigendecomposition grows
    as n³, which is why the chapter times a slice rather than all 2048 tokens)."""
    import time

    ids = torch.arange(n_tokens, device=model.device)
    ov = circuits.ov(model, layer, head, ids, ids)

    def best_of(fn):
        times = []
        for _ in range(repeats):
            t = time.perf_counter()
            out = fn()
            times.append(time.perf_counter() - t)
        return min(times), out

    full_s, full_eig = best_of(lambda: torch.linalg.eigvals(ov.full()))
    fact_s, fact_eig = best_of(ov.eigenvalues)
    k = ov.inner
    return {"n_tokens": n_tokens, "full_seconds": full_s, "factored_seconds": fact_s,
            "full_bytes": n_tokens * n_tokens * 4, "factored_bytes": 2 * n_tokens * k * 4 + k * k * 4,
            "largest_full": float(full_eig.abs().max()), "largest_factored": float(fact_eig.abs().max())}


@torch.no_grad()
def ov_positivity(model, embedding=None) -> torch.Tensor:
    """``[layer, head]``: each OV circuit's eigenvalue positivity, sum(Re λ) / sum(|λ|), through
    ``W_E`` or through ``embedding`` (e.g. the effective embedding): +1 copies, −1 suppresses."""
    out = torch.zeros(model.cfg.n_layers, model.cfg.n_heads)
    for layer in range(model.cfg.n_layers):
        for head in range(model.cfg.n_heads):
            eig = circuits.ov(model, layer, head, embedding=embedding).eigenvalues()
            out[layer, head] = float(eig.real.sum() / eig.abs().sum())
    return out


def embedding_comparison(model, plain: torch.Tensor | None = None) -> dict:
    """Positivity through ``W_E`` (``plain``, when already computed by :func:`ov_positivity`) and
    through the effective embedding (``W_E`` plus layer 0's MLP), for every head; ``flips``: heads
    of layers 1 and up whose sign differs between the two."""
    plain = ov_positivity(model) if plain is None else plain
    effective = ov_positivity(model, circuits.effective_embedding(model))
    flips = [f"L{l}H{h}" for l in range(1, model.cfg.n_layers) for h in range(model.cfg.n_heads)
             if plain[l, h] * effective[l, h] < 0 and max(abs(plain[l, h]), abs(effective[l, h])) > 0.2]
    later = plain[1:] - effective[1:]
    return {"plain": plain, "effective": effective, "flips": flips,
            "mean_abs_change_later": float(later.abs().mean())}


@torch.no_grad()
def separate_normalisation_guide(model, n_texts: int = 8) -> dict:
    """How closely layer 0's real attention scores follow the token–token plus position–position
    tables made from embeddings normalised apart (LN1(W_E), LN1(W_pos)), on held-out text.

    Per layer-0 head, the correlation over every (query, key ≤ query) pair between the real scores,
    from LN1(W_E[t] + W_pos[i]), and that sum. Returns ``{"corr": [head], "median", "min"}``."""
    import math

    def ln1(x):
        return torch.nn.functional.layer_norm(x, (model.cfg.d_model,), model.ln1_w[0], model.ln1_b[0])

    corrs = torch.zeros(model.cfg.n_heads)
    reals, approxes = [[] for _ in range(model.cfg.n_heads)], [[] for _ in range(model.cfg.n_heads)]
    for text in _held_out_texts(model, n_texts, seed=3):
        t = model.to_tokens(text)[0]
        n = len(t)
        e, p = model.W_E[t], model.W_pos[:n]
        keep = torch.ones(n, n, dtype=torch.bool, device=e.device).tril()
        for h in range(model.cfg.n_heads):
            def scores(xq, xk):
                q = xq @ model.W_Q[0, h] + model.b_Q[0, h]
                k = xk @ model.W_K[0, h] + model.b_K[0, h]
                return q @ k.T / math.sqrt(model.cfg.d_head)
            real = scores(ln1(e + p), ln1(e + p))
            approx = scores(ln1(e), ln1(e)) + scores(ln1(p), ln1(p))
            reals[h].append(real[keep].cpu())
            approxes[h].append(approx[keep].cpu())
    for h in range(model.cfg.n_heads):
        a, b = torch.cat(reals[h]), torch.cat(approxes[h])
        corrs[h] = torch.corrcoef(torch.stack([a, b]))[0, 1]
    return {"corr": corrs.tolist(), "median": float(corrs.median()), "min": float(corrs.min())}


def guide_verdict(guide: dict) -> str:
    """Chapter 2's sentence on :func:`separate_normalisation_guide`."""
    weak = [f"H{h}" for h, c in enumerate(guide["corr"]) if c < 0.9]
    text = f"median {guide['median']:.2f}, lowest {guide['min']:.2f}: "
    if not weak:
        return text + "a close guide for every head of layer 0"
    if guide["median"] >= 0.9:
        return text + f"a close guide for most heads, a rough one for {', '.join(weak)}"
    return text + "only a rough guide: read the tables as tendencies, not as the scores"
