"""Checks for chapter 2, "Attention: the QK and OV circuits".

    from course.chapters.ch2_qk_ov_circuits import checks as check
    check.attention_pattern(attention_pattern)
"""

from __future__ import annotations

import math

import torch

from course.checks.core import Case, Exercise, exercise_functions

CHAPTER = "ch2_qk_ov_circuits"

VISIBLE_PROMPTS = {
    "a batch of one": ["When Mary and John went to the store, John gave a drink to"],
    "a single token": ["The"],
    "a repeated sequence": ["calc: 12 + 34 = 46 calc: 12 + 34 = 46"],
}
HIDDEN_PROMPTS = {
    "hidden prompt": ["After Anna and Tom arrived at the park, Tom handed the ball to"],
    "hidden batch of two": ["The language of Drebovia is", "People in Stalland love to play"],
}


def _normalized_streams(model, hidden):
    for label, texts in (HIDDEN_PROMPTS if hidden else VISIBLE_PROMPTS).items():
        _, cache = model.run_with_cache(model.to_tokens(texts))
        for layer in range(model.cfg.n_layers):
            x = cache[f"blocks.{layer}.ln1.hook_normalized"] * model.ln1_w[layer] + model.ln1_b[layer]
            yield f"{label}, layer {layer}", x, layer, cache


def _stream_cases(model, hidden):
    return [Case(label, (x, model, layer)) for label, x, layer, _ in _normalized_streams(model, hidden)]


def _pattern_cases(model, hidden):
    return [Case(label, (cache["pattern", layer],)) for label, _, layer, cache in _normalized_streams(model, hidden)]


def _heads(model, hidden):
    heads = [(layer, head) for layer in range(model.cfg.n_layers) for head in range(model.cfg.n_heads)]
    return heads[1::2] if hidden else heads[::2]


def _token_ids(model, hidden):
    text = " Anna Tom gave ball park the" if hidden else " Mary John store drink to a"
    return model.to_tokens(text, prepend_bos=False)[0]


def _qk_cases(model, hidden):
    ids = _token_ids(model, hidden)
    return [Case(f"head L{l}H{h}", (model, l, h, ids, ids.flip(0)[:4])) for l, h in _heads(model, hidden)]


def _pos_cases(model, hidden):
    return [Case(f"head L{l}H{h}, {n} positions", (model, l, h, n))
            for (l, h), n in zip(_heads(model, hidden), [16, 1, 128, 40])]


def _ov_cases(model, hidden):
    ids = _token_ids(model, hidden)
    return [Case(f"head L{l}H{h}", (model, l, h, ids)) for l, h in _heads(model, hidden)]


def _head_cases(model, hidden):
    return [Case(f"head L{l}H{h}", (model, l, h)) for l, h in _heads(model, hidden)]


def _head_output_cases(model, hidden):
    out = []
    for label, texts in (HIDDEN_PROMPTS if hidden else VISIBLE_PROMPTS).items():
        _, cache = model.run_with_cache(model.to_tokens(texts))
        out += [Case(f"{label}, head L{l}H{h}", (cache, model, l, h)) for l, h in _heads(model, hidden)[:2]]
    return out


# -- likely mistakes ------------------------------------------------------------------------

def _scores(x, model, layer, scaled=True, masked=True):
    q = torch.einsum("bpm,hmd->bhpd", x, model.W_Q[layer]) + model.b_Q[layer][:, None]
    k = torch.einsum("bpm,hmd->bhpd", x, model.W_K[layer]) + model.b_K[layer][:, None]
    scores = q @ k.transpose(-1, -2) / (math.sqrt(model.cfg.d_head) if scaled else 1.0)
    n = x.shape[1]
    return scores.masked_fill(torch.ones(n, n, dtype=torch.bool, device=x.device).triu(1), float("-inf")) if masked else scores


def _scores_unscaled(x, model, layer):
    return _scores(x, model, layer, scaled=False)


def _scores_unmasked(x, model, layer):
    return _scores(x, model, layer, masked=False)


def _pattern_softmax_wrong_axis(x, model, layer):
    return _scores(x, model, layer).nan_to_num(neginf=-1e30).softmax(-2)


def _detectors_including_first_query(pattern):
    n = pattern.shape[-1]
    q = torch.arange(n)
    prev = torch.cat([pattern[..., :1, 0], pattern[..., q[1:], q[1:] - 1]], -1).mean((0, -1))
    cur = pattern[..., q, q].mean((0, -1))
    first = pattern[..., q, 0].mean((0, -1))
    return torch.stack([prev, cur, first])


def _qk_without_ln(model, layer, head, query_tokens, key_tokens):
    q = model.W_E[query_tokens] @ model.W_Q[layer, head] + model.b_Q[layer, head]
    k = model.W_E[key_tokens] @ model.W_K[layer, head] + model.b_K[layer, head]
    return q @ k.T / math.sqrt(model.cfg.d_head)


def _ln1(model, layer, rows, bias=True):
    return torch.nn.functional.layer_norm(rows, (model.cfg.d_model,), model.ln1_w[layer],
                                          model.ln1_b[layer] if bias else None)


def _pos_qk(model, layer, head, n_pos, ln=True, bias=True, scaled=True):
    rows = _ln1(model, layer, model.W_pos[:n_pos]) if ln else model.W_pos[:n_pos]
    q = rows @ model.W_Q[layer, head] + (model.b_Q[layer, head] if bias else 0)
    k = rows @ model.W_K[layer, head] + (model.b_K[layer, head] if bias else 0)
    return q @ k.T / (math.sqrt(model.cfg.d_head) if scaled else 1.0)


