"""course.lens against independent implementations: TransformerLens 3.9 and nnsight.

TransformerLens is the oracle for names, shapes and values: a ``HookedTransformer`` built
by hand from the same HF weights (``convert_gpt2_weights``, no network), unprocessed
(``fold_ln=False``, no centring) for hook points, weights and most helpers; folded
(``fold_ln=True``, still no centring) for the helpers whose convention is the folded one
(``logit_attrs``, ``apply_ln_to_stack @ W_U``); and TL 3.9's ``TransformerBridge`` on a
copy of the HF model. nnsight checks ``run_with_hooks`` edits with its own interventions.
Both run on the course model (whatever ``course.load_model()`` returns) and on a seeded
random 3-layer GPT-2.

Tolerance: float32 noise, scaled to the tensor: ``|ours - theirs| <= 1e-5 * max(1, max|theirs|)
+ 1e-4 * |theirs|`` on every tensor (measured: below 2e-6 of the scale); gradients
``atol=1e-6 * scale, rtol=1e-3``. Masked attention scores must be ``-inf`` exactly where
TransformerLens has them.
"""

from __future__ import annotations

import copy

import pytest
import torch

from course.lens import HookedGPT2
from tests.conftest import random_hf_model

tl = pytest.importorskip("transformer_lens")
nnsight = pytest.importorskip("nnsight")

ATOL, RTOL = 1e-5, 1e-4
pytestmark = pytest.mark.usefixtures("no_grad")


def close(ours, theirs, what=""):
    assert ours.shape == theirs.shape, f"{what}: shape {tuple(ours.shape)} vs {tuple(theirs.shape)}"
    scale = max(1.0, float(theirs.abs().max())) if theirs.numel() else 1.0
    torch.testing.assert_close(ours, theirs, atol=ATOL * scale, rtol=RTOL, msg=lambda m: f"{what}: {m}")


def hooked_transformer(hf, fold_ln: bool):
    from transformer_lens import HookedTransformer, HookedTransformerConfig
    from transformer_lens.pretrained.weight_conversions.gpt2 import convert_gpt2_weights

    c = hf.config
    cfg = HookedTransformerConfig(
        n_layers=c.n_layer, d_model=c.n_embd, d_head=c.n_embd // c.n_head, n_heads=c.n_head,
        d_mlp=c.n_inner or 4 * c.n_embd, d_vocab=c.vocab_size, n_ctx=c.n_positions, act_fn=c.activation_function,
        normalization_type="LN", eps=c.layer_norm_epsilon, default_prepend_bos=False, device="cpu")
    model = HookedTransformer(cfg)
    model.load_and_process_state_dict(convert_gpt2_weights(hf, cfg), fold_ln=fold_ln, center_writing_weights=False,
                                      center_unembed=False, fold_value_biases=False)
    model.set_use_attn_result(True)
    return model.eval()


class Models:
    """Our lens and its oracles, each on its own copy of one HF model."""

    def __init__(self, hf, tokenizer):
        self.hf = hf
        self.lens = HookedGPT2(copy.deepcopy(hf), tokenizer)
        self.tl = hooked_transformer(hf, fold_ln=False)
        self.tl_folded = hooked_transformer(hf, fold_ln=True)
        self.tokenizer = tokenizer
        g = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(1, hf.config.vocab_size, (3, 17), generator=g)


@pytest.fixture(scope="module", params=["course-model", "random-3-layer"])
def models(request, course_model, tokenizer):
    if request.param == "course-model":
        hf = copy.deepcopy(course_model.hf)
        hf.config._attn_implementation = "eager"
        return Models(hf.eval(), course_model.tokenizer)
    return Models(random_hf_model(n_layer=3, n_head=4, d_model=64, vocab=2048, n_ctx=64, seed=3), tokenizer)


@pytest.fixture(scope="module")
def caches(models):
    with torch.no_grad():
        ours = models.lens.run_with_cache(models.tokens, names_filter=lambda n: True)
        theirs = models.tl.run_with_cache(models.tokens)
        folded = models.tl_folded.run_with_cache(models.tokens)
    return ours, theirs, folded


