"""Chapter 2: references against independent computations, checks on right and wrong answers,
the factored-matrix helper, the widgets' pure functions, and the chapter's finding."""

from __future__ import annotations

import math

import pytest
import torch

from course import circuits
from course.chapters.ch2_qk_ov_circuits import checks as check
from course.lens.factored import FactoredMatrix
from course.chapters.ch2_qk_ov_circuits.findings import low_rank_savings, positional_offset_peaks, previous_token_head
from course.circuits import detector_scores
from course.widgets import AttentionExplorer, CircuitViewer, attention_view, circuit_matrix
from solutions import ch2_qk_ov_circuits as ref
from tests.check_contract import contract_tests


pytestmark = pytest.mark.usefixtures("no_grad")   # these tests only read the model


@pytest.fixture(scope="module")
def cache(m):
    _, cache = m.run_with_cache(m.to_tokens(["When Mary and John went to the store, John gave a drink to",
                                             "calc: 12 + 34 = 46 calc: 12 + 34 = 46 and"]))
    return cache


def ln1_out(cache, m, layer):
    return cache[f"blocks.{layer}.ln1.hook_normalized"] * m.ln1_w[layer] + m.ln1_b[layer]


# -- references against independent computations --------------------------------------------

@pytest.mark.parametrize("layer", [0, 1])
def test_scores_and_pattern_match_the_cache(m, cache, layer):
    x = ln1_out(cache, m, layer)
    scores = ref.attention_scores(x, m, layer)
    lower = torch.ones(scores.shape[-2:], dtype=torch.bool).tril()
    torch.testing.assert_close(scores[..., lower], cache["attn_scores", layer][..., lower], atol=1e-4, rtol=1e-4)
    assert torch.isinf(scores[..., ~lower]).all()
    torch.testing.assert_close(ref.attention_pattern(x, m, layer), cache["pattern", layer], atol=1e-5, rtol=1e-4)


