"""Model-free unit tests of ``course.editing`` (ROME's rank-one edit, fine-tuning, the measures).

Edits are made on a random GPT-2 of this module's own, so the session's ``model`` is never touched.
"""

from __future__ import annotations

import pytest
import torch

from course.data import facts
from course.editing import (Edit, EditPrompts, EditRequest, closed_form_update, edit_prompts, edit_scores,
                            finetune_edit, key_second_moment, mlp_keys, optimize_value, prefixes, request_for,
                            rome_edit)
from course.editing.rome import with_prefix
from course.lens import HookedGPT2
from course.tracing import subject_span
from tests.conftest import random_hf_model

COUNTRY = facts.countries()[0]


@pytest.fixture(scope="module")
def own(tokenizer):
    return HookedGPT2(random_hf_model(seed=5), tokenizer, name="random-for-edits")


@pytest.fixture(scope="module")
def request_(own):
    """The country gets another country's capital, a single token."""
    new = next(" " + c.capital for c in facts.countries() if len(own.tokenizer(" " + c.capital)["input_ids"]) == 1)
    return request_for(COUNTRY, "capital", new)


@pytest.fixture(scope="module")
def ends_on_subject(request_):
    """A request whose prompt ends on the subject, where a random model's prediction can be moved."""
    return EditRequest(request_.country, request_.relation, request_.new_answer, f"We talked about {COUNTRY.name}")