def test_logits_and_every_hook_point_match_transformer_lens(models, caches):
    (logits, cache), (tl_logits, tl_cache), _ = caches
    close(logits, tl_logits, "logits")
    assert set(cache.keys()) <= set(tl_cache.keys())
    assert len(cache) == len(models.lens.hook_names)
    for name in cache.keys():
        ours, theirs = cache[name], tl_cache[name]
        if name.endswith("hook_attn_scores"):
            assert torch.equal(ours.isneginf(), theirs.isneginf()), name        # -inf exactly where TL has it
            ours, theirs = ours.masked_fill(ours.isneginf(), 0), theirs.masked_fill(theirs.isneginf(), 0)
        close(ours, theirs, name)


def test_hook_normalized_matches_folded_and_unfolded_transformer_lens(caches):
    (_, cache), (_, tl_cache), (_, folded) = caches
    for name in [n for n in cache.keys() if n.endswith("hook_normalized")]:
        close(cache[name], tl_cache[name], name)
        close(cache[name], folded[name], name + " (fold_ln=True)")


def test_weight_views_match_transformer_lens(models):
    ours, theirs = models.lens, models.tl
    for name in ["W_E", "W_pos", "W_Q", "W_K", "W_V", "W_O", "b_Q", "b_K", "b_V", "b_O",
                 "W_in", "b_in", "W_out", "b_out", "W_U", "b_U", "W_E_pos"]:
        close(getattr(ours, name), getattr(theirs, name), name)
    for layer in range(ours.cfg.n_layers):
        close(ours.ln1_w[layer], theirs.blocks[layer].ln1.w, "ln1_w")
        close(ours.ln2_b[layer], theirs.blocks[layer].ln2.b, "ln2_b")
    close(ours.ln_final_w, theirs.ln_final.w, "ln_final_w")
    close(ours.QK.full(), theirs.QK.AB, "QK")
    close(ours.OV.full(), theirs.OV.AB, "OV")
    close(ours.QK.singular_values(), theirs.QK.S, "QK singular values")
    ids = models.tokens[:, :3]
    close(ours.tokens_to_residual_directions(ids), theirs.tokens_to_residual_directions(ids), "directions")
    close(ours.tokens_to_residual_directions(int(ids[0, 0])), theirs.tokens_to_residual_directions(int(ids[0, 0])),
          "one direction")


def test_residual_stream_helpers_match_transformer_lens(models, caches):
    (_, cache), (_, tl_cache), _ = caches
    n = models.lens.cfg.n_layers
    for layer in [*range(n + 1), None, -1]:
        for kwargs in [{}, {"incl_mid": True}, {"mlp_input": True}, {"pos_slice": -1}, {"pos_slice": (2, 9)}]:
            if layer in (n, None, -1) and "mlp_input" in kwargs:
                continue
            what = f"accumulated_resid(layer={layer}, {kwargs})"
            close(cache.accumulated_resid(layer, **kwargs), tl_cache.accumulated_resid(layer, **kwargs), what)
        for kwargs in [{}, {"mode": "attn"}, {"mode": "mlp"}, {"incl_embeds": False}, {"pos_slice": 3}]:
            if layer == 0 and kwargs.get("incl_embeds") is False:
                continue                    # nothing to stack: TransformerLens's torch.stack([]) raises
            what = f"decompose_resid(layer={layer}, {kwargs})"
            close(cache.decompose_resid(layer, **kwargs), tl_cache.decompose_resid(layer, **kwargs), what)
    # The logit lens: the final layer norm applied to each row, as the model does.
    close(cache.accumulated_resid(apply_ln=True), tl_cache.accumulated_resid(apply_ln=True), "apply_ln=True")


