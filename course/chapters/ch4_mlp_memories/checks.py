"""Checks for chapter 4, "MLPs as key–value memories".

    from course.chapters.ch4_mlp_memories import checks as check
    check.neuron_activations(neuron_activations)
"""

from __future__ import annotations

from functools import lru_cache

import torch

from course.checks.core import Case, Exercise, exercise_functions
from course.data import facts

CHAPTER = "ch4_mlp_memories"


@lru_cache(maxsize=4)
def _stream(model, hidden: bool):
    from course.neurons import collect_activations, text_stream

    s = text_stream(model, n_rows=12, row_len=24, seed=11 if hidden else 7)
    return s.tokens, collect_activations(model, s.tokens, progress=False)


def _last_layer(model):
    return model.cfg.n_layers - 1


def _activation_cases(model, hidden):
    tokens, _ = _stream(model, hidden)
    if hidden:
        return [Case("hidden rows, last layer, batches of 5", (model, tokens, _last_layer(model), 5)),
                Case("hidden rows, layer 0, one batch", (model, tokens[:3], 0, 8))]
    return [Case("12 rows, layer 0, batches of 4", (model, tokens, 0, 4)),
            Case("10 rows in batches of 4 (the last batch is smaller)", (model, tokens[:10], 1, 4)),
            Case("one row, last layer", (model, tokens[:1], _last_layer(model), 4))]


def _context_cases(model, hidden):
    _, acts = _stream(model, hidden)
    neurons = [3, 200, 77] if hidden else [0, 5, 100]
    return [Case(f"layer {l}, neuron {n % acts.shape[-1]}, k={k}", (acts[l], n % acts.shape[-1], k))
            for l, n, k in zip([0, _last_layer(model), 0], neurons, [5, 1, 12])]


def _value_cases(model, hidden):
    picks = torch.tensor([9, 300, 41] if hidden else [0, 5, 17, 511]) % model.cfg.d_mlp
    return [Case(f"layer {l}, neurons {picks.tolist()}", (model, l, picks)) for l in range(model.cfg.n_layers)]


def _agreement_cases(model, hidden):
    from course.neurons import value_logits

    tokens, acts = _stream(model, hidden)
    with torch.no_grad():
        return [Case(f"layer {l}, k_contexts={kc}, k_tokens={kt}",
                     (acts[l], tokens.cpu(), value_logits(model, l).cpu(), kc, kt))
                for l, kc, kt in [(0, 5, 10), (_last_layer(model), 10, 3)][::(-1 if hidden else 1)]]


def _fact_prompts(hidden):
    cs = facts.countries()
    picks = [(cs[7], "sport", 1), (cs[120], "capital", 2)] if hidden else [(cs[0], "capital", 0), (cs[3], "language", 1)]
    return [facts.fact_prompt(c, r, p) for c, r, p in picks]


def _attribution_cases(model, hidden):
    out = []
    for p in _fact_prompts(hidden):
        _, cache = model.run_with_cache(p.text)
        out.append(Case(repr(p.text), (cache, model, model.tokenizer(p.answer, add_special_tokens=False)["input_ids"][0])))
    return out


def _trace_cases(model, hidden):
    from course.tracing import subject_noise, subject_span

    out = []
    kinds = [("mlp", 1), ("attn", 2)] if hidden else [("resid", 1), ("mlp", 2)]
    for i, (p, (kind, window)) in enumerate(zip(_fact_prompts(hidden), kinds)):
        tokens = model.to_tokens(p.text)
        subject = subject_span(model, p.text, p.country)
        answer = model.tokenizer(p.answer, add_special_tokens=False)["input_ids"][0]
        noise = subject_noise(model, 3, subject[1] - subject[0], seed=100 * hidden + i)
        out.append(Case(f"{p.text!r}, {kind}, window {window}", (model, tokens, subject, answer, noise, kind, window)))
    return out


def _key_cases(model, hidden):
    from course.editing.rome import prefixes, with_prefix

    out = []
    for i, p in enumerate(_fact_prompts(hidden) + [_multi_token_subject_prompt(model, hidden)]):
        texts = [with_prefix(pre, p.text) for pre in prefixes(model, 3 + i, seed=20 + hidden)]
        n = len(model.to_str_tokens(" " + p.country, prepend_bos=False))
        out.append(Case(f"{p.text!r} (a subject of {n} token{'s' if n > 1 else ''}) after {len(texts)} prefixes, "
                        f"layer {i % model.cfg.n_layers}", (model, i % model.cfg.n_layers, texts, p.country)))
    return out


