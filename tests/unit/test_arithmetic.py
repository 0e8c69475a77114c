"""Model-free unit tests of ``course.arithmetic`` on the random GPT-2, a toy "oracle" model and
synthetic data."""

from __future__ import annotations

import pytest
import torch

from course.arithmetic import (OPERAND_DIGITS, accuracy_by_case, addition_batch, answer_correct, carry_labels,
                               classify_neurons, digit_attribution, explained_variance, fit_probe,
                               important_neurons, operand_attention, probe_accuracy, residuals)
from course.data.addition import AdditionPrompt

PAIRS = [(36, 59), (12, 34), (99, 99), (50, 55), (25, 75), (41, 18), (87, 15)]     # sums 95 46 198 105 100 59 102


@pytest.fixture(scope="module")
def batch(model):
    return addition_batch(model, [AdditionPrompt(a, b) for a, b in PAIRS])


def test_addition_batch_puts_each_digit_where_the_string_has_it(model, batch):
    decode = lambda t: model.tokenizer.decode([int(t)])                     # noqa: E731
    for i, (a, b) in enumerate(PAIRS):
        s = str(a + b)
        row = batch.tokens[i]
        assert int(row[0]) == model.tokenizer.bos_token_id
        assert [decode(row[p]) for p in batch.operand_pos] == [str(a)[0], str(a)[1], str(b)[0], str(b)[1]]
        assert "".join(decode(t) for t in row[batch.answer_mask[i]]) == s
        assert (decode(row[batch.ones_pos[i]]), decode(row[batch.tens_pos[i]])) == (s[-1], s[-2])
        assert model.tokenizer.decode(row[:batch.ones_pos[i] + 1].tolist()[1:]) == f"calc: {a} + {b} = {s}"
        assert (row[batch.ones_pos[i] + 1:] == model.tokenizer.eos_token_id).all()     # padding after the answer
    assert len(OPERAND_DIGITS) == len(batch.operand_pos) == 4


def test_addition_batch_sums_carries_and_labels_from_the_operands(batch):
    assert batch.sums.tolist() == [a + b for a, b in PAIRS]
    assert batch.carry.tolist() == [a % 10 + b % 10 >= 10 for a, b in PAIRS]
    assert carry_labels(batch).tolist() == [float(a % 10 + b % 10 >= 10) for a, b in PAIRS]


def test_select_by_slice_mask_or_indices_gives_the_same_lines(batch):
    mask = torch.tensor([a + b >= 100 for a, b in PAIRS])
    for rows in (mask, mask.nonzero().flatten().tolist()):
        part = batch.select(rows)
        assert [(p.a, p.b) for p in part.prompts] == [ab for ab, m in zip(PAIRS, mask) if m]
        assert torch.equal(part.tokens, batch.tokens[mask]) and torch.equal(part.ones_pos, batch.ones_pos[mask])
    assert torch.equal(batch.select(slice(1, 3)).answer_mask, batch.answer_mask[1:3])


def test_addition_batch_refuses_lines_that_do_not_tokenize_alike(model):
    with pytest.raises(ValueError):
        addition_batch(model, [AdditionPrompt(36, 59), AdditionPrompt(5, 7)])


class _Oracle:
    """A toy model that predicts every next token right, except that it never writes the digit 5."""

    def __init__(self, tokenizer):
        self.device, self.vocab = torch.device("cpu"), len(tokenizer)
        self.five, self.six = tokenizer.convert_tokens_to_ids("5"), tokenizer.convert_tokens_to_ids("6")

    def run_with_hooks(self, tokens, hooks):
        nxt = tokens.roll(-1, dims=1)
        nxt[nxt == self.five] = self.six
        return torch.nn.functional.one_hot(nxt, self.vocab).float()


def test_answer_correct_and_accuracy_by_case_against_the_strings(model, batch):
    right = answer_correct(_Oracle(model.tokenizer), batch, batch_size=3)     # in three chunks
    for i, (a, b) in enumerate(PAIRS):
        expected = [d != "5" for d in str(a + b)]
        assert right[i][batch.answer_mask[i]].tolist() == expected
        assert not right[i][~batch.answer_mask[i]].any()
    rows = {r["case"]: r for r in accuracy_by_case(model, batch, right=right)}
    cases = {"all": lambda a, b: True, "no carry": lambda a, b: a % 10 + b % 10 < 10,
             "carry": lambda a, b: a % 10 + b % 10 >= 10, "sum < 100": lambda a, b: a + b < 100,
             "sum >= 100": lambda a, b: a + b >= 100}
    for name, member in cases.items():
        sums = [str(a + b) for a, b in PAIRS if member(a, b)]
        assert rows[name]["n"] == len(sums)
        assert rows[name]["accuracy"] == pytest.approx(sum("5" not in s for s in sums) / len(sums))
        assert rows[name]["ones digit"] == pytest.approx(sum(s[-1] != "5" for s in sums) / len(sums))
        assert rows[name]["tens digit"] == pytest.approx(sum(s[-2] != "5" for s in sums) / len(sums))