def test_head_and_neuron_stacks_match_transformer_lens(models, caches):
    (_, cache), (_, tl_cache), _ = caches
    n = models.lens.cfg.n_layers
    for layer in [*range(n + 1), None]:
        for kwargs in [{}, {"pos_slice": -1}, {"incl_remainder": True}]:
            if layer == 0 and kwargs.get("incl_remainder"):
                continue                    # TransformerLens takes resid_post of layer -1 (the last) there
            ours, labels = cache.stack_head_results(layer, return_labels=True, **kwargs)
            theirs, tl_labels = tl_cache.stack_head_results(-1 if layer is None else layer, return_labels=True,
                                                            **kwargs)
            close(ours, theirs, f"stack_head_results({layer}, {kwargs})")
            assert labels == tl_labels
        if layer:
            for kwargs in [{"neuron_slice": (0, 7)}, {"neuron_slice": [5, 2], "pos_slice": -1}, {"incl_remainder": True}]:
                ours, labels = cache.stack_neuron_results(layer, return_labels=True, **kwargs)
                theirs, tl_labels = tl_cache.stack_neuron_results(layer, return_labels=True, **kwargs)
                close(ours, theirs, f"stack_neuron_results({layer}, {kwargs})")
                assert labels == tl_labels


def test_layer_norm_helpers_follow_the_written_convention(models, caches):
    """Ours = TransformerLens's apply_ln_to_stack times the norm's weight (TL leaves it out),
    so ``@ W_U`` and logit_attrs equal TL's on a folded model (fold_ln=True, no centring)."""
    (_, cache), (_, tl_cache), (_, folded) = caches
    lens, n = models.lens, models.lens.cfg.n_layers
    stack = cache.decompose_resid(pos_slice=-1)
    for layer, mlp_input, weight in [(None, False, lens.ln_final_w)] + [
            (i, m, (lens.ln2_w if m else lens.ln1_w)[i]) for i in range(n) for m in (False, True)]:
        close(cache.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=-1),
              tl_cache.apply_ln_to_stack(stack, layer, mlp_input=mlp_input, pos_slice=-1) * weight,
              f"apply_ln_to_stack(layer={layer}, mlp_input={mlp_input})")
    close(cache.apply_ln_to_stack(stack, pos_slice=-1) @ lens.W_U,
          folded.apply_ln_to_stack(stack, pos_slice=-1) @ models.tl_folded.W_U, "stack @ W_U")
    answers, wrong = models.tokens[:, -1], models.tokens[:, 0]
    heads = cache.stack_head_results(pos_slice=-1)
    close(cache.logit_attrs(heads, answers, pos_slice=-1), folded.logit_attrs(heads, answers, pos_slice=-1),
          "logit_attrs")
    close(cache.logit_attrs(stack, answers[:2], wrong[:2], pos_slice=-1, batch_slice=(0, 2)),
          folded.logit_attrs(stack, answers[:2], wrong[:2], pos_slice=-1, batch_slice=(0, 2)),
          "logit_attrs difference")


def test_loss_matches_transformer_lens(models):
    ours, theirs, ids = models.lens, models.tl, models.tokens
    close(ours(ids, return_type="loss"), theirs(ids, return_type="loss"), "loss")
    close(ours(ids, return_type="loss", loss_per_token=True), theirs(ids, return_type="loss", loss_per_token=True),
          "per-token loss")


def test_remove_batch_dim_matches_transformer_lens(models):
    ids = models.tokens[:1]
    _, cache = models.lens.run_with_cache(ids, remove_batch_dim=True)
    _, tl_cache = models.tl.run_with_cache(ids, remove_batch_dim=True)
    for name in cache.keys():
        if not name.endswith("hook_attn_scores"):
            close(cache[name], tl_cache[name], name)
    close(cache.accumulated_resid(pos_slice=-1), tl_cache.accumulated_resid(pos_slice=-1), "accumulated, no batch")


