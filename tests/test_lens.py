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
    with pytest.raises(HookReturnError):
        model.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_mlp_out", lambda x, h: x[0])])
    assert all(not m._forward_hooks and not m._forward_pre_hooks for m in model.hf.modules())


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
