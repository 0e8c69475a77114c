"""Checks for chapter 1, "The residual stream": one function per exercise.

    from course.chapters.ch1_residual_stream import checks as check
    check.logit_lens(logit_lens)          # prints ✓ / ✗ / "not implemented yet"
"""

from __future__ import annotations

import math
import random

import torch

from course.checks.core import Case, Exercise, exercise_functions
from course.data import facts, ioi
from course.chapters.ch1_residual_stream.findings import ioi_batch
from course.data.splits import ioi_split
from course.data.vocabulary import single_token_names

CHAPTER = "ch1_residual_stream"

VISIBLE_PROMPTS = {
    "a batch of one": ["When Mary and John went to the store, John gave a drink to"],
    "a single token": ["The"],
    "a batch of two": ["The capital of Velmoria is", "calc: 36 + 59 = 95"],
    "a long prompt": ["When Anna and Tom went to the park, Tom gave a book to Anna. " * 7],
}


def _prompts(model, hidden: bool) -> dict[str, list[str]]:
    if not hidden:
        return VISIBLE_PROMPTS
    # Fresh inputs the student never saw: IOI and fact prompts drawn from a seed.
    rng = random.Random(2024)
    names = ioi_split(single_token_names(model.tokenizer)).ioi_names
    ioi_texts = [ioi.ioi_prompt(rng, *rng.sample(names, 2)).text for _ in range(3)]
    fact = facts.fact_prompt(rng.choice(facts.countries()), "capital", 0).text
    return {"hidden prompt 1": ioi_texts[:1], "hidden batch of three": ioi_texts,
            "hidden fact prompt": [fact], "hidden single token": ["When"]}


def _caches(model, hidden):
    for label, texts in _prompts(model, hidden).items():
        tokens = model.to_tokens(texts)
        _, cache = model.run_with_cache(tokens)
        yield label, tokens, cache


def _ioi_batch(model, hidden: bool):
    """IOI prompts of equal token length with answer and counterfactual token ids [batch]."""
    return ioi_batch(model, 4 if hidden else 3, seed=7 if hidden else 3)


# -- exercise 1: the forward pass from the weights ------------------------------------------

def _layer_norm_cases(model, hidden):
    g = torch.Generator().manual_seed(11 if hidden else 1)
    d = model.cfg.d_model
    w, b = model.ln1_w[0].detach(), model.ln1_b[0].detach()

    def randn(*shape):   # drawn on the CPU (the generator's device), used on the model's
        return torch.randn(*shape, generator=g).to(model.device)

    return [
        Case("one vector", (randn(1, 1, d), w, b)),
        Case("a batch of streams", (randn(2, 5, d) * 3 + 1, w, b)),
        Case("large values", (randn(3, d) * 100, w, b)),
        # Variance far below 1: here eps matters, and a forgotten eps shows.
        Case("a nearly constant vector", (2 + 1e-3 * randn(1, d), w, b)),
        Case("the final layer norm", (randn(2, 4, d), model.ln_final_w.detach(), model.ln_final_b.detach())),
    ]


def _block_input_cases(ln_name: str):
    def cases(model, hidden):
        out = []
        for label, _, cache in _caches(model, hidden):
            for layer in range(model.cfg.n_layers):
                x = cache[f"blocks.{layer}.{ln_name}.hook_normalized"]
                w = (model.ln1_w if ln_name == "ln1" else model.ln2_w)[layer]
                b = (model.ln1_b if ln_name == "ln1" else model.ln2_b)[layer]
                out.append(Case(f"{label}, layer {layer}", (x * w + b, model, layer)))
        return out
    return cases


def _tokens_cases(model, hidden):
    return [Case(label, (tokens, model)) for label, tokens, _ in _caches(model, hidden)]