def test_gradients_at_every_point_match_transformer_lens(models):
    ids = models.tokens
    with torch.enable_grad():
        loss, cache = models.lens.run_with_cache(ids, incl_bwd=True, return_type="loss")
        tl_loss, tl_cache = models.tl.run_with_cache(ids, incl_bwd=True, return_type="loss")
    close(loss.detach(), tl_loss.detach(), "loss")
    grads = [n for n in cache.keys() if n.endswith("_grad")]
    assert len(grads) == len(models.lens._select(None))
    for name in grads:
        if ".ln1." in name:
            continue        # TL runs ln1 once per q/k/v input and keeps one call's gradient (test_lens checks ours)
        ours, theirs = cache[name], tl_cache[name]
        if name.endswith("hook_attn_scores_grad"):
            ours, theirs = ours.nan_to_num(0), theirs.nan_to_num(0)
        scale = max(1e-6, float(theirs.abs().max()))
        torch.testing.assert_close(ours, theirs, atol=1e-5 * scale, rtol=1e-3, msg=lambda m: f"{name}: {m}")


def test_steered_generation_matches_transformer_lens(models):
    prompt = models.tokens[:1, :5]
    vector = torch.randn(models.lens.cfg.d_model, generator=torch.Generator().manual_seed(1))

    def steer(resid, hook):
        return resid + 3 * vector

    name = "blocks.0.hook_resid_post"
    with models.lens.hooks(fwd_hooks=[(name, steer)]):
        ours = models.lens.generate(prompt, max_new_tokens=6, stop_at_eos=False)
    with models.tl.hooks(fwd_hooks=[(name, steer)]):
        theirs = models.tl.generate(prompt, max_new_tokens=6, stop_at_eos=False, do_sample=False,
                                    use_past_kv_cache=False, verbose=False)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, models.lens.generate(prompt, max_new_tokens=6, stop_at_eos=False))


def test_hook_points_match_the_transformer_lens_bridge(models):
    from transformer_lens.model_bridge import TransformerBridge

    # boot_transformers changes the HF model it is given: give it a copy.
    bridge = TransformerBridge.boot_transformers("gpt2", hf_model=copy.deepcopy(models.hf),
                                                 tokenizer=models.tokenizer)
    logits, cache = models.lens.run_with_cache(models.tokens)
    b_logits, b_cache = bridge.run_with_cache(models.tokens)
    close(logits, b_logits, "bridge logits")
    for name in cache.keys():
        ours, theirs = cache[name], b_cache[name]
        if name.endswith("hook_attn_scores"):       # the bridge keeps HF's finite mask value
            masked = ours.isneginf()
            assert bool((theirs[masked] < -1e30).all()) and not bool(theirs[~masked].lt(-1e30).any())
            ours, theirs = ours[~masked], theirs[~masked]
        close(ours, theirs, f"bridge {name}")


def test_run_with_hooks_edits_match_nnsight(models):
    """The same edits written as nnsight interventions on the plain HF model."""
    lens, ids = models.lens, models.tokens
    d_head, layer = lens.cfg.d_head, lens.cfg.n_layers - 1
    net = nnsight.NNsight(copy.deepcopy(models.hf))

    def zero_head_1(z, hook):
        z[:, :, 1] = 0

    ours = lens.run_with_hooks(ids, fwd_hooks=[("blocks.0.attn.hook_z", zero_head_1),
                                               (f"blocks.{layer}.hook_mlp_out", lambda x, h: x * 0.5),
                                               ("blocks.0.hook_resid_pre", lambda x, h: x.flip(1))])
    with net.trace(ids):
        net.transformer.h[0].input[:] = net.transformer.h[0].input.flip(1)
        net.transformer.h[0].attn.c_proj.input[:, :, d_head:2 * d_head] = 0
        net.transformer.h[layer].mlp.output[:] = net.transformer.h[layer].mlp.output * 0.5
        theirs = net.lm_head.output.save()
    close(ours, theirs, "edited logits")

    _, cache = lens.run_with_cache(ids, names_filter=[("post", layer), ("pattern", 0)])
    with net.trace(ids):
        pattern = net.transformer.h[0].attn.output[1].save()
        post = net.transformer.h[layer].mlp.act.output.save()
    close(cache["post", layer], post, "mlp post")
    close(cache["pattern", 0], pattern, "pattern")
