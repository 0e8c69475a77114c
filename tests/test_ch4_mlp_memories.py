"""Chapter 4: references against independent computations, checks on right and wrong answers,
the toolkit (neurons, tracing, editing), the widgets' pure functions, and the chapter's findings."""

from __future__ import annotations

import pytest
import torch

from course.chapters.ch4_mlp_memories import checks as check
from course.data import facts
from course.editing import (Edit, closed_form_update, edit_prompts, edit_scores, finetune_edit, right_before,
                            rome_edit)
from course.chapters.ch4_mlp_memories.findings import (clearest_neurons, edit_comparison, edit_requests, key_value_agreement_summary, agreement_report,
                                 neuron_attribution_summary, recall_location)
from course.neurons import collect_activations, text_stream, top_contexts, value_logits
from course.tracing import (BUCKETS, average_traces, bucket_positions, known_facts, subject_noise, subject_span,
                            trace_fact)
from course.widgets import (FactEditor, NeuronExplorer, TraceExplorer, edit_fact, neuron_card, neuron_promoting,
                            trace_view)
from solutions import ch4_mlp_memories as ref
from tests.check_contract import contract_tests, shipped_values_test


@pytest.fixture(scope="module")
def stream(m):
    return text_stream(m, n_rows=32, row_len=32, seed=3)


@pytest.fixture(scope="module")
def acts(m, stream):
    with torch.no_grad():
        return collect_activations(m, stream.tokens, progress=False)


@pytest.fixture(scope="module")
def traced(m):
    return known_facts(m, n=12)


@pytest.fixture
def grad_off():
    with torch.no_grad():
        yield


def gelu_new(x):
    return 0.5 * x * (1 + torch.tanh((2 / torch.pi) ** 0.5 * (x + 0.044715 * x ** 3)))


# -- references against independent computations --------------------------------------------

@pytest.mark.usefixtures("grad_off")
def test_neuron_activations_are_the_gelu_of_the_mlp_input(m, stream):
    tokens = stream.tokens[:5]
    for layer in range(m.cfg.n_layers):
        _, cache = m.run_with_cache(tokens, names_filter=f"blocks.{layer}.hook_resid_mid")
        x = torch.nn.functional.layer_norm(cache["resid_mid", layer], (m.cfg.d_model,), m.ln2_w[layer], m.ln2_b[layer])
        want = gelu_new(x @ m.W_in[layer] + m.b_in[layer])
        got = ref.neuron_activations(m, tokens, layer, batch_size=2)       # three uneven batches
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


def test_top_contexts_match_a_sort_of_every_position(acts):
    layer_acts = acts[0]
    rows, pos, _ = layer_acts.shape
    for neuron in (0, 7, 300):
        everything = sorted(((float(layer_acts[r, p, neuron]), r, p) for r in range(rows) for p in range(pos)),
                            reverse=True)[:6]
        values, where = ref.top_contexts(layer_acts, neuron, 6)
        torch.testing.assert_close(values, torch.tensor([v for v, _, _ in everything]))
        # Ties (every row's BOS activates a neuron alike) may come back in any order: each
        # place must hold its value, and the places must be distinct.
        torch.testing.assert_close(layer_acts[where[:, 0], where[:, 1], neuron], values)
        assert len({tuple(w) for w in where.tolist()}) == len(where)
        torch.testing.assert_close(top_contexts(layer_acts, neuron, 6)[0], values)   # the toolkit's own