def _multi_token_subject_prompt(model, hidden):
    """A fact whose subject is several tokens, where the subject's first and last token differ (every
    country's name is one token in the course's tokenizer, so the subject is a longer phrase)."""
    c = facts.countries()[9 if hidden else 5]
    subject = f"{'Kingdom' if hidden else 'Republic'} of {c.name}"
    return facts.FactPrompt(f"The capital of the {subject} is", " " + c.capital, subject, "capital")


def _moment_cases(model, hidden):
    tokens, acts = _stream(model, hidden)
    g = torch.Generator().manual_seed(5 if hidden else 4)
    return [Case("layer 0 activations [row, pos, d_mlp]", (acts[0],)),
            Case("a small random batch [n, d]", (torch.randn(50, 6, generator=g),))]


def _update_cases(model, hidden):
    g = torch.Generator().manual_seed(9 if hidden else 8)
    cases = []
    for n, d in [(6, 4), (12, 5)]:
        a = torch.randn(3 * n, n, generator=g)
        cases.append(Case(f"random W [{n}, {d}]", (torch.randn(n, d, generator=g), a.T @ a / (3 * n),
                                                   torch.randn(n, generator=g), torch.randn(d, generator=g))))
    return cases


# -- likely mistakes ------------------------------------------------------------------------

def _pre_gelu(model, tokens, layer, batch_size=16):
    _, cache = model.run_with_cache(tokens, names_filter=f"blocks.{layer}.mlp.hook_pre")
    return cache["pre", layer]


