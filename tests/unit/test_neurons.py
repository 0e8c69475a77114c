"""Model-free unit tests of ``course.neurons`` on the random GPT-2 and hand-made tensors."""

from __future__ import annotations

import torch

from course.neurons import (TextStream, collect_activations, describe_neuron, next_token_agreement, text_stream,
                            top_contexts, value_logits, value_tokens)
from course.neurons.stream import KINDS


def _random_tokens(model, rows=5, pos=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.cfg.d_vocab, (rows, pos), generator=g)


def test_collected_activations_equal_a_forward_hook_on_the_hf_gelu(model):
    tokens = _random_tokens(model)
    seen = {}
    handles = [model.hf.transformer.h[l].mlp.act.register_forward_hook(lambda mod, i, o, l=l: seen.__setitem__(l, o))
               for l in range(model.cfg.n_layers)]
    try:
        with torch.no_grad():
            model.hf(tokens)
    finally:
        for h in handles:
            h.remove()
    acts = collect_activations(model, tokens, batch_size=2, progress=False)      # 5 rows in batches of 2, 2, 1
    assert acts.shape == (model.cfg.n_layers, 5, 9, model.cfg.d_mlp)
    for l in range(model.cfg.n_layers):
        torch.testing.assert_close(acts[l], seen[l])
    only_last = collect_activations(model, tokens, layers=[1], progress=False)
    torch.testing.assert_close(only_last[0], seen[1])


def test_value_logits_are_an_out_row_through_the_hf_final_norm_and_unembedding(model):
    """The final norm applied to a single row, with its bias removed and its 1/std undone, is the
    centred row times the norm's weight: the map ``value_logits`` promises."""
    ln, layer = model.hf.transformer.ln_f, 1
    rows = model.W_out[layer].detach()
    with torch.no_grad():
        std = (rows.var(-1, unbiased=False, keepdim=True) + ln.eps).sqrt()
        expected = model.hf.lm_head((ln(rows) - ln.bias) * std)
        got = value_logits(model, layer)
    assert got.shape == (model.cfg.d_mlp, model.cfg.d_vocab)
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_value_tokens_are_the_arg_top_and_arg_bottom_of_the_value_logits(model):
    layer, neuron, k = 0, 7, 4
    with torch.no_grad():
        logits = value_logits(model, layer)[neuron].tolist()
    order = sorted(range(len(logits)), key=lambda i: logits[i])
    top, bottom = value_tokens(model, layer, neuron, k=k)
    assert top == [model.to_string(i) for i in order[::-1][:k]]
    assert bottom == [model.to_string(i) for i in order[:k]]


def test_top_contexts_are_the_k_largest_by_a_sort_of_every_position():
    acts = torch.randn(4, 7, 3, generator=torch.Generator().manual_seed(1))    # rows != positions: index decoding shows
    everything = sorted(((float(acts[r, p, 2]), r, p) for r in range(4) for p in range(7)), reverse=True)[:5]
    values, where = top_contexts(acts, neuron=2, k=5)
    assert values.tolist() == [v for v, _, _ in everything]
    assert where.tolist() == [[r, p] for _, r, p in everything]


def test_next_token_agreement_matches_a_loop_and_ignores_the_last_position():
    g = torch.Generator().manual_seed(2)
    rows, pos, d_mlp, vocab = 6, 5, 4, 7
    acts = torch.randn(rows, pos, d_mlp, generator=g)
    acts[:, -1] = 100.0                              # the largest of all, but nothing follows the last position
    tokens = torch.randint(0, vocab, (rows, pos), generator=g)
    values = torch.randn(d_mlp, vocab, generator=g)
    k_contexts, k_tokens = 4, 2
    expected = []
    for n in range(d_mlp):
        contexts = sorted(((float(acts[r, p, n]), r, p) for r in range(rows) for p in range(pos - 1)), reverse=True)
        promoted = set(values[n].topk(k_tokens).indices.tolist())
        expected.append(sum(int(tokens[r, p + 1]) in promoted for _, r, p in contexts[:k_contexts]) / k_contexts)
    got = next_token_agreement(acts, tokens, values, k_contexts, k_tokens)
    torch.testing.assert_close(got, torch.tensor(expected))


def test_agreement_is_one_when_a_value_promotes_the_whole_vocabulary():
    acts, tokens = torch.rand(3, 4, 2), torch.randint(0, 5, (3, 4))
    assert next_token_agreement(acts, tokens, torch.randn(2, 5), k_contexts=3, k_tokens=5).tolist() == [1.0, 1.0]


def test_describe_neuron_counts_token_kind_and_next_token_over_the_top_contexts(model):
    tokens = torch.tensor([[11, 12, 13, 14], [11, 15, 11, 16], [17, 18, 19, 11]])
    kinds = torch.tensor([[0, 0, 0, 0], [1, 1, 1, 1], [2, 2, 2, 2]])
    acts = -torch.rand(3, 4, 2)                      # every other context below the four planted ones
    for r, p in [(0, 0), (1, 0), (1, 2), (2, 3)]:    # all on token 11; kinds 0, 1, 1, 2; the last at a row's end
        acts[r, p, 1] = 1.0 + r + p / 10
    d = describe_neuron(model, TextStream(tokens, kinds), acts, layer=0, neuron=1, k=4)
    assert (d.token, d.token_share) == (model.to_string(11), 1.0)
    assert (d.kind, d.kind_share) == (KINDS[1], 0.5)
    # next tokens: 12 (row 0), 15 and 16 (row 1); the context at (2, 3) has none and is not counted
    assert d.next_token in {model.to_string(t) for t in (12, 15, 16)}
    assert abs(d.next_token_share - 1 / 3) < 1e-9


def test_text_stream_is_fixed_by_its_seed_and_kinds_change_only_at_a_document_start(model):
    a, b = text_stream(model, n_rows=4, row_len=32, seed=3), text_stream(model, n_rows=4, row_len=32, seed=3)
    other = text_stream(model, n_rows=4, row_len=32, seed=4)
    assert a.tokens.shape == a.kinds.shape == (4, 32)
    assert torch.equal(a.tokens, b.tokens) and torch.equal(a.kinds, b.kinds)
    assert not torch.equal(a.tokens, other.tokens)
    flat_tokens, flat_kinds = a.tokens.flatten(), a.kinds.flatten()
    assert int(flat_tokens[0]) == model.tokenizer.bos_token_id
    changes = (flat_kinds[1:] != flat_kinds[:-1]).nonzero().flatten() + 1
    assert all(int(flat_tokens[i]) == model.tokenizer.bos_token_id for i in changes)
    assert set(flat_kinds.tolist()) <= set(range(len(KINDS)))
