"""Chapter 1: every reference against an independent computation, every check on right and
wrong answers, the widgets' pure functions, and the chapter's finding."""

from __future__ import annotations

import pytest
import torch

from course.chapters.ch1_residual_stream import checks as check
from course.checks import core
from course.chapters.ch1_residual_stream.findings import fact_emergence, ioi_attribution_summary, ioi_batch
from course.widgets import AttributionExplorer, LogitLensExplorer, attribution_table, logit_lens_table
from solutions import ch1_residual_stream as ref


pytestmark = pytest.mark.usefixtures("no_grad")   # these tests only read the model


@pytest.fixture(scope="module")
def run(m):
    tokens = m.to_tokens(["When Mary and John went to the store, John gave a drink to", "calc: 36 + 59 = 95"])
    logits, cache = m.run_with_cache(tokens)
    return tokens, logits, cache


# -- references against independent computations --------------------------------------------

def test_layer_norm_matches_torch(m):
    x = torch.randn(3, 7, m.cfg.d_model) * 4 + 2
    want = torch.nn.functional.layer_norm(x, (m.cfg.d_model,), m.ln1_w[0], m.ln1_b[0], eps=1e-5)
    torch.testing.assert_close(ref.layer_norm(x, m.ln1_w[0], m.ln1_b[0]), want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("layer", [0, 1])
def test_attention_and_mlp_layers_match_the_cached_outputs(m, run, layer):
    _, _, cache = run
    x1 = cache["blocks.%d.ln1.hook_normalized" % layer] * m.ln1_w[layer] + m.ln1_b[layer]
    torch.testing.assert_close(ref.attention_layer(x1, m, layer), cache["attn_out", layer], atol=1e-5, rtol=1e-4)
    x2 = cache["blocks.%d.ln2.hook_normalized" % layer] * m.ln2_w[layer] + m.ln2_b[layer]
    torch.testing.assert_close(ref.mlp_layer(x2, m, layer), cache["mlp_out", layer], atol=1e-5, rtol=1e-4)


def test_forward_from_weights_matches_the_model(m, run):
    tokens, logits, _ = run
    torch.testing.assert_close(ref.forward_from_weights(tokens, m), logits, atol=1e-4, rtol=1e-4)


def test_residual_components_sum_to_the_final_stream(m, run):
    _, _, cache = run
    parts = ref.residual_components(cache, m)
    assert parts.shape[0] == 2 + 2 * m.cfg.n_layers
    torch.testing.assert_close(parts.sum(0), cache["resid_post", m.cfg.n_layers - 1], atol=1e-5, rtol=1e-5)


def test_logit_lens_last_row_is_the_model_output(m, run):
    _, logits, cache = run
    lens = ref.logit_lens(cache, m)
    assert lens.shape == (m.cfg.n_layers + 1, 2, m.cfg.d_vocab)
    torch.testing.assert_close(lens[-1], logits[:, -1], atol=1e-4, rtol=1e-4)


def test_logit_lens_first_row_is_the_embedding_through_the_final_norm(m, run):
    tokens, _, cache = run
    embedded = m.W_E[tokens[:, -1]] + m.W_pos[tokens.shape[1] - 1]
    want = torch.nn.functional.layer_norm(embedded, (m.cfg.d_model,), m.ln_final_w, m.ln_final_b) @ m.W_U
    torch.testing.assert_close(ref.logit_lens(cache, m)[0], want, atol=1e-4, rtol=1e-4)


def test_attributions_add_up_to_the_logit_difference(m):
    tokens, answer, counter = ioi_batch(m, 8, seed=5)
    logits, cache = m.run_with_cache(tokens)
    rows = torch.arange(len(answer))
    diff = logits[rows, -1, answer] - logits[rows, -1, counter]
    direction = ref.logit_diff_direction(m, answer, counter)
    comps = ref.component_attribution(cache, m, answer, counter)
    torch.testing.assert_close(comps.sum(0) + direction @ m.ln_final_b, diff, atol=1e-3, rtol=1e-3)
    heads = ref.head_attribution(cache, m, answer, counter)              # [layer, head, batch]
    bias = cache.apply_ln_to_stack(m.b_O[:, None].expand(-1, len(answer), -1), pos=-1)
    for layer in range(m.cfg.n_layers):   # heads plus the output bias make up the attention write
        attn = comps[2 + 2 * layer]
        torch.testing.assert_close(heads[layer].sum(0) + (bias[layer] * direction).sum(-1), attn, atol=1e-3, rtol=1e-3)


# -- checks: right answers pass, stubs and wrong answers fail with a reason ------------------

EXERCISES = list(check.EXERCISES)


def _stub(*args, **kwargs):
    raise NotImplementedError("fill in this function")


@pytest.mark.parametrize("name", EXERCISES)
def test_reference_passes_its_check_visible_and_hidden(name):
    assert getattr(check, name)(getattr(ref, name), quiet=True).passed
    assert getattr(check, name)(getattr(ref, name), hidden=True, quiet=True).passed


@pytest.mark.parametrize("name", EXERCISES)
def test_stub_reports_not_implemented(name, capsys):
    result = getattr(check, name)(_stub)
    assert result.status == "not implemented" and not result
    assert capsys.readouterr().out.strip() == f"… {name} not implemented yet"
    with pytest.raises(AssertionError, match="not implemented"):
        result.require()


@pytest.mark.parametrize("name", EXERCISES)
def test_a_wrong_answer_fails_with_evidence(name):
    def off_by_one(*args, **kwargs):
        return getattr(ref, name)(*args, **kwargs) + 1.0
    result = getattr(check, name)(off_by_one, quiet=True)
    assert result.status == "fail"
    assert result.message.startswith(f"✗ {name}") and "you gave" in result.message and "expected" in result.message


@pytest.mark.parametrize("name, cause_index, words", [
    (name, i, words) for name, ex in check.EXERCISES.items()
    for i, (_, words) in enumerate(ex.causes)
])
def test_known_mistakes_are_diagnosed(name, cause_index, words):
    wrong, _ = check.EXERCISES[name].causes[cause_index]
    result = getattr(check, name)(wrong, quiet=True)
    assert result.status == "fail" and f"Likely cause: {words}" in result.message


def test_wrong_shape_and_errors_are_explained():
    transposed = check.logit_diff_direction(lambda m, a, c: ref.logit_diff_direction(m, a, c).T, quiet=True)
    assert "shape is" in transposed.message and "transpose" in transposed.message
    crashed = check.layer_norm(lambda x, w, b: x @ torch.ones(3), quiet=True)
    assert "raised RuntimeError" in crashed.message and "line" in crashed.message
    assert "not its result" in check.layer_norm(42, quiet=True).message


def test_checks_fall_back_to_shipped_values_without_solutions(monkeypatch):
    monkeypatch.setattr(core.Exercise, "reference", lambda self: None)
    for name in EXERCISES:
        result = getattr(check, name)(getattr(ref, name), quiet=True)
        assert result.passed, result.message
        assert "expected values" in result.message
    wrong = check.logit_lens(lambda c, m, pos=-1: ref.logit_lens(c, m, pos) * 2, quiet=True)
    assert wrong.status == "fail"
    hidden = check.logit_lens(ref.logit_lens, hidden=True, quiet=True)
    assert hidden.status == "fail" and "reference implementation" in hidden.message


# -- widgets -----------------------------------------------------------------------------------

def test_logit_lens_table_last_row_is_the_models_top_token(m):
    from course.data.facts import countries
    prompt = f"The capital of {countries()[3].name} is"
    table = logit_lens_table(m, prompt, k=3)
    logits = m(prompt)[0]
    assert len(table.layers) == m.cfg.n_layers + 1 and table.tokens == m.to_str_tokens(prompt)
    for pos in range(len(table.tokens)):
        token, prob = table.top(-1, pos)
        assert token == m.to_string(logits[pos].argmax())
        assert prob == pytest.approx(float(logits[pos].softmax(-1).max()), rel=1e-4)
        assert table.top_probs[-1][pos] == sorted(table.top_probs[-1][pos], reverse=True)


def test_attribution_table_adds_up(m):
    t = attribution_table(m, "When Mary and John went to the store, John gave a drink to", " Mary", " John")
    assert t.component_labels[:2] == ["embed", "pos_embed"]
    assert sum(t.components) + t.bias == pytest.approx(t.logit_diff, abs=1e-3)
    assert len(t.heads) == m.cfg.n_layers and len(t.heads[0]) == m.cfg.n_heads


def test_widgets_construct_and_react(m):
    lens = LogitLensExplorer(m, "calc: 36 + 59 =")
    assert lens.table is not None and lens.status.value == ""
    lens.layer.value = 0
    assert "embed" in lens.view.children[1].value
    lens.prompt.value = "x " * 300                        # too long: an error in words, in the widget
    assert "context" in lens.status.value and "Traceback" not in lens.status.value
    dla = AttributionExplorer(m)
    assert dla.table is not None
    dla.answer.value = " Mary and"                        # not one token
    assert "not one" in dla.status.value


# -- the chapter's findings --------------------------------------------------------------------

def test_finding_facts_become_the_answer_only_at_the_output(m):
    shares = fact_emergence(m, "capital")
    assert sum(shares.values()) == pytest.approx(1.0)
    # The chapter states: no fact is on top from the embeddings alone, and most become the
    # top prediction only after the last layer.
    assert shares["embed"] == 0.0
    assert shares["output"] > 0.5 and shares["never"] < 0.1


def test_finding_ioi_direct_push_is_found_by_direct_attribution(m):
    s = ioi_attribution_summary(m, n_prompts=60)
    assert s["logit_diff"] > 2.0
    # The chapter prints the largest component and head; they are the argmax of the table,
    # and the components plus the final layer norm's bias add up to the logit difference.
    assert s["top_component"] == max(s["components"], key=s["components"].get)
    assert s["top_head"] == max(s["heads"], key=s["heads"].get)
    _, answer, counter = ioi_batch(m, 60)
    bias = float((m.ln_final_b @ (m.W_U[:, answer] - m.W_U[:, counter])).mean())
    assert sum(s["components"].values()) + bias == pytest.approx(s["logit_diff"], rel=1e-3, abs=1e-3)
