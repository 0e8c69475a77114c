"""course.lens: same logits as the HF model, hook points that add up, patching, weight views."""

from __future__ import annotations

import pytest
import torch

from course.lens import HookedGPT2, HookReturnError, PromptError, UnknownHookError, act_name
from tests.conftest import random_hf_model

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_logits_match_hf_exactly(tokenizer, device, tokens):
    ref = random_hf_model().to(device)
    lens = HookedGPT2(random_hf_model(), tokenizer).to(device)
    ids = tokens.to(device)
    with torch.no_grad():
        want = ref(ids).logits
        assert (lens(ids) - want).abs().max() <= 1e-5
        logits, cache = lens.run_with_cache(ids, names_filter=lambda n: True)
        assert (logits - want).abs().max() <= 1e-5
    assert len(cache) == len(lens.hook_names)


def test_every_hook_point_has_the_documented_shape(model, tokens):
    b, p = tokens.shape
    c = model.cfg
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: True)
    assert cache["hook_embed"].shape == (b, p, c.d_model)
    assert cache["blocks.0.attn.hook_q"].shape == (b, p, c.n_heads, c.d_head)
    assert cache["blocks.0.attn.hook_z"].shape == (b, p, c.n_heads, c.d_head)
    assert cache["blocks.1.attn.hook_pattern"].shape == (b, c.n_heads, p, p)
    assert cache["blocks.1.attn.hook_result"].shape == (b, p, c.n_heads, c.d_model)
    assert cache["blocks.0.mlp.hook_post"].shape == (b, p, c.d_mlp)
    assert cache["blocks.0.ln1.hook_scale"].shape == (b, p, 1)
    assert cache["ln_final.hook_scale"].shape == (b, p, 1)


def test_head_results_plus_bias_equal_attn_out(model, tokens):
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: True)
    for layer in range(model.cfg.n_layers):
        total = cache["result", layer].sum(2) + model.b_O[layer]
        torch.testing.assert_close(total, cache["attn_out", layer], atol=1e-5, rtol=1e-5)
    stacked = cache.stack_head_results()
    assert stacked.shape[0] == model.cfg.n_layers * model.cfg.n_heads
    torch.testing.assert_close(stacked[: model.cfg.n_heads].sum(0) + model.b_O[0], cache["attn_out", 0],
                               atol=1e-5, rtol=1e-5)


def test_decomposed_stream_sums_to_the_last_resid_post(model, tokens):
    _, cache = model.run_with_cache(tokens)
    parts, labels = cache.decompose_resid(return_labels=True)
    assert labels[:2] == ["embed", "pos_embed"] and len(labels) == 2 + 2 * model.cfg.n_layers
    torch.testing.assert_close(parts.sum(0), cache["resid_post", model.cfg.n_layers - 1], atol=1e-5, rtol=1e-5)


def test_pattern_rows_sum_to_one_and_are_causal(model, tokens):
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_pattern"))
    for layer in range(model.cfg.n_layers):
        pattern = cache["pattern", layer]
        torch.testing.assert_close(pattern.sum(-1), torch.ones_like(pattern.sum(-1)))
        assert pattern.triu(diagonal=1).abs().max() == 0


def test_accumulated_resid_and_final_layer_norm_give_the_logits(model, tokens):
    logits, cache = model.run_with_cache(tokens)
    acc = cache.accumulated_resid(pos=-1)
    assert acc.shape == (model.cfg.n_layers + 1, tokens.shape[0], model.cfg.d_model)
    torch.testing.assert_close(cache.apply_ln_final(acc[-1]) @ model.W_U, logits[:, -1], atol=1e-4, rtol=1e-4)
    parts = cache.apply_ln_to_stack(cache.decompose_resid(pos=-1), pos=-1)
    torch.testing.assert_close((parts.sum(0) + model.ln_final_b) @ model.W_U, logits[:, -1], atol=1e-4, rtol=1e-4)


def test_names_filter_caches_only_what_is_asked(model, tokens):
    _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.attn.hook_pattern", ("resid_pre", 1)])
    assert set(cache.keys()) == {"blocks.0.attn.hook_pattern", "blocks.1.hook_resid_pre"}
    with pytest.raises(KeyError, match="names_filter"):
        cache["blocks.0.hook_mlp_out"]
    assert ("pattern", 0) in cache and ("pattern", 1) not in cache


