"""Chapter 1: every reference against an independent computation, every check on right and
wrong answers, the widgets' pure functions, and the chapter's finding."""

from __future__ import annotations

import pytest
import torch

from course.chapters.ch1_residual_stream import checks as check
from course.checks import core
from course.chapters.ch1_residual_stream.findings import (attribution_report, fact_emergence, fact_rank_curve, head_role,
                                                          ioi_attribution_intervals, ioi_batch, rank_report)
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


def test_finding_the_lens_rank_curve_and_its_verdict_follow_the_numbers(m):
    curve = fact_rank_curve(m, "capital")
    shares = fact_emergence(m, "capital")
    n = len(curve["depths"])
    assert len(curve["median_rank"]) == len(curve["answer_on_top"]) == len(curve["top_is_last_token"]) == n
    # a fact on top at a depth has rank 0 there; "first on top at the output" cannot exceed "on top at the output"
    assert curve["answer_on_top"][-1] >= shares["output"] - 1e-9
    for on_top, rank in zip(curve["answer_on_top"], curve["median_rank"]):
        assert (rank == 0) == (on_top > 0.5) or on_top == 0.5
    text = "\n".join(rank_report(curve))
    echo = min(curve["top_is_last_token"][:-1])
    assert ("reads back the current token" in text) == (echo >= 0.9)
    climbs = curve["median_rank"][n - 2] < curve["median_rank"][0]
    assert ("rank climbs" in text) == climbs and ("does not climb" in text) == (not climbs)
    assert f"{curve['median_rank'][0]:.0f} to {curve['median_rank'][n - 2]:.0f}" in text


def test_the_lens_verdict_says_nothing_of_echoes_where_the_lens_does_not_echo():
    curve = {"depths": ["embed", "before L1", "output"], "median_rank": [10.0, 20.0, 0.0],
             "answer_on_top": [0.0, 0.1, 0.9], "top_is_last_token": [0.5, 0.2, 0.0], "last_token": " is",
             "d_vocab": 100, "n_facts": 10}
    text = "\n".join(rank_report(curve))
    assert "current token" not in text and "does not climb from 10 to 20" in text


@pytest.fixture(scope="module")
def intervals(m):
    return ioi_attribution_intervals(m)


def test_finding_ioi_attribution_has_intervals_over_held_out_templates(m, intervals):
    s = intervals
    assert s["split"] == "test" and s["n_templates"] >= 4 and s["n_prompts"] >= 100
    comps, heads = s["components"], s["heads"]
    for r in [*comps.values(), *heads.values()]:
        assert r["low"] <= r["mean"] <= r["high"]
    # the verdicts are exactly the components whose interval lies on one side of 0
    assert s["towards_components"] == [c for c, r in comps.items() if r["low"] > 0]
    assert s["against_components"] == [c for c, r in comps.items() if r["high"] < 0]
    assert s["against_heads"] == [h for h, r in heads.items() if r["high"] < 0]
    assert set(s["unclear_components"]) | set(s["towards_components"]) | set(s["against_components"]) == set(comps)
    assert s["top_component"] == max(comps, key=lambda c: comps[c]["mean"])
    top = list(s["top_heads"])
    assert top == sorted(heads, key=lambda h: -heads[h]["mean"])[:len(top)]
    # the components (plus the final layer norm's bias, a constant per prompt) add up to the logit difference
    assert abs(sum(r["mean"] for r in comps.values()) - s["logit_diff"][0]) < 0.05 * abs(s["logit_diff"][0]) + 0.05


def test_the_printed_attribution_verdicts_are_the_computed_ones(intervals):
    s = intervals
    text = "\n".join(attribution_report(s))
    for c in s["towards_components"]:
        assert f"{c} ({s['components'][c]['mean']:+.2f})" in text.split("towards the answer")[1].splitlines()[0]
    against_line = next(line for line in text.splitlines() if line.startswith("against the answer"))
    assert against_line.endswith("none") == (not s["against_components"])
    head_line = next(line for line in text.splitlines() if line.startswith("heads against"))
    assert all(h in head_line for h in s["against_heads"])
    for h, t in s["top_heads"].items():
        assert f"so {h} {head_role(t)}" in text


@pytest.mark.parametrize("figures, words", [
    ({"attention_to_s": 0.9, "attention_to_io": 0.01, "lowers_s": 1.2, "raises_io": 0.02}, "pushing S down"),
    ({"attention_to_s": 0.02, "attention_to_io": 0.8, "lowers_s": 0.1, "raises_io": 1.5}, "copies it up"),
    ({"attention_to_s": 0.4, "attention_to_io": 0.4, "lowers_s": 0.5, "raises_io": 0.5}, "mixes the two"),
])
def test_a_heads_role_follows_where_it_looks_and_what_it_writes(figures, words):
    assert words in head_role(figures)