def _contexts_pos_row(acts, neuron, k=10):
    values, idx = acts[..., neuron].flatten().topk(k)
    return values, torch.stack([idx % acts.shape[1], idx // acts.shape[1]], -1)


def _values_raw(model, layer, neurons):
    return model.W_out[layer, neurons] @ model.W_U


def _values_from_w_in(model, layer, neurons):
    return model.W_in[layer][:, neurons].T @ model.W_U


def _agreement_same_token(acts, tokens, values, k_contexts=10, k_tokens=10):
    d_mlp = acts.shape[-1]
    top = acts.reshape(-1, d_mlp).topk(k_contexts, dim=0).indices
    promoted = values.topk(k_tokens, dim=-1).indices
    return (tokens.reshape(-1)[top].T[:, :, None] == promoted[:, None, :]).any(-1).float().mean(-1)


def _attribution_without_scale(cache, model, answer):
    post = torch.stack([cache["post", l][0, -1] for l in range(model.cfg.n_layers)])
    rows = model.W_out - model.W_out.mean(-1, keepdim=True)
    return post * (rows * model.ln_final_w @ model.W_U[:, answer])


def _trace(model, tokens, subject, answer, noise, kind, window, noise_everywhere=False, unclipped=False):
    """A causal trace with one of the typical mistakes switched on."""
    from course.tracing.trace import KINDS

    n_samples, n_pos = noise.shape[0], tokens.shape[1]
    start, end = subject
    name = KINDS[kind]
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith(name))

    def corrupt(x, hook):
        x = x.clone()
        if noise_everywhere:
            x += noise.mean(1, keepdim=True)
        else:
            x[:, start:end] += noise
        return x

    out = torch.zeros(model.cfg.n_layers, n_pos)
    for layer in range(model.cfg.n_layers):
        for pos in range(n_pos):
            def restore(x, hook, pos=pos):
                x = x.clone()
                x[:, pos] = cache[hook.name][0, pos]
                return x
            first = max(0, layer - window // 2)
            last = min(model.cfg.n_layers, (first if unclipped else layer - window // 2) + window)
            hooks = [("hook_embed", corrupt)] + [(f"blocks.{l}.{name}", restore) for l in range(first, last)]
            out[layer, pos] = model.run_with_hooks(tokens.repeat(n_samples, 1), hooks)[:, -1].softmax(-1)[:, answer].mean()
    return out


def _trace_noise_everywhere(model, tokens, subject, answer, noise, kind="resid", window=1):
    return _trace(model, tokens, subject, answer, noise, kind, window, noise_everywhere=True)


def _trace_window_unclipped(model, tokens, subject, answer, noise, kind="resid", window=1):
    return _trace(model, tokens, subject, answer, noise, kind, window, unclipped=True)


def _key_at_last_token(model, layer, texts, subject):
    return torch.stack([model.run_with_cache(t, names_filter=f"blocks.{layer}.mlp.hook_post")[1]["post", layer][0, -1]
                        for t in texts]).mean(0)


def _key_at_first_subject_token(model, layer, texts, subject):
    from course.tracing import subject_span

    return torch.stack([model.run_with_cache(t, names_filter=f"blocks.{layer}.mlp.hook_post")[1]["post", layer]
                        [0, subject_span(model, t, subject)[0]] for t in texts]).mean(0)


def _key_single_text(model, layer, texts, subject):
    from course.tracing import subject_span

    t = texts[0]
    return model.run_with_cache(t, names_filter=f"blocks.{layer}.mlp.hook_post")[1]["post", layer][
        0, subject_span(model, t, subject)[1] - 1]


def _key_pre_gelu(model, layer, texts, subject):
    from course.tracing import subject_span

    return torch.stack([model.run_with_cache(t, names_filter=f"blocks.{layer}.mlp.hook_pre")[1]["pre", layer]
                        [0, subject_span(model, t, subject)[1] - 1] for t in texts]).mean(0)


def _moment_centred(acts):
    flat = acts.reshape(-1, acts.shape[-1])
    flat = flat - flat.mean(0)
    return flat.T @ flat / flat.shape[0]


def _update_without_covariance(W, C, k, v):
    return torch.outer(k, v - k @ W) / (k @ k)


EXERCISES = {ex.name: ex for ex in [
    Exercise(CHAPTER, "neuron_activations", _activation_cases, atol=1e-4, rtol=1e-4, causes=[
        (_pre_gelu, "these are the activations before the GELU (mlp.hook_pre); the neurons' outputs are mlp.hook_post.")]),
    Exercise(CHAPTER, "top_contexts", _context_cases, atol=1e-5, rtol=1e-5, causes=[
        (_contexts_pos_row, "the columns are swapped: each row of the second result is (row, position).")]),
    Exercise(CHAPTER, "neuron_value_logits", _value_cases, atol=1e-3, rtol=1e-3, causes=[
        (_values_raw, "the final layer norm was left out: centre each output row and multiply by model.ln_final_w "
                      "before the unembedding."),
        (_values_from_w_in, "that is the neuron's input weight (its key direction, W_in); the value is its row of W_out.")]),
    Exercise(CHAPTER, "key_value_agreement", _agreement_cases, atol=1e-6, rtol=0, causes=[
        (_agreement_same_token, "you compared the value's tokens with the activating token itself; compare with the "
                                "token that follows it (and leave out the last position, which has none).")]),
    Exercise(CHAPTER, "neuron_attribution", _attribution_cases, atol=1e-3, rtol=1e-3, causes=[
        (_attribution_without_scale, "not divided by the final layer norm's scale (cache['ln_final.hook_scale'] at "
                                     "the last position).")]),
    Exercise(CHAPTER, "causal_trace", _trace_cases, atol=1e-4, rtol=1e-3, causes=[
        (_trace_noise_everywhere, "noise went onto every position; only the subject's tokens are corrupted."),
        (_trace_window_unclipped, "near the first layer your window still holds `window` layers (it starts at 0 "
                                  "and runs on); the window is centred on layer l and clipped to the model's "
                                  "layers: range(max(0, l - window // 2), min(n_layers, l - window // 2 + window)).")]),
    Exercise(CHAPTER, "subject_key", _key_cases, atol=1e-4, rtol=1e-4, causes=[
        (_key_at_last_token, "that is the key at the sentence's last token; ROME's key is at the subject's last token."),
        (_key_at_first_subject_token, "that is the key at the subject's *first* token; ROME's key is at its last "
                                      "token (subject_span's end − 1), which differs when the subject is several "
                                      "tokens."),
        (_key_single_text, "that is the key from the first text only; average it over all the texts (the "
                           "same sentence after different prefixes)."),
        (_key_pre_gelu, "these are the activations before the GELU (mlp.hook_pre); the key is the post-GELU "
                        "activation (mlp.hook_post).")]),
    Exercise(CHAPTER, "key_second_moment", _moment_cases, atol=1e-4, rtol=1e-4, causes=[
        (_moment_centred, "you centred the keys (a covariance); ROME uses the uncentred second moment E[k kᵀ].")]),
    Exercise(CHAPTER, "rank_one_update", _update_cases, atol=1e-4, rtol=1e-3, causes=[
        (_update_without_covariance, "C was left out (this is the least-norm change): use C⁻¹k, with "
                                     "torch.linalg.solve(C, k), for the direction.")]),
]}

globals().update(exercise_functions(EXERCISES))