def test_patching_changes_the_output_and_ablation_matches_a_weight_edit(tokenizer, tokens):
    m = HookedGPT2(random_hf_model(), tokenizer)
    clean = m(tokens).detach()

    def ablate_head_1(z, hook):
        z = z.clone()
        z[:, :, 1] = 0
        return z

    ablated = m.run_with_hooks(tokens, fwd_hooks=[(act_name("z", 0), ablate_head_1)]).detach()
    assert (ablated - clean).abs().max() > 1e-3
    torch.testing.assert_close(m(tokens), clean)                 # hooks are gone afterwards
    with torch.no_grad():                                        # the same ablation through the weight view
        m.W_O[0, 1] = 0
    torch.testing.assert_close(m(tokens), ablated, atol=1e-5, rtol=1e-5)


def test_resid_mid_and_layer_norm_scale_can_be_patched(model, tokens):
    _, clean = model.run_with_cache(tokens)
    zeroed = model.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_mid", lambda x, h: torch.zeros_like(x))])
    _, cache = model.run_with_cache(tokens, fwd_hooks=[("blocks.1.hook_resid_mid", lambda x, h: torch.zeros_like(x))],
                                    names_filter=["blocks.1.hook_resid_mid"])
    assert cache["resid_mid", 1].abs().max() < 1e-5
    frozen = clean["ln_final.hook_scale"] * 2
    out = model.run_with_hooks(tokens, fwd_hooks=[("ln_final.hook_scale", lambda x, h: frozen)])
    assert not torch.allclose(out, zeroed)
    assert not torch.allclose(out, model(tokens))


def test_head_result_patch_feeds_through(model, tokens):
    base = model(tokens).detach()
    out = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_result", lambda r, h: r)])
    torch.testing.assert_close(out, base, atol=1e-5, rtol=1e-5)    # identity through the per-head sum
    out = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.attn.hook_result", lambda r, h: r * 0)])
    assert (out - base).abs().max() > 1e-3


def test_weight_views_are_views_on_hf_parameters(model):
    c = model.cfg
    assert model.W_Q.shape == (c.n_layers, c.n_heads, c.d_model, c.d_head)
    assert model.W_O.shape == (c.n_layers, c.n_heads, c.d_head, c.d_model)
    assert model.W_in.shape == (c.n_layers, c.d_model, c.d_mlp)
    assert model.W_out.shape == (c.n_layers, c.d_mlp, c.d_model)
    assert model.W_U.shape == (c.d_model, c.d_vocab)
    hf = model.hf.transformer.h
    for layer in range(c.n_layers):
        w = hf[layer].attn.c_attn.weight
        assert model.W_Q[layer].untyped_storage().data_ptr() == w.untyped_storage().data_ptr()
        torch.testing.assert_close(model.W_K[layer, 2], w[:, c.d_model + 2 * c.d_head: c.d_model + 3 * c.d_head])
        torch.testing.assert_close(model.b_V[layer].flatten(), hf[layer].attn.c_attn.bias[2 * c.d_model:])
        torch.testing.assert_close(model.W_O[layer].flatten(0, 1), hf[layer].attn.c_proj.weight)


def test_q_from_weights_equals_hook_q(model, tokens):
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: True)
    x = cache["blocks.0.ln1.hook_normalized"] * model.ln1_w[0] + model.ln1_b[0]
    q = torch.einsum("bpm,hmd->bphd", x, model.W_Q[0]) + model.b_Q[0]
    torch.testing.assert_close(q, cache["q", 0], atol=1e-5, rtol=1e-5)


def test_to_tokens_and_str_tokens(model):
    with_bos = model.to_tokens("Mary and John")
    without = model.to_tokens("Mary and John", prepend_bos=False)
    assert with_bos[0, 0] == model.tokenizer.bos_token_id
    assert torch.equal(with_bos[0, 1:], without[0])
    assert model.to_str_tokens("Mary and John") == ["<|endoftext|>", "Mary", " and", " John"]
    assert model.to_str_tokens(without) == ["Mary", " and", " John"]
    assert model.to_string(without[0]) == "Mary and John"
    assert model.to_tokens(["a", "a b c"]).shape == (2, 4)
    assert model.to_single_token(" John") == without[0, 2]