def test_detector_scores_match_a_loop(cache):
    pattern = cache["pattern", 0]
    b, h, n, _ = pattern.shape
    want = torch.zeros(3, h)
    for head in range(h):
        want[0, head] = sum(pattern[i, head, q, q - 1] for i in range(b) for q in range(1, n)) / (b * (n - 1))
        want[1, head] = sum(pattern[i, head, q, q] for i in range(b) for q in range(1, n)) / (b * (n - 1))
        want[2, head] = sum(pattern[i, head, q, 0] for i in range(b) for q in range(1, n)) / (b * (n - 1))
    torch.testing.assert_close(ref.detector_scores(pattern), want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(detector_scores(pattern), want, atol=1e-5, rtol=1e-5)   # the toolkit's own


def test_token_qk_circuit_is_the_score_of_a_two_token_stream_without_positions(m):
    ids = m.to_tokens(" Mary John", prepend_bos=False)[0]
    table = ref.token_qk_circuit(m, 0, 1, ids, ids)
    # Build the same number by running attention on a "stream" that is just the embeddings.
    x = torch.nn.functional.layer_norm(m.W_E[ids][None], (m.cfg.d_model,), m.ln1_w[0], m.ln1_b[0])
    q = x[0] @ m.W_Q[0, 1] + m.b_Q[0, 1]
    k = x[0] @ m.W_K[0, 1] + m.b_K[0, 1]
    torch.testing.assert_close(table[1, 0], (q[1] @ k[0]) / math.sqrt(m.cfg.d_head), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(table, circuits.token_qk(m, 0, 1, ids, ids).full(), atol=1e-4, rtol=1e-4)


def test_positional_qk_circuit_matches_the_toolkit(m):
    torch.testing.assert_close(ref.positional_qk_circuit(m, 0, 2, 20),
                               circuits.positional_qk(m, 0, 2, 20).full(), atol=1e-4, rtol=1e-4)


def test_ov_circuit_matches_a_per_token_computation(m):
    ids = m.to_tokens(" Mary John store", prepend_bos=False)[0]
    table = ref.ov_circuit(m, 1, 0, ids)
    for i, t in enumerate(ids):
        row = torch.nn.functional.layer_norm(m.W_E[t], (m.cfg.d_model,), m.ln1_w[1], m.ln1_b[1])
        written = row @ m.W_V[1, 0] @ m.W_O[1, 0]
        torch.testing.assert_close(table[i], written @ m.W_U[:, ids], atol=1e-4, rtol=1e-4)


def test_copying_score_is_a_share_of_the_full_table(m):
    full = circuits.ov(m, 1, 0).full()
    want = float((full.argmax(-1) == torch.arange(m.cfg.d_vocab)).float().mean())
    assert ref.copying_score(m, 1, 0) == pytest.approx(want)


def test_ov_eigenvalues_are_the_nonzero_eigenvalues_of_the_full_table(m):
    ids = torch.arange(300)                      # a slice keeps the full eigendecomposition quick
    a = circuits.ov(m, 0, 2, ids, ids)
    small = FactoredMatrix(a.A.double(), a.B.double())
    full = torch.linalg.eigvals(small.full())
    big = full[full.abs().argsort(descending=True)][: m.cfg.d_head]
    fact = small.eigenvalues()
    for part in (lambda e: e.real, lambda e: e.imag):     # as multisets: conjugate pairs tie in size
        torch.testing.assert_close(part(fact).sort().values, part(big).sort().values, atol=1e-6, rtol=1e-6)
    assert ref.ov_eigenvalues(m, 0, 2).shape == (m.cfg.d_head,)


def test_head_output_matches_the_per_head_result(m):
    tokens = m.to_tokens("When Mary and John went to the store, John gave a drink to")
    _, cache = m.run_with_cache(tokens, names_filter=lambda n: True)
    for layer in range(m.cfg.n_layers):
        for head in range(m.cfg.n_heads):
            torch.testing.assert_close(ref.head_output(cache, m, layer, head), cache["result", layer][:, :, head],
                                       atol=1e-5, rtol=1e-4)


# -- the factored-matrix helper ------------------------------------------------------------------

def test_factored_matrix_agrees_with_the_full_matrix():
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(50, 4, generator=g, dtype=torch.float64), torch.randn(4, 50, generator=g, dtype=torch.float64)
    f = FactoredMatrix(a, b)
    full = a @ b
    assert f.shape == (50, 50) and f.rank() == 4
    torch.testing.assert_close(f.frobenius_norm(), torch.linalg.matrix_norm(full))
    torch.testing.assert_close(f.singular_values(), torch.linalg.svdvals(full)[:4])
    eig_full = torch.linalg.eigvals(full)
    eig_full = eig_full[eig_full.abs().argsort(descending=True)][:4]
    eig = f.eigenvalues()
    for part in (lambda e: e.real, lambda e: e.imag):
        torch.testing.assert_close(part(eig).sort().values, part(eig_full).sort().values)
    torch.testing.assert_close((f @ torch.eye(50, dtype=torch.float64)).full(), full)
    torch.testing.assert_close(f.T.full(), full.T)
    with pytest.raises(ValueError, match="inner sizes"):
        FactoredMatrix(a, a)


# -- checks ---------------------------------------------------------------------------------------

test_reference_passes_stub_does_not, test_a_wrong_answer_fails, test_known_mistakes_are_diagnosed = \
    contract_tests(check, ref)


# -- widgets ----------------------------------------------------------------------------------------

def test_attention_view_matches_the_cache(m):
    prompt = "When Mary and John went to the store, John gave a drink to"
    view = attention_view(m, prompt, 1)
    _, cache = m.run_with_cache(prompt)
    torch.testing.assert_close(torch.tensor(view.patterns), cache["pattern", 1][0])
    assert set(view.scores) == {"previous", "current", "first"} and len(view.scores["previous"]) == m.cfg.n_heads
    with pytest.raises(ValueError, match="layer must be"):
        attention_view(m, prompt, 9)


def test_circuit_matrix_on_distinct_tokens(m):
    c = circuit_matrix(m, 0, 1, "qk", " Mary John Mary")
    assert c.rows == [" Mary", " John"] and len(c.values) == 2 and len(c.values[0]) == 2
    with pytest.raises(ValueError, match="kind must be"):
        circuit_matrix(m, 0, 1, "VO", " Mary")


def test_widgets_construct_and_inline_circuitsvis(m):
    w = AttentionExplorer(m, "Mary and John", layer=1)
    assert w.current is not None and w.status.value == ""
    html = w.view.children[0].children[0].outputs[0]["data"]["text/html"]
    assert "CircuitsVis.render" in html and "unpkg" not in html and "cdn" not in html.lower()[:2000]
    w.head.value = 2
    assert w.status.value == ""
    v = CircuitViewer(m, " Mary John", layer=1, head=0, kind="OV")
    assert v.matrix.kind == "OV"
    v.kind.value = "QK"
    assert v.matrix.kind == "QK"
    from course.data.vocabulary import FIRST_NAMES
    v.prompt.value = " " + " ".join(FIRST_NAMES[:45])        # 45 distinct tokens
    assert "40 or fewer" in v.status.value


# -- the chapter's finding -----------------------------------------------------------------------

def test_finding_the_previous_token_head_looks_one_step_back_by_position(m):
    found = previous_token_head(m)
    assert found["layer"] == 0 and found["score"] >= 0.9
    peaks = positional_offset_peaks(m, found["layer"], found["head"])
    assert peaks["most_common_offset"] == -1 and peaks["share_at_minus_one"] >= 0.9


def test_low_rank_savings_agree_on_the_largest_eigenvalue(m):
    s = low_rank_savings(m, 1, 0, n_tokens=128, repeats=1)
    assert s["largest_factored"] == pytest.approx(s["largest_full"], rel=1e-3)
    assert s["factored_bytes"] < s["full_bytes"]



def test_detector_findings_come_with_their_baseline(m):
    from course.chapters.ch2_qk_ov_circuits.findings import (offset_baseline, positional_offset_peaks,
                                                             previous_token_head)

    found = previous_token_head(m)
    assert found["score"] >= found["runner_up_score"] >= found["others_median"]
    assert found["runner_up"] != f"L{found['layer']}H{found['head']}"
    peaks = positional_offset_peaks(m, found["layer"], found["head"])
    base = offset_baseline(m, found["layer"], found["head"])
    assert 0 <= base["others_median"] <= base["others_max"] <= 1
    # the baseline is the other heads' own share, computed the same way
    l, h = divmod(0 if (found["layer"], found["head"]) != (0, 0) else 1, m.cfg.n_heads)
    assert positional_offset_peaks(m, l, h)["share_at_minus_one"] <= base["others_max"]
    assert peaks["share_at_minus_one"] >= 0


def test_effective_embedding_comparison_reads_its_own_tables(m):
    from course.chapters.ch2_qk_ov_circuits.findings import embedding_comparison, ov_positivity
    from course.circuits import effective_embedding

    eff = effective_embedding(m)
    block = m.hf.transformer.h[0]
    with torch.no_grad():
        torch.testing.assert_close(eff[:5], m.W_E[:5] + block.mlp(block.ln_2(m.W_E[:5])))
    both = embedding_comparison(m)
    torch.testing.assert_close(both["plain"], ov_positivity(m))
    assert both["plain"].abs().max() <= 1 + 1e-5 and both["effective"].abs().max() <= 1 + 1e-5
    flips = [f"L{l}H{h}" for l in range(1, m.cfg.n_layers) for h in range(m.cfg.n_heads)
             if both["plain"][l, h] * both["effective"][l, h] < 0
             and max(abs(both["plain"][l, h]), abs(both["effective"][l, h])) > 0.2]
    assert both["flips"] == flips



def test_the_separate_normalisation_verdict_follows_the_correlations(m):
    from course.chapters.ch2_qk_ov_circuits.findings import guide_verdict, separate_normalisation_guide

    guide = separate_normalisation_guide(m, n_texts=2)
    assert len(guide["corr"]) == m.cfg.n_heads and guide["min"] == pytest.approx(min(guide["corr"]))
    text = guide_verdict(guide)
    weak = [f"H{h}" for h, c in enumerate(guide["corr"]) if c < 0.9]
    assert ("every head" in text) == (not weak)
    assert guide_verdict({"corr": [0.95, 0.97], "median": 0.96, "min": 0.95}).endswith("every head of layer 0")
    assert "rough one for H1" in guide_verdict({"corr": [0.95, 0.3, 0.96], "median": 0.95, "min": 0.3})