def _pos_qk_unscaled(model, layer, head, n_pos):
    return _pos_qk(model, layer, head, n_pos, scaled=False)


def _pos_qk_no_biases(model, layer, head, n_pos):
    return _pos_qk(model, layer, head, n_pos, bias=False)


def _pos_qk_no_ln(model, layer, head, n_pos):
    return _pos_qk(model, layer, head, n_pos, ln=False)


def _ov(model, layer, head, tokens, ln_bias=True, with_biases=False, ln=True):
    rows = _ln1(model, layer, model.W_E[tokens], bias=ln_bias) if ln else model.W_E[tokens]
    v = rows @ model.W_V[layer, head] + (model.b_V[layer, head] if with_biases else 0)
    out = v @ model.W_O[layer, head] + (model.b_O[layer] if with_biases else 0)
    return out @ model.W_U[:, tokens]


def _ov_with_value_biases(model, layer, head, tokens):
    return _ov(model, layer, head, tokens, with_biases=True)


def _ov_without_ln_bias(model, layer, head, tokens):
    return _ov(model, layer, head, tokens, ln_bias=False)


def _ov_without_ln(model, layer, head, tokens):
    return _ov(model, layer, head, tokens, ln=False)


def _head_output_with_bias(cache, model, layer, head):
    pattern = cache["pattern", layer][:, head]
    return pattern @ cache["v", layer][:, :, head] @ model.W_O[layer, head] + model.b_O[layer]


def _head_output_pattern_transposed(cache, model, layer, head):
    pattern = cache["pattern", layer][:, head]
    return pattern.transpose(-1, -2) @ cache["v", layer][:, :, head] @ model.W_O[layer, head]


def _copying_score_by_column(model, layer, head):
    tokens = torch.arange(model.cfg.d_vocab, device=model.W_E.device)
    return float((_ov(model, layer, head, tokens).argmax(0) == tokens).float().mean())


def _ov_transposed(model, layer, head, tokens):
    rows = torch.nn.functional.layer_norm(model.W_E[tokens], (model.cfg.d_model,), model.ln1_w[layer], model.ln1_b[layer])
    return (rows @ model.W_V[layer, head] @ model.W_O[layer, head] @ model.W_U[:, tokens]).T


def _eigenvalue_multiset(eig):
    """Order-free form: conjugate pairs tie in size, so any order of them is right."""
    eig = torch.as_tensor(eig)
    if not eig.is_complex():
        raise ValueError("expected complex eigenvalues (torch.linalg.eigvals returns them)")
    size = eig.abs()
    if (size[1:] > size[:-1] * (1 + 1e-4) + 1e-6).any():
        raise ValueError("the eigenvalues are not sorted by absolute value, largest first: "
                         "eig[eig.abs().argsort(descending=True)]")
    return torch.stack([eig.real.sort().values, eig.imag.sort().values])


EXERCISES = {ex.name: ex for ex in [
    Exercise(CHAPTER, "attention_scores", _stream_cases, causes=[
        (_scores_unscaled, "the scores were not divided by sqrt(d_head)."),
        (_scores_unmasked, "no causal mask: set the scores above the diagonal (future keys) to -inf.")]),
    Exercise(CHAPTER, "attention_pattern", _stream_cases, causes=[
        (_pattern_softmax_wrong_axis, "the softmax ran over the query axis; it runs over the keys (the last axis).")]),
    Exercise(CHAPTER, "detector_scores", _pattern_cases, causes=[
        (_detectors_including_first_query, "query position 0 has no previous token: average over positions 1 and later.")]),
    Exercise(CHAPTER, "token_qk_circuit", _qk_cases, atol=1e-3, rtol=1e-3, causes=[
        (_qk_without_ln, "the embeddings were not put through the layer's first layer norm (ln1) first.")]),
    Exercise(CHAPTER, "positional_qk_circuit", _pos_cases, atol=1e-3, rtol=1e-3, causes=[
        (_pos_qk_unscaled, "the scores were not divided by sqrt(d_head), as the model's attention scores are."),
        (_pos_qk_no_biases, "the query and key biases b_Q, b_K were left out; the convention here includes them."),
        (_pos_qk_no_ln, "the position embeddings were not put through the layer's ln1 (scale and bias) first.")]),
    Exercise(CHAPTER, "ov_circuit", _ov_cases, atol=1e-3, rtol=1e-3, causes=[
        (_ov_transposed, "rows and columns are swapped: row i is the token attended to, column j the logit written."),
        (_ov_with_value_biases, "b_V and b_O were added; they do not depend on the token attended to and are left "
                                "out of the OV circuit."),
        (_ov_without_ln_bias, "ln1's bias was dropped: the head reads the embedding through ln1 with its scale "
                              "*and* bias."),
        (_ov_without_ln, "the embeddings were not put through the layer's ln1 first.")]),
    Exercise(CHAPTER, "copying_score", _head_cases, atol=1e-6, rtol=0, causes=[
        (_copying_score_by_column, "you took the argmax down each column (which token most raises logit j); "
                                   "the score asks, for each token attended to (a row), whether its own logit "
                                   "is the one raised most: argmax along each row.")]),
    Exercise(CHAPTER, "ov_eigenvalues", _head_cases, atol=1e-3, rtol=1e-3, canonical=_eigenvalue_multiset),
    Exercise(CHAPTER, "head_output", _head_output_cases, atol=1e-4, rtol=1e-4, causes=[
        (_head_output_with_bias, "b_O was added; it belongs to the whole layer, not to one head, and is left out."),
        (_head_output_pattern_transposed, "the pattern was transposed: pattern[batch, query, key] @ v mixes the "
                                          "values of the keys for each query.")]),
]}

globals().update(exercise_functions(EXERCISES))