@pytest.mark.parametrize("bad, error, words", [
    (lambda m, t: m.run_with_cache(t, names_filter=["blocks.0.attn.hook_patern"]), UnknownHookError, "hook_pattern"),
    (lambda m, t: m.run_with_hooks(t, fwd_hooks=[("blocks.9.hook_resid_pre", print)]), UnknownHookError, "Unknown hook"),
    (lambda m, t: m(""), PromptError, "empty"),
    (lambda m, t: m(torch.zeros(1, 0, dtype=torch.long)), PromptError, "empty"),
    (lambda m, t: m(t.float()), PromptError, "integers"),
    (lambda m, t: m(t[None]), PromptError, "shape"),
    (lambda m, t: m(torch.zeros(1, 500, dtype=torch.long)), PromptError, "context is 64"),
    (lambda m, t: m("word " * 100), PromptError, "shorten"),
    (lambda m, t: m(torch.full((1, 3), 99999)), PromptError, "lie in"),
    (lambda m, t: m.run_with_hooks(t, fwd_hooks=[("blocks.0.hook_resid_pre", lambda x, h: x[:, :1])]),
     HookReturnError, "must return None or a tensor of shape"),
    (lambda m, t: m.to_single_token(" Mary and"), PromptError, "not one"),
])
def test_bad_input_gets_a_clear_one_line_error(model, tokens, bad, error, words):
    with pytest.raises(error, match=words) as info:
        bad(model, tokens)
    assert "\n" not in str(info.value)


def test_hook_error_leaves_no_hooks_behind(model, tokens):
    # Compared with before, not with none: transformers itself leaves hooks of its own on a model
    # once it has been asked for output_attentions (another test of the session may have).
    def hooks():
        return [(dict(m._forward_hooks), dict(m._forward_pre_hooks)) for m in model.hf.modules()]
    before = hooks()
    with pytest.raises(HookReturnError):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", lambda x, h: x[0])])
    assert [tuple(map(set, h)) for h in hooks()] == [tuple(map(set, h)) for h in before]


def test_layer_norm_statistics_are_exact_and_lazy_values_resolve(model, tokens):
    _, cache = model.run_with_cache(tokens, names_filter=lambda n: "ln" in n or n.endswith("resid_pre"))
    x = cache["resid_pre", 1]
    want = torch.nn.functional.layer_norm(x, (model.cfg.d_model,), eps=1e-5)
    torch.testing.assert_close(cache["blocks.1.ln1.hook_normalized"], want, atol=1e-5, rtol=1e-5)
    var = x.var(-1, keepdim=True, unbiased=False)
    torch.testing.assert_close(cache["blocks.1.ln1.hook_scale"], (var + 1e-5).sqrt(), atol=1e-6, rtol=1e-5)
    assert all(isinstance(v, torch.Tensor) for _, v in cache.items())    # every lazy entry resolves
    # A hook that reads hook_normalized and changes it is given the real tensor.
    seen = []
    out = model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.ln2.hook_normalized",
                                                   lambda t, h: seen.append(type(t)) or t * 0)])
    assert seen == [torch.Tensor] and not torch.allclose(out, model(tokens))


# -- issue 12: layer arguments, shapes, masks, hooks, loss, generation, gradients ----------------
def test_layer_arguments_count_blocks_as_documented(model, tokens):
    _, cache = model.run_with_cache(tokens)
    n = model.cfg.n_layers
    for layer in range(n):
        acc = cache.accumulated_resid(layer=layer)
        assert acc.shape[0] == layer + 1                                   # streams entering 0..layer
        torch.testing.assert_close(acc[-1], cache["resid_pre", layer])
        assert cache.stack_head_results(layer=layer).shape[0] == layer * model.cfg.n_heads
    assert cache.stack_head_results(layer=0).shape == (0, *tokens.shape, model.cfg.d_model)
    assert cache.accumulated_resid(layer=None).shape[0] == n + 1
    with pytest.raises(ValueError, match="layer must lie"):
        cache.accumulated_resid(layer=n + 1)