def test_operand_attention_is_the_hf_attention_from_the_predicting_positions(model, batch):
    with torch.no_grad():
        attentions = model.hf(batch.tokens, output_attentions=True).attentions     # per layer [n, head, q, k]
    got = operand_attention(model, batch)
    assert got.shape == (model.cfg.n_layers, model.cfg.n_heads, 2, 4)
    for layer, pattern in enumerate(attentions):
        for row, answer_pos in enumerate((batch.ones_pos, batch.tens_pos)):
            for j, k in enumerate(batch.operand_pos):
                expected = torch.stack([pattern[i, :, int(answer_pos[i]) - 1, k] for i in range(len(PAIRS))]).mean(0)
                torch.testing.assert_close(got[layer, :, row, j], expected)


@pytest.mark.parametrize("target", ["ones", "tens"])
def test_digit_attribution_with_the_final_norm_bias_sums_to_the_models_digit_logit(model, batch, target):
    parts, labels = digit_attribution(model, batch, target)
    assert parts.shape == (len(labels), len(PAIRS)) and len(labels) == 2 + model.cfg.n_layers * (model.cfg.n_heads + 1) + 1
    at = batch.ones_pos if target == "ones" else batch.tens_pos
    idx = torch.arange(len(PAIRS))
    answer = batch.tokens[idx, at]
    with torch.no_grad():
        logits = model.hf(batch.tokens).logits[idx, at - 1, answer]
        bias = model.ln_final_b @ model.W_U[:, answer]
    torch.testing.assert_close(parts.sum(0) + bias, logits, atol=1e-4, rtol=1e-4)


def test_residuals_are_the_streams_entering_each_block_and_leaving_the_last(model, batch):
    positions = [2, 5]
    got = residuals(model, batch, positions)
    seen = []
    blocks = model.hf.transformer.h
    handles = [b.register_forward_pre_hook(lambda m, args: seen.append(args[0])) for b in blocks]
    handles.append(model.hf.transformer.ln_f.register_forward_pre_hook(lambda m, args: seen.append(args[0])))
    try:
        with torch.no_grad():
            model.hf(batch.tokens)
    finally:
        for h in handles:
            h.remove()
    assert got.shape == (model.cfg.n_layers + 1, len(PAIRS), 2, model.cfg.d_model)
    torch.testing.assert_close(got, torch.stack(seen)[:, :, positions])


def test_explained_variance_matches_a_one_way_anova_loop():
    g = torch.Generator().manual_seed(0)
    groups = torch.tensor([0, 0, 3, 3, 3, 7, 7, 7, 7])
    acts = torch.stack([torch.randn(9, generator=g),                 # noise
                        groups.float() * 2 - 1,                       # a function of the group: 1
                        torch.full((9,), 4.0)], 1)                    # constant: 0, not NaN
    expected = []
    for col in acts.T:
        total = sum((x - col.mean()) ** 2 for x in col)
        within = sum((col[i] - col[groups == groups[i]].mean()) ** 2 for i in range(9))
        expected.append(float(1 - within / total) if total > 0 else 0.0)
    got = explained_variance(acts, groups)
    torch.testing.assert_close(got, torch.tensor(expected))
    assert got[1] == pytest.approx(1.0) and got[2] == 0.0


def test_classify_neurons_names_the_planted_patterns():
    a, b = torch.meshgrid(torch.arange(10, 100), torch.arange(10, 100), indexing="ij")
    a, b = a.flatten(), b.flatten()
    noise = torch.randn(len(a), 3, generator=torch.Generator().manual_seed(1))
    acts = torch.stack([(a % 10 + b % 10 >= 10).float() + 0.01 * noise[:, 0],
                        ((a + b) % 10).float() + 0.01 * noise[:, 1],
                        noise[:, 2]], 1)
    got = classify_neurons(acts, a, b, torch.tensor([0, 1, 2]))
    assert [name for _, name, _ in got] == ["carry (a₀ + b₀ ≥ 10)", "sum mod 10 (ones of a + b)", "unclassified"]
    assert got[0][2] > 0.99 and got[2][2] < 0.5


def test_a_neuron_whose_activation_never_varies_is_never_important(model):
    acts = torch.zeros(20, model.cfg.d_mlp)
    acts[:, [3, 40]] = torch.randn(20, 2, generator=torch.Generator().manual_seed(2))
    assert set(important_neurons(model, acts, layer=1, k=2).tolist()) == {3, 40}


def test_probe_separates_synthetic_data_in_the_raw_coordinates():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(400, 6, generator=g)
    y = (x[:, 0] - 2 * x[:, 1] > 0).float()
    x = x * torch.tensor([100.0, 0.01, 1, 1, 1, 1]) + 50          # far-apart scales and an offset
    w, b = fit_probe(x, y, steps=200)
    assert probe_accuracy(x, y, w, b) > 0.95                       # w, b act on x itself, not the standardized x
    assert probe_accuracy(x, 1 - y, w, b) < 0.05


def test_probe_accuracy_by_hand():
    x, w, b = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -2.0]]), torch.tensor([1.0, 1.0]), torch.tensor(-0.5)
    assert probe_accuracy(x, torch.tensor([1, 1, 0, 1]), w, b) == 0.75