def _unbiased_layer_norm(x, w, b, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / (x.var(-1, keepdim=True) + eps).sqrt() * w + b


def _layer_norm_without_eps(x, w, b, eps=1e-5):
    return (x - x.mean(-1, keepdim=True)) / x.std(-1, unbiased=False, keepdim=True) * w + b


def _attention_variant(causal: bool = True, scaled: bool = True, softmax_dim: int = -1, out_bias: bool = True,
                       mask_value: float = float("-inf")):
    def attention(x, model, layer):
        q = torch.einsum("bpm,hmd->bhpd", x, model.W_Q[layer]) + model.b_Q[layer][:, None]
        k = torch.einsum("bpm,hmd->bhpd", x, model.W_K[layer]) + model.b_K[layer][:, None]
        v = torch.einsum("bpm,hmd->bhpd", x, model.W_V[layer]) + model.b_V[layer][:, None]
        scores = q @ k.transpose(-1, -2) / (math.sqrt(model.cfg.d_head) if scaled else 1.0)
        if causal:
            p = x.shape[1]
            scores = scores.masked_fill(torch.ones(p, p, dtype=torch.bool, device=x.device).triu(1), mask_value)
        z = scores.softmax(softmax_dim).nan_to_num(0.0) @ v
        return torch.einsum("bhpd,hdm->bpm", z, model.W_O[layer]) + (model.b_O[layer] if out_bias else 0)
    return attention


def _mlp_exact_gelu(x, model, layer):
    h = torch.nn.functional.gelu(x @ model.W_in[layer] + model.b_in[layer])
    return h @ model.W_out[layer] + model.b_out[layer]


def _forward_without_pos(tokens, model):
    return model.run_with_hooks(tokens, fwd_hooks=[("hook_pos_embed", lambda x, h: torch.zeros_like(x))])


def _forward_mlp_without_ln2(tokens, model):
    from solutions.ch1_residual_stream import attention_layer, layer_norm, mlp_layer

    resid = model.W_E[tokens] + model.W_pos[: tokens.shape[1]]
    for layer in range(model.cfg.n_layers):
        resid = resid + attention_layer(layer_norm(resid, model.ln1_w[layer], model.ln1_b[layer]), model, layer)
        resid = resid + mlp_layer(resid, model, layer)
    return layer_norm(resid, model.ln_final_w, model.ln_final_b) @ model.W_U


def _lens_ignoring_pos(cache, model, pos=-1):
    return cache.apply_ln_final(cache.accumulated_resid(pos=-1)) @ model.W_U


def _forward_without_final_ln(tokens, model):
    _, cache = model.run_with_cache(tokens, names_filter=[f"blocks.{model.cfg.n_layers - 1}.hook_resid_post"])
    return cache["resid_post", model.cfg.n_layers - 1] @ model.W_U


# -- exercises 2-4: the stream as a sum, the logit lens, attribution --------------------------

def _cache_cases(model, hidden):
    return [Case(label, (cache, model)) for label, _, cache in _caches(model, hidden)]


def _lens_cases(model, hidden):
    cases = []
    for label, _, cache in _caches(model, hidden):
        cases.append(Case(f"{label}, last position", (cache, model)))
    label, tokens, cache = next(iter(_caches(model, hidden)))
    cases.append(Case(f"{label}, position 2", (cache, model), {"pos": 2}))
    return cases


def _attribution_cases(model, hidden):
    tokens, answer, counter = _ioi_batch(model, hidden)
    _, cache = model.run_with_cache(tokens)
    return [Case("IOI prompts (answer vs the repeated name)", (cache, model, answer, counter)),
            Case("IOI prompts, answer and counterfactual swapped", (cache, model, counter, answer)),
            Case("IOI prompts, position 3", (cache, model, answer, counter), {"pos": 3})]


def _direction_cases(model, hidden):
    _, answer, counter = _ioi_batch(model, hidden)
    return [Case("IOI answers", (model, answer, counter)), Case("a batch of one", (model, answer[:1], counter[:1]))]


def _lens_without_ln(cache, model, pos=-1):
    return cache.accumulated_resid(pos=pos) @ model.W_U


def _lens_with_final_scale(cache, model, pos=-1):
    return (cache.apply_ln_to_stack(cache.accumulated_resid(pos=pos), pos=pos) + model.ln_final_b) @ model.W_U


def _attribution_without_ln(cache, model, answer, counterfactual, pos=-1):
    direction = model.W_U[:, answer].T - model.W_U[:, counterfactual].T
    return (cache.decompose_resid(pos=pos) * direction).sum(-1)


def _attribution_own_scale(cache, model, answer, counterfactual, pos=-1):
    direction = model.W_U[:, answer].T - model.W_U[:, counterfactual].T
    return (cache.apply_ln_final(cache.decompose_resid(pos=pos)) * direction).sum(-1)


EXERCISES = {ex.name: ex for ex in [
    Exercise(CHAPTER, "layer_norm", _layer_norm_cases, causes=[
        (_unbiased_layer_norm, "torch.var and torch.std divide by n - 1 by default; layer norm divides by n "
                               "(use unbiased=False or correction=0)."),
        (_layer_norm_without_eps, "eps is missing: add it to the variance before the square root.")]),
    Exercise(CHAPTER, "attention_layer", _block_input_cases("ln1"), causes=[
        (_attention_variant(causal=False), "no causal mask: each position may only attend to itself and earlier positions."),
        (_attention_variant(scaled=False), "the scores were not divided by sqrt(d_head)."),
        (_attention_variant(softmax_dim=-2), "the softmax ran over the queries; it runs over the keys (the last "
                                             "axis), so each query's weights sum to 1."),
        (_attention_variant(mask_value=0.0), "the future scores were set to 0, which the softmax still weighs "
                                             "(e⁰ = 1); set them to -inf."),
        (_attention_variant(out_bias=False), "the output bias b_O was left out: the layer returns the sum of the "
                                             "heads' outputs plus b_O.")]),
    Exercise(CHAPTER, "mlp_layer", _block_input_cases("ln2"), causes=[
        (_mlp_exact_gelu, "GPT-2 uses the tanh approximation of GELU (\"gelu_new\"), not the exact erf form.")]),
    Exercise(CHAPTER, "forward_from_weights", _tokens_cases, atol=1e-3, rtol=1e-3, causes=[
        (_forward_without_pos, "the position embedding W_pos was not added to the token embedding."),
        (_forward_without_final_ln, "the final layer norm was not applied before the unembedding."),
        (_forward_mlp_without_ln2, "the MLP read the stream without its layer norm (ln2) first.")]),
    Exercise(CHAPTER, "residual_components", _cache_cases),
    Exercise(CHAPTER, "logit_lens", _lens_cases, atol=1e-3, rtol=1e-3, causes=[
        (_lens_without_ln, "the final layer norm was not applied before the unembedding."),
        (_lens_with_final_scale, "every layer was divided by the final layer's scale; the logit lens treats each "
                                 "layer's stream as if it were final, with its own layer-norm statistics."),
        (_lens_ignoring_pos, "the position asked for (pos) was ignored: pass pos to cache.accumulated_resid.")]),
    Exercise(CHAPTER, "logit_diff_direction", _direction_cases),
    Exercise(CHAPTER, "component_attribution", _attribution_cases, atol=1e-3, rtol=1e-3, causes=[
        (_attribution_without_ln, "the final layer norm's scale was not applied to the components."),
        (_attribution_own_scale, "each component was normalized with its own statistics; use the scale the model "
                                 "really applied to the whole stream (cache.apply_ln_to_stack).")]),
    Exercise(CHAPTER, "head_attribution", _attribution_cases, atol=1e-3, rtol=1e-3),
]}


globals().update(exercise_functions(EXERCISES))