def test_pos_embed_has_the_batch_and_masked_scores_are_minus_inf(model, tokens):
    _, cache = model.run_with_cache(tokens)
    assert cache["hook_pos_embed"].shape == (*tokens.shape, model.cfg.d_model)
    torch.testing.assert_close(cache["hook_pos_embed"][1], model.W_pos[: tokens.shape[1]])
    scores = cache["attn_scores", 0]
    future = torch.ones(tokens.shape[1], tokens.shape[1], dtype=torch.bool).triu(1)
    assert bool(scores[..., future].isneginf().all()) and bool(scores[..., ~future].isfinite().all())
    zero_one_row = lambda x, h: torch.cat([x[:1], torch.zeros_like(x[1:])])   # noqa: E731  [batch, pos, d] back
    out = model.run_with_hooks(tokens, fwd_hooks=[("hook_pos_embed", zero_one_row)])
    assert torch.allclose(out[0], model(tokens)[0]) and not torch.allclose(out[1], model(tokens)[1])


def test_left_padding_gives_the_unpadded_logits(model):
    ids = model.to_tokens("When Mary and John went to the store")
    padded = torch.cat([torch.zeros(1, 3, dtype=torch.long), ids], dim=1)
    mask = torch.cat([torch.zeros(1, 3, dtype=torch.long), torch.ones_like(ids)], dim=1)
    position_free = model.hf(input_ids=padded, attention_mask=mask, use_cache=False,
                             position_ids=(mask.cumsum(1) - 1).clamp_min(0)).logits
    with torch.no_grad():
        torch.testing.assert_close(position_free[:, 3:], model(ids), atol=1e-5, rtol=1e-5)
        _, cache = model.run_with_cache(padded, attention_mask=mask)
    assert cache["pattern", 0].isfinite().all()                           # no NaN rows at the padding


def test_added_hooks_apply_until_reset_and_the_context_removes_its_own(model, tokens):
    base = model(tokens).detach()
    double = ("blocks.0.hook_mlp_out", lambda x, h: x * 2)
    edited = model.run_with_hooks(tokens, fwd_hooks=[double]).detach()
    plain_mlp_out = model.run_with_cache(tokens)[1]["mlp_out", 0]
    with model.hooks(fwd_hooks=[double]):
        torch.testing.assert_close(model(tokens), edited)
        _, cache = model.run_with_cache(tokens, names_filter=["blocks.0.hook_mlp_out"])
        torch.testing.assert_close(cache["mlp_out", 0], 2 * plain_mlp_out)   # the cache sees the edit
    torch.testing.assert_close(model(tokens), base)
    model.add_hook(*double)
    model.add_hook("blocks.0.hook_mlp_out", lambda x, h: x * 2, is_permanent=True)
    try:
        model.reset_hooks()
        torch.testing.assert_close(model(tokens), edited)                 # the permanent one stays
    finally:
        model.reset_hooks(including_permanent=True)
    torch.testing.assert_close(model(tokens), base)


def test_loss_is_the_next_token_cross_entropy(model, tokens):
    logits = model(tokens)
    want = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten(), reduction="none")
    per_token = model(tokens, return_type="loss", loss_per_token=True)
    torch.testing.assert_close(per_token, want.view(tokens.shape[0], -1))
    torch.testing.assert_close(model(tokens, return_type="loss"), want.mean())
    both = model(tokens, return_type="both")
    torch.testing.assert_close(both[0], logits)
    torch.testing.assert_close(both[1], want.mean())