def _problem(d_mlp=6, d_model=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(d_mlp, d_model, generator=g, dtype=torch.float64)
    keys = torch.randn(50, d_mlp, generator=g, dtype=torch.float64)
    return W, keys.T @ keys / 50, torch.randn(d_mlp, generator=g, dtype=torch.float64), \
        torch.randn(d_model, generator=g, dtype=torch.float64)


def test_rank_one_update_maps_the_key_to_the_value_exactly():
    W, C, k, v = _problem()
    delta = closed_form_update(W, C, k, v)
    torch.testing.assert_close(k @ (W + delta), v)
    assert torch.linalg.matrix_rank(delta) == 1


def test_rank_one_update_spares_every_key_orthogonal_to_k_in_the_inverse_second_moment():
    W, C, k, v = _problem(seed=1)
    delta = closed_form_update(W, C, k, v)
    c_inv_k = torch.linalg.inv(C) @ k
    others = torch.randn(5, k.shape[0], dtype=torch.float64)
    others = others - (others @ c_inv_k)[:, None] / (k @ c_inv_k) * k     # j · C⁻¹k = 0, and j spans all such
    torch.testing.assert_close(others @ (W + delta), others @ W)
    assert (k @ delta).norm() > 0.1                                         # while the key itself moves


def test_with_identity_second_moment_the_update_is_the_least_norm_solution():
    W, _, k, v = _problem(seed=2)
    delta = closed_form_update(W, torch.eye(k.shape[0], dtype=torch.float64), k, v)
    least_norm = torch.linalg.pinv(k[None]) @ (v - k @ W)[None]          # min ||ΔW|| subject to k ΔW = v - k W
    torch.testing.assert_close(delta, least_norm)


def test_any_other_update_that_maps_the_key_disturbs_the_keys_more():
    """ROME's objective: the least change ``tr(ΔWᵀ C ΔW)`` over the keys whose second moment is C."""
    W, C, k, v = _problem(seed=3)
    delta = closed_form_update(W, C, k, v)
    cost = lambda d: float(torch.trace(d.T @ C @ d))                    # noqa: E731
    for seed in range(3):
        E = torch.randn(W.shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
        E = E - torch.outer(k, k @ E) / (k @ k)                          # k E = 0: still maps k to v
        torch.testing.assert_close(k @ (W + delta + E), v)
        assert cost(delta + E) > cost(delta)


def test_key_second_moment_is_the_mean_outer_product_over_every_leading_axis():
    acts = torch.randn(3, 4, 5, generator=torch.Generator().manual_seed(4))
    expected = sum(torch.outer(a, a) for a in acts.reshape(-1, 5)) / 12
    torch.testing.assert_close(key_second_moment(acts), expected)


def _post_by_hand(model, layer, tokens):
    seen = []
    handle = model.hf.transformer.h[layer].mlp.act.register_forward_hook(lambda m, a, out: seen.append(out))
    try:
        with torch.no_grad():
            model.hf(tokens)
    finally:
        handle.remove()
    return seen[0]


def test_mlp_keys_are_the_hf_gelu_output_at_each_texts_position(own):
    texts, positions = ["The capital of Babaia is", "In Beldroia, people speak"], [3, 1]
    keys = mlp_keys(own, 1, texts, positions)
    for row, text, pos in zip(keys, texts, positions):
        torch.testing.assert_close(row, _post_by_hand(own, 1, own.to_tokens(text))[0, pos])


def test_an_edit_changes_the_hf_weights_and_undoes_exactly_once(own):
    before = own.hf.transformer.h[1].mlp.c_proj.weight.detach().clone()
    delta = torch.randn_like(before) * 0.1
    edit = Edit(1, delta)
    edit.apply(own).apply(own)                                  # applying twice adds the change once
    try:
        assert edit.applied
        torch.testing.assert_close(own.hf.transformer.h[1].mlp.c_proj.weight, before + delta)
    finally:
        edit.undo(own)
    assert not edit.applied and torch.equal(own.hf.transformer.h[1].mlp.c_proj.weight, before)


def _answer_logprobs(model, text, layer=None, delta=None, at=None):
    """Next-token log-probabilities after ``text``; with ``delta`` added to layer ``layer``'s HF MLP
    output at position ``at``."""
    handle = None
    if delta is not None:
        def add(module, args, out):
            out[0, at] += delta
        handle = model.hf.transformer.h[layer].mlp.register_forward_hook(add)
    try:
        with torch.no_grad():
            return model.hf(model.to_tokens(text)).logits[0, -1].log_softmax(-1)
    finally:
        if handle is not None:
            handle.remove()


def test_optimized_value_makes_the_new_answer_the_top_token_at_every_prefix(own, ends_on_subject):
    texts = [with_prefix(p, ends_on_subject.prompt) for p in prefixes(own, 3)]
    delta = optimize_value(own, 0, ends_on_subject, texts, steps=10)
    target = own.to_single_token(ends_on_subject.new_answer)
    for text in texts:
        at = subject_span(own, text, COUNTRY.name)[1] - 1
        assert int(_answer_logprobs(own, text).argmax()) != target                     # not so before
        assert int(_answer_logprobs(own, text, layer=0, delta=delta, at=at).argmax()) == target, text


def test_rome_edit_writes_the_optimized_value_at_the_averaged_subject_key_along_inverse_c_k(own, ends_on_subject):
    layer, request = 0, ends_on_subject
    C = key_second_moment(torch.randn(400, own.cfg.d_mlp, generator=torch.Generator().manual_seed(6)).relu() + 0.05)
    edit = rome_edit(own, layer, request, C, n_prefixes=3, steps=5)
    assert not edit.applied                                                   # made, not applied
    texts = [with_prefix(p, request.prompt) for p in prefixes(own, 3)]
    k = torch.stack([_post_by_hand(own, layer, own.to_tokens(t))[0, subject_span(own, t, COUNTRY.name)[1] - 1]
                     for t in texts]).mean(0)
    delta = optimize_value(own, layer, request, texts, steps=5)
    with torch.no_grad():
        torch.testing.assert_close(k @ edit.delta_W, delta, atol=1e-4, rtol=1e-3)    # k (W + ΔW) = k W + δ
    u, s, _ = torch.linalg.svd(edit.delta_W)
    assert s[1] < 1e-5 * s[0]                                                 # rank one ...
    direction = torch.linalg.solve(C.double(), k.double()).float()           # ... along C⁻¹k
    assert abs(float(torch.cosine_similarity(u[:, 0], direction, dim=0))) > 0.999


def test_fine_tuning_returns_an_edit_that_raises_the_answer_and_leaves_the_model(own, request_):
    target = own.to_single_token(request_.new_answer)
    weights = {n: p.detach().clone() for n, p in own.hf.named_parameters()}
    own.hf.transformer.wte.weight.requires_grad_(False)            # a flag the function must give back
    try:
        edit = finetune_edit(own, 1, request_, steps=15, lr=1e-2)
        assert not own.hf.transformer.wte.weight.requires_grad
        assert own.hf.transformer.h[0].mlp.c_fc.weight.requires_grad
    finally:
        own.hf.transformer.wte.weight.requires_grad_(True)
    assert all(torch.equal(p, weights[n]) for n, p in own.hf.named_parameters())
    before = _answer_logprobs(own, request_.prompt)[target]
    edit.apply(own)
    try:
        after = _answer_logprobs(own, request_.prompt)[target]
    finally:
        edit.undo(own)
    assert after > before + 1.0


def test_edit_prompts_hold_out_the_edits_prefixes_and_the_edited_country(own, request_):
    prompts = edit_prompts(own, request_, n_other=5)
    used = {with_prefix(p, request_.prompt) for p in prefixes(own, 10)}       # what rome_edit writes from
    assert prompts.efficacy and all(p.endswith(request_.prompt) and p not in used for p in prompts.efficacy)
    assert all(COUNTRY.name in p for p in prompts.generalization) and request_.prompt not in prompts.generalization
    assert len(prompts.specificity) == 5 and all(COUNTRY.name not in p for p, _ in prompts.specificity)
    assert {a for _, a in prompts.same_subject} == {" " + COUNTRY.answer(r) for r in facts.RELATIONS if r != "capital"}


class _Lookup:
    """A toy model that predicts, after each prompt, a token chosen by the test."""

    def __init__(self, tokenizer, top: dict[str, int]):
        self.tokenizer, self.top = tokenizer, top

    def __call__(self, text):
        logits = torch.zeros(1, 1, len(self.tokenizer))
        logits[0, -1, self.top[text]] = 1.0
        return logits


def test_edit_scores_are_shares_counted_by_hand(tokenizer):
    first = lambda s: tokenizer(s, add_special_tokens=False)["input_ids"][0]       # noqa: E731
    new, right, wrong = " Zo", " Fe", " Ka"
    prompts = EditPrompts(efficacy=["e1", "e2", "e3", "e4"], generalization=["g1", "g2"],
                          specificity=[("s1", right), ("s2", right), ("s3", right)],
                          same_subject=[("u1", right), ("u2", right)])
    top = {"e1": first(new), "e2": first(new), "e3": first(new), "e4": first(wrong),
           "g1": first(wrong), "g2": first(new),
           "s1": first(right), "s2": first(wrong), "s3": first(wrong), "u1": first(right), "u2": first(right)}
    request = request_for(COUNTRY, "capital", new)
    scores = edit_scores(_Lookup(tokenizer, top), request, prompts)
    assert scores == {"efficacy": 3 / 4, "generalization": 1 / 2, "specificity": 1 / 3, "same_subject": 1.0}
    before = {"specificity": [True, False, False], "same_subject": [False, True]}   # only facts right before count
    scores = edit_scores(_Lookup(tokenizer, top), request, prompts, before=before)
    assert (scores["specificity"], scores["same_subject"]) == (1.0, 1.0)