@pytest.mark.usefixtures("grad_off")
def test_neuron_value_logits_through_an_explicit_centring_matrix(m):
    d = m.cfg.d_model
    centring = torch.eye(d) - torch.full((d, d), 1 / d)
    neurons = torch.tensor([1, 2, 400])
    for layer in range(m.cfg.n_layers):
        want = m.W_out[layer, neurons] @ centring @ torch.diag(m.ln_final_w) @ m.W_U
        torch.testing.assert_close(ref.neuron_value_logits(m, layer, neurons), want, atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(value_logits(m, layer)[neurons], want, atol=1e-3, rtol=1e-3)


@pytest.mark.usefixtures("grad_off")
def test_key_value_agreement_matches_a_loop_over_neurons(m, stream, acts):
    values = value_logits(m, 1)
    got = ref.key_value_agreement(acts[1], stream.tokens, values, 4, 5)
    layer_acts = acts[1, :, :-1]
    # Neurons whose 4th and 5th largest activations differ: with a tie there, which contexts
    # count as the top 4 is a matter of sort order, not of the function under test.
    fifth = layer_acts.flatten(0, 1).topk(5, dim=0).values
    neurons = (fifth[3] > fifth[4]).nonzero()[:, 0].tolist()
    assert len(neurons) >= 3
    for neuron in (neurons[0], neurons[len(neurons) // 2], neurons[-1]):
        flat = [(float(layer_acts[r, p, neuron]), r, p) for r in range(layer_acts.shape[0])
                for p in range(layer_acts.shape[1])]
        top = sorted(flat, reverse=True)[:4]
        promoted = set(values[neuron].topk(5).indices.tolist())
        want = sum(int(stream.tokens[r, p + 1]) in promoted for _, r, p in top) / 4
        assert float(got[neuron]) == pytest.approx(want)


@pytest.mark.usefixtures("grad_off")
def test_neuron_attribution_sums_to_the_mlps_direct_attribution(m):
    p = facts.fact_prompt(facts.countries()[5], "capital", 0)
    answer = m.tokenizer(p.answer, add_special_tokens=False)["input_ids"][0]
    _, cache = m.run_with_cache(p.text)
    got = ref.neuron_attribution(cache, m, answer)                                   # [layer, d_mlp]
    for layer in range(m.cfg.n_layers):
        written = (cache["mlp_out", layer][:, -1] - m.b_out[layer])[None]            # the neurons' writes, summed
        want = cache.apply_ln_to_stack(written, pos=-1)[0, 0] @ m.W_U[:, answer]
        torch.testing.assert_close(got[layer].sum(), want, atol=1e-3, rtol=1e-3)


@pytest.mark.usefixtures("grad_off")
def test_causal_trace_matches_the_batched_toolkit_and_restoring_the_end_gives_the_clean_answer(m, traced):
    f = traced[0]
    noise = subject_noise(m, 3, f.subject[1] - f.subject[0], seed=4)
    for kind, window in (("resid", 1), ("mlp", 2), ("attn", 1)):
        got = ref.causal_trace(m, f.tokens, f.subject, f.answer, noise, kind, window)
        batched = trace_fact(m, f.tokens, f.subject, f.answer, noise, kind, window)
        torch.testing.assert_close(got, batched["restored"], atol=1e-5, rtol=1e-4)
    resid = ref.causal_trace(m, f.tokens, f.subject, f.answer, noise, "resid")
    assert float(resid[-1, -1]) == pytest.approx(batched["clean"], abs=1e-5)     # the last state is the output


@pytest.mark.usefixtures("grad_off")
def test_subject_key_is_the_gelu_of_the_mlp_input_at_the_subject(m):
    country = facts.countries()[9]
    texts = [f"{pre} The capital of {country.name} is".strip() for pre in ("", "Anna likes the park.", "So")]
    want = []
    for text in texts:
        last = [i for i, t in enumerate(m.to_str_tokens(text)) if t.strip() and t.strip() in country.name][-1]
        _, cache = m.run_with_cache(text, names_filter="blocks.0.mlp.hook_pre")
        want.append(gelu_new(cache["pre", 0][0, last]))
    torch.testing.assert_close(ref.subject_key(m, 0, texts, country.name), torch.stack(want).mean(0),
                               atol=1e-5, rtol=1e-4)


def test_key_second_moment_is_the_mean_outer_product():
    g = torch.Generator().manual_seed(0)
    keys = torch.randn(4, 5, 3, generator=g)
    want = sum(torch.outer(k, k) for k in keys.reshape(-1, 3)) / 20
    torch.testing.assert_close(ref.key_second_moment(keys), want)


def test_rank_one_update_maps_the_key_and_spares_keys_orthogonal_in_c():
    g = torch.Generator().manual_seed(1)
    W = torch.randn(8, 5, generator=g, dtype=torch.float64)
    a = torch.randn(30, 8, generator=g, dtype=torch.float64)
    C = a.T @ a / 30
    k, v = torch.randn(8, generator=g, dtype=torch.float64), torch.randn(5, generator=g, dtype=torch.float64)
    dW = ref.rank_one_update(W, C, k, v)
    torch.testing.assert_close(k @ (W + dW), v)
    assert torch.linalg.matrix_rank(dW) == 1
    other = torch.randn(8, generator=g, dtype=torch.float64)
    other = other - (other @ torch.linalg.solve(C, k)) / (k @ torch.linalg.solve(C, k)) * k  # other C⁻¹ k = 0
    torch.testing.assert_close(other @ dW, torch.zeros(5, dtype=torch.float64), atol=1e-9, rtol=0)
    torch.testing.assert_close(closed_form_update(W, C, k, v), dW)                       # the toolkit's own


# -- checks ---------------------------------------------------------------------------------------

test_reference_passes_stub_does_not, test_a_wrong_answer_fails, test_known_mistakes_are_diagnosed = \
    contract_tests(check, ref)

test_checks_fall_back_to_the_shipped_values = shipped_values_test(check, ref)


# -- the toolkit ----------------------------------------------------------------------------------

def test_text_stream_is_fixed_by_its_seed_and_labels_every_token(m):
    a, b = text_stream(m, 4, 16, seed=2), text_stream(m, 4, 16, seed=2)
    assert torch.equal(a.tokens, b.tokens) and a.tokens.shape == (4, 16) == a.kinds.shape
    assert not torch.equal(a.tokens, text_stream(m, 4, 16, seed=5).tokens)
    assert int(a.kinds.max()) < len(a.kind_names)


def test_stream_kinds_name_the_documents_they_label(m):
    import random

    from course.data.corpus import text_document
    from course.data.vocabulary import single_token_names
    from course.neurons.stream import next_document_kind

    rng, names = random.Random(0), single_token_names(m.tokenizer)
    countries = [c.name for c in facts.countries()]
    for _ in range(200):
        kind = next_document_kind(rng)
        text = text_document(rng, names)
        assert (kind == "addition") == text.startswith("calc:"), (kind, text)
        if kind == "facts":
            assert any(c in text for c in countries), text


def test_subject_span_and_position_roles(m):
    text = "In Brebeovia, the government sits in"
    start, end = subject_span(m, text, "Brebeovia")
    assert "".join(m.to_str_tokens(text)[start:end]).strip() == "Brebeovia"
    buckets = bucket_positions(10, (2, 5))
    assert sorted(p for b in buckets for p in b) == list(range(10))
    assert buckets[BUCKETS.index("subject, last")] == [4] and buckets[BUCKETS.index("last token")] == [9]
    with pytest.raises(ValueError, match="does not occur"):
        subject_span(m, text, "Atlantis")


def test_edits_undo_exactly_and_fine_tuning_leaves_the_weights(m, acts):
    from course.editing import key_second_moment

    original = m.W_out.detach().clone()
    request = edit_requests(m, 1, seed=3)[0]
    with torch.no_grad():
        C = key_second_moment(acts[0])
    edit = rome_edit(m, 0, request, C, steps=20)
    assert torch.equal(m.W_out, original)                  # made, not applied
    edit.apply(m)
    assert edit.applied and not torch.equal(m.W_out, original)
    edit.undo(m)
    assert torch.equal(m.W_out, original) and not edit.applied
    ft = finetune_edit(m, 0, request, steps=3)
    assert torch.equal(m.W_out, original) and isinstance(ft, Edit)
    assert all(p.requires_grad for p in m.hf.parameters())


@pytest.mark.usefixtures("grad_off")
def test_edit_scores_of_the_unedited_model(m):
    request = edit_requests(m, 1, seed=4)[0]
    prompts = edit_prompts(m, request)
    scores = edit_scores(m, request, prompts, right_before(m, prompts))
    assert scores["efficacy"] == 0 and scores["specificity"] == 1 and scores["same_subject"] == 1
    assert any("Few people know" in t for t in prompts.generalization)        # the held-out phrasing
    assert all(request.prompt not in t or t != request.prompt for t in prompts.efficacy)  # never the edit's own


# -- widgets ----------------------------------------------------------------------------------------

@pytest.mark.usefixtures("grad_off")
def test_neuron_card_and_search(m, stream, acts):
    card = neuron_card(m, stream, acts, 1, 20, k=4)
    values, where = top_contexts(acts[1], 20, 4)
    assert len(card.contexts) == 4 and card.max_activation == pytest.approx(float(values[0]))
    tokens, a, at = card.contexts[0]
    assert tokens[at] == m.to_string(stream.tokens[where[0, 0], where[0, 1]]) and a[at] == pytest.approx(float(values[0]))
    r, p = where[0].tolist()
    assert card.following[0] == (m.to_string(int(stream.tokens[r, p + 1])) if p + 1 < stream.tokens.shape[1] else None)
    token = card.promotes[0]
    n = neuron_promoting(m, 1, token)
    # the neuron found ranks the token at least as high in its value as any other neuron does
    logits = value_logits(m, 1)
    t = m.to_single_token(token)
    ranks = (logits > logits[:, t:t + 1]).sum(-1)
    assert ranks[n] == ranks.min()
    with pytest.raises(ValueError, match="layer must be"):
        neuron_card(m, stream, acts, 7, 0)


@pytest.mark.usefixtures("grad_off")
def test_neuron_explorer(m, stream, acts):
    w = NeuronExplorer(m, stream, acts, layer=0, neuron=3)
    assert w.card.neuron == 3 and w.status.value == ""
    # the first promoted token a student can type (a byte-level piece such as '\ufffd' is not one token as text)
    typable = next(t for t in w.card.promotes if len(m.tokenizer(t, add_special_tokens=False)["input_ids"]) == 1)
    w.prompt.value = typable
    assert w.card.neuron == neuron_promoting(m, 0, typable)
    w.prompt.value = " capital of"                      # two tokens: a message, not a traceback
    assert "not one" in w.status.value


@pytest.mark.usefixtures("grad_off")
def test_plot_average_draws_one_panel_per_kind(m, traced):
    import matplotlib.pyplot as plt

    from course.tracing import plot_average

    fig = plot_average(average_traces(m, traced[:2], kinds=("mlp", "attn"), window=2, n_samples=2, progress=False))
    assert len(fig.axes) == 3 and "window 2" in fig.axes[0].get_title()        # two panels and a colour bar
    plt.close(fig)


@pytest.mark.usefixtures("grad_off")
def test_trace_view_and_explorer(m, traced):
    f = traced[0]
    view = trace_view(m, f.text, f.country, n_samples=2)
    assert set(view.restored) == {"resid", "mlp", "attn"}
    assert len(view.restored["mlp"]) == m.cfg.n_layers and len(view.restored["mlp"][0]) == len(view.tokens)
    assert view.answer == m.to_string(f.answer) and view.restored["resid"][-1][-1] == pytest.approx(view.clean, abs=1e-5)
    w = TraceExplorer(m, f.text, f.country)
    assert w.trace is not None and w.status.value == ""
    assert len(w.view.children) == 1
    w.subject.value = "Atlantis"
    assert "does not occur" in w.status.value and w.view.children == ()     # no stale plot under the error
    # the window widens MLP and attention restores, never the residual stream's (as in ROME)
    wide = trace_view(m, f.text, f.country, window=3, n_samples=2)
    assert wide.restored["resid"] == view.restored["resid"]


def test_fact_editor_edits_and_undoes(m, acts):
    from course.editing import key_second_moment

    original = m.W_out.detach().clone()
    with torch.no_grad():
        C = key_second_moment(acts[0])
    request = edit_requests(m, 1, seed=5)[0]
    edit, view = edit_fact(m, C, 0, request.country, request.new_answer)
    try:
        assert edit.applied and view.rows[0][0] == "paraphrase" and view.new_answer == request.new_answer
        assert {g for g, *_ in view.rows} == {"paraphrase", "other country", "same country"}
    finally:
        edit.undo(m)
    assert torch.equal(m.W_out, original)
    w = FactEditor(m, C, 0)
    assert w.edit is not None and "edited" in w.status.value
    w.undo()
    assert torch.equal(m.W_out, original) and "undone" in w.status.value
    w.country.value = "Atlantis"
    w.apply()
    assert "no country called" in w.status.value and w.edit is None and torch.equal(m.W_out, original)
    w.country.value, w.new_capital.value = request.country, "Tranke"       # two tokens: said in words
    w.apply()
    assert "not one" in w.status.value and torch.equal(m.W_out, original)


# -- the chapter's findings -----------------------------------------------------------------------

@pytest.mark.usefixtures("grad_off")
def test_finding_neurons_described_by_code_are_dominated_by_one_token(m, stream, acts):
    for d in clearest_neurons(m, stream, acts, per_layer=1):
        assert d.token_share >= 0.5
        # '<|endoftext|>' opens every document, so its kind is the mix of documents that follow
        assert d.kind_share >= 0.5 or d.token == m.tokenizer.bos_token


@pytest.mark.usefixtures("grad_off")
def test_finding_keys_and_values_agree_where_the_permutation_test_says(m):
    s = text_stream(m, n_rows=128, row_len=64, seed=0)                  # the chapter's stream
    a = key_value_agreement_summary(m, collect_activations(m, s.tokens, progress=False), s.tokens)
    # "Above chance" is the permutation test's verdict, and the report prints exactly that.
    assert a["above_chance"] == [p < 0.05 for p in a["p_value"]]
    assert all(b <= hi for b, hi in zip(a["baseline"], a["null_high"]))
    for x, hi, ok in zip(a["agreement"], a["null_high"], a["above_chance"]):
        assert not ok or x >= hi - 1e-9          # p < 0.05 of 50 shuffles: above their 95th percentile
    assert a["upper_agrees_more"] == (a["agreement"][-1] > a["agreement"][0])
    text = "\n".join(agreement_report(a))
    assert f"layers {[i for i, ok in enumerate(a['above_chance']) if ok] or 'none'}" in text
    for i, act in enumerate(a["active"]):
        assert (f"layer {i}'s MLP is almost silent" in text) == (not a["above_chance"][i] and act < 0.01)


@pytest.mark.usefixtures("grad_off")
def test_finding_neuron_attribution_is_spread_over_layers_and_summed_shares(m, traced):
    s = neuron_attribution_summary(m, traced, top=10)
    assert 0 < s["top_share"] < 1 and sum(s["by_layer"]) == pytest.approx(1.0, abs=1e-4)


@pytest.mark.usefixtures("grad_off")
def test_finding_noise_ruins_the_fact_and_tracing_locates_it(m, traced):
    avg = average_traces(m, traced, n_samples=4, progress=False)
    where = recall_location(avg)
    assert avg.clean > 0.9 and avg.corrupt < avg.clean / 2
    assert where["resid_at_end"][-1] == pytest.approx(1.0, abs=1e-3)     # the last state is the output
    if not where["recalled_at_subject"]:        # the chapter then says attention carries the subject to the end
        assert where["moved_by_attention"]


def test_finding_rome_is_more_specific_than_fine_tuning(m, acts):
    from course.editing import key_second_moment

    s = text_stream(m, n_rows=128, row_len=64, seed=0)
    with torch.no_grad():
        layer = recall_location(average_traces(m, known_facts(m, 30), n_samples=8, progress=False))["mlp_layer_at_subject"]
        C = key_second_moment(collect_activations(m, s.tokens, layers=[layer], progress=False)[0])
    c = edit_comparison(m, layer, C, n_edits=5)
    assert c["rome"]["specificity"] > c["fine-tuning"]["specificity"]
    assert c["rome"]["efficacy"] >= 0.6 and c["fine-tuning"]["efficacy"] == 1.0



@pytest.mark.parametrize("rome, finetune, moved", [(0.1, 0.4, True), (0.9, 0.4, False), (0.3, 0.2, False)])
def test_the_same_subject_verdict_follows_the_scores(rome, finetune, moved):
    from course.chapters.ch4_mlp_memories.findings import same_subject_verdict

    text = same_subject_verdict({"rome": {"same_subject": rome}, "fine-tuning": {"same_subject": finetune}})
    assert f"{rome:.0%} stay right after ROME" in text and ("moves the subject's other facts" in text) == moved


@pytest.mark.parametrize("with_kl, words", [(0.6, "keeps more of the subject"), (0.12, "changes little"),
                                            (0.0, "keeps less of the subject")])
def test_the_essence_term_verdict_follows_the_scores(with_kl, words):
    from course.chapters.ch4_mlp_memories.findings import same_subject_verdict

    text = same_subject_verdict({"rome": {"same_subject": 0.1, "efficacy": 1.0},
                                 "rome + KL": {"same_subject": with_kl, "efficacy": 0.9},
                                 "fine-tuning": {"same_subject": 0.4}})
    assert words in text and f"{with_kl:.0%} stay right" in text