def test_generate_is_greedy_by_default_steerable_and_seeded(model):
    prompt = model.to_tokens("When Mary and John went")
    out = model.generate(prompt, max_new_tokens=5, stop_at_eos=False)
    ids = prompt
    for _ in range(5):                                                   # greedy, by hand
        ids = torch.cat([ids, model(ids)[:, -1].argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(out, ids)
    vector = torch.randn(model.cfg.d_model, generator=torch.Generator().manual_seed(0)) * 5
    with model.hooks(fwd_hooks=[("blocks.0.hook_resid_post", lambda x, h: x + vector)]):
        steered = model.generate(prompt, max_new_tokens=5, stop_at_eos=False)
        first = model.run_with_hooks(prompt)[:, -1].argmax(-1)
    assert steered[0, prompt.shape[1]] == first[0] and not torch.equal(steered, out)
    sample = lambda seed: model.generate(prompt, 5, stop_at_eos=False, do_sample=True, seed=seed)  # noqa: E731
    assert torch.equal(sample(1), sample(1))
    assert isinstance(model.generate("When Mary", max_new_tokens=2), str)


def hf_grads(hf, tokens, points):
    """Gradients of the mean loss at the HF model's hidden states and attention patterns (plain autograd)."""
    out = hf(input_ids=tokens, labels=tokens, output_hidden_states=True, output_attentions=True, use_cache=False)
    hidden, patterns = out.hidden_states[:-1], out.attentions                       # [-1] is after ln_f
    return dict(zip(points, torch.autograd.grad(out.loss, [*hidden, *patterns])))


def test_gradients_at_activations_match_autograd_on_the_hf_model(tokenizer, tokens):
    lens = HookedGPT2(random_hf_model(), tokenizer)
    for p in lens.hf.parameters():
        p.requires_grad_(False)                                          # frozen weights: gradients still reach activations
    n = lens.cfg.n_layers
    points = [f"blocks.{i}.hook_resid_pre" for i in range(n)] + [f"blocks.{i}.attn.hook_pattern" for i in range(n)]
    want = hf_grads(random_hf_model(), tokens, points)
    loss, cache = lens.run_with_cache(tokens, incl_bwd=True, return_type="loss")
    for name in points:
        torch.testing.assert_close(cache[name + "_grad"], want[name], atol=1e-6, rtol=1e-4)
    assert all(p.grad is None for p in lens.hf.parameters())
    # The same from a cache that keeps its graph, and from a backward hook.
    loss, cache = lens.run_with_cache(tokens, keep_graph=True, return_type="loss")
    grads = torch.autograd.grad(loss, [cache[name] for name in points])
    for name, g in zip(points, grads):
        torch.testing.assert_close(g, want[name], atol=1e-6, rtol=1e-4)
    seen = {}
    with torch.enable_grad():
        loss = lens.run_with_hooks(tokens, return_type="loss", fwd_hooks=[("hook_embed", lambda x, h: x.requires_grad_())],
                                   bwd_hooks=[(points[1], lambda g, h: seen.setdefault(h.name, g))])
        loss.backward()
    torch.testing.assert_close(seen[points[1]], want[points[1]], atol=1e-6, rtol=1e-4)


def test_layer_norm_gradients_match_autograd(tokenizer, tokens):
    lens = HookedGPT2(random_hf_model(), tokenizer)
    x = lens.run_with_cache(tokens)[1]["resid_pre", 1].requires_grad_()
    with torch.enable_grad():
        loss = lens.run_with_hooks(tokens, fwd_hooks=[("blocks.1.hook_resid_pre", lambda t, h: x)], return_type="loss")
    g_x, = torch.autograd.grad(loss, [x])                                # plain autograd at the block's input
    _, cache = lens.run_with_cache(tokens, incl_bwd=True, return_type="loss")
    torch.testing.assert_close(cache["blocks.1.hook_resid_pre_grad"], g_x, atol=1e-6, rtol=1e-4)
    # That gradient = the residual path (resid_mid's gradient) + ln1's backward of hook_normalized's gradient.
    norm, scale = cache["blocks.1.ln1.hook_normalized"], cache["blocks.1.ln1.hook_scale"]
    g = cache["blocks.1.ln1.hook_normalized_grad"] / scale
    through_ln = g - g.mean(-1, keepdim=True) - norm * (g * norm).mean(-1, keepdim=True)
    torch.testing.assert_close(g_x - through_ln, cache["blocks.1.hook_resid_mid_grad"], atol=1e-5, rtol=1e-3)


def test_remove_batch_dim_and_directions(model, tokens):
    _, cache = model.run_with_cache(tokens[:1], remove_batch_dim=True)
    assert cache["resid_pre", 0].shape == (tokens.shape[1], model.cfg.d_model)
    with pytest.raises(ValueError, match="batch of one"):
        model.run_with_cache(tokens, remove_batch_dim=True)
    d = model.tokens_to_residual_directions(tokens)
    assert d.shape == (*tokens.shape, model.cfg.d_model)
    torch.testing.assert_close(d[1, 2], model.W_U[:, tokens[1, 2]])
    assert model.W_E_pos.shape == (model.cfg.d_vocab + model.cfg.n_ctx, model.cfg.d_model)
    torch.testing.assert_close(model.QK.full()[0, 1], model.W_Q[0, 1] @ model.W_K[0, 1].T)
    torch.testing.assert_close(model.OV.full()[1, 0], model.W_V[1, 0] @ model.W_O[1, 0])
