"""Chapter 7: references against independent computations (the model's own logits, brute-force
removal of a source, a power series, a hand loop), checks on right and wrong answers, the
graph viewer's pure functions, and what the chapter states about the course model (computed by
course.chapters.ch7_attribution_graphs.findings, asserted here as relations, never as typed-in ids or figures)."""

from __future__ import annotations

import pytest
import torch

from course.attribution import load_shipped_transcoders, prune
from course.attribution import influence as toolkit_influence
from course.attribution.pruning import logit_weights, normalized_matrix
from course.attribution.transcoders import input_site, output_site
from course.chapters.ch7_attribution_graphs import checks as check
from course.chapters.ch7_attribution_graphs.findings import (ROLES, addition_graph, operand_groups, suppress_group, fact_graph, influence_by_bucket, logit_decomposition, pathways,
                                 position_roles, supernode_groups, suppress_feature, suppression_agreement,
                                 top_features, total_effects, validate_by_suppression)
from course.neurons import text_stream
from course.saes import explained_variance, read_sites
from course.widgets import GraphViewer, graph_svg, graph_view, node_card, node_grid
from course.widgets.graphs import cell_offsets, node_card_html, row_labels
from solutions import ch7_attribution_graphs as ref
from tests.check_contract import contract_tests, shipped_values_test

pytestmark = pytest.mark.usefixtures("no_grad")

test_reference_passes_stub_does_not, test_a_wrong_answer_fails, test_known_mistakes_are_diagnosed = \
    contract_tests(check, ref)
test_checks_fall_back_to_the_shipped_values = shipped_values_test(check, ref)

PROMPT = "calc: 36 + 59 = 9"


@pytest.fixture(scope="module")
def tcs(m):
    return load_shipped_transcoders(m, strict=True)


@pytest.fixture(scope="module")
def found(m, tcs):
    return addition_graph(m, tcs)


@pytest.fixture(scope="module")
def rep(found):
    return found["rep"]


# -- references against independent computations ---------------------------------------------

def test_transcoder_loss_against_a_hand_loop_and_explained_variance(m, tcs):
    tokens = text_stream(m, n_rows=2, row_len=16, seed=3).tokens
    acts = read_sites(m, tokens, [input_site(2), output_site(2)])
    x, y = acts[input_site(2)].flatten(0, 1), acts[output_site(2)].flatten(0, 1)
    loss, fvu = ref.transcoder_loss(tcs[2], x, y, 0.0)
    pred = tcs[2](x)
    hand = sum(float(((pred[i] - y[i]) ** 2).sum()) for i in range(len(y))) / len(y)
    assert float(loss) == pytest.approx(hand, rel=1e-4)
    assert float(fvu) == pytest.approx(1 - explained_variance(pred, y), abs=1e-4)


def test_replacement_logits_reproduce_the_model_and_the_toolkit(m, rep):
    torch.testing.assert_close(ref.replacement_logits(rep, rep.embedding(), rep.mlp_writes()), m(rep.tokens)[0],
                               atol=1e-4, rtol=1e-4)
    half = rep.mlp_writes() * 0.5          # off the prompt's own inputs: still the linear model
    torch.testing.assert_close(ref.replacement_logits(rep, rep.embedding(), half),
                               rep.forward(rep.embedding(), half)["logits"], atol=1e-4, rtol=1e-4)


def test_logit_edges_match_brute_force_removal_and_the_graph(m, rep, found):
    answer = int(found["graph"].logit_tokens[0])
    feats, errors, embeds = ref.logit_edges(rep, answer)

    def target(embedding, writes):
        logits = rep.forward(embedding, writes)["logits"][-1]
        return float(logits[answer] - logits.mean())

    base = target(rep.embedding(), rep.mlp_writes())
    for layer, pos in [(0, 9), (3, rep.n_pos - 1)]:          # remove one error term: the target drops by its edge
        w = rep.mlp_writes().clone()
        w[layer, pos] -= rep.errors[layer, pos]
        assert base - target(rep.embedding(), w) == pytest.approx(float(errors[layer, pos]), abs=1e-3)
    e = rep.embedding().clone()
    e[4] = 0
    assert base - target(e, rep.mlp_writes()) == pytest.approx(float(embeds[4]), abs=1e-3)
    l, p, f = (rep.activations > 0).nonzero()[-1].tolist()   # remove one feature's write
    w = rep.mlp_writes().clone()
    w[l, p] -= rep.activations[l, p, f] * rep.transcoders[l].W_dec[f]
    assert base - target(rep.embedding(), w) == pytest.approx(float(feats[l, p, f]), abs=1e-3)
    g = found["graph"]
    row = g.adjacency[g.slices()["logit"].start]
    torch.testing.assert_close(feats[rep.activations > 0], row[g.slices()["feature"]], atol=1e-4, rtol=1e-4)
    assert float(feats[rep.activations == 0].abs().max()) == 0.0


def test_influence_is_the_power_series(found):
    g = found["graph"]
    v = logit_weights(g)
    W = normalized_matrix(g.adjacency).double()
    series, term = torch.zeros(g.n_nodes, dtype=torch.float64), v.double()
    for _ in range(g.n_layers + 3):          # a DAG of depth n_layers + 2: the series ends
        term = term @ W
        series += term
    torch.testing.assert_close(ref.influence(g.adjacency, v), series.float(), atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(ref.influence(g.adjacency, v), toolkit_influence(g), atol=1e-5, rtol=1e-4)


def test_suppression_effect_matches_the_findings_and_is_zero_for_nothing(m, found, tcs):
    node = top_features(found, 1)[0]
    d = found["graph"].describe(node)
    direction = tcs[d["layer"]].W_dec[d["feature"]] * d["activation"]
    answer = int(found["graph"].logit_tokens[0])
    got = ref.suppression_effect(m, found["rep"].tokens, d["layer"], d["pos"], direction, answer)
    assert float(got) == pytest.approx(suppress_feature(m, found, node)["actual"], abs=1e-3)
    assert float(ref.suppression_effect(m, found["rep"].tokens, 0, 1, torch.zeros_like(direction), answer)) == 0.0


# -- findings: the addition graph ---------------------------------------------------------------

def test_the_addition_graph_is_exact_complete_and_mostly_explained(m, found):
    assert found["max_logit_error"] < 1e-3                         # the replacement model is exact
    g = found["graph"]
    torch.testing.assert_close(g.bias_values + g.adjacency.sum(1), g.target_values, atol=1e-3, rtol=1e-3)
    assert found["answer"] == str((36 + 59) % 10) and found["probability"] > 0.5
    assert found["error_share"] < 0.5
    s = found["stats"]
    assert s["feature_influence_kept"] >= 0.8 and s["feature_fraction_kept"] < 0.5 and s["edge_fraction_kept"] < 0.5


def test_pathways_run_from_the_operands_ones_digits(m, found):
    routes = pathways(m, found)
    assert sum(r["influence"] for r in routes) == pytest.approx(float(sum(found["pruned"].influence[n]
                                                                         for r in routes for n in r["features"])))
    roles = {r["role"] for r in routes[:4]}
    assert roles & {"a ones", "b ones"}, routes[:4]             # operand digits feed the answer
    groups = supernode_groups(m, found)
    assert sum(len(v) for v in groups.values()) == found["stats"]["features_kept"]
    assert position_roles(m, PROMPT)[5] == "a ones" and set(ROLES) <= set(position_roles(m, PROMPT))


def test_the_logit_decomposition_sums_to_the_answers_logit(m, found):
    parts = logit_decomposition(found)
    assert sum(parts[k] for k in ("constant", "feature", "error", "embedding")) == pytest.approx(parts["logit"], abs=1e-3)
    logits = m(found["rep"].tokens)[0, -1]                          # the real model's demeaned logit
    answer = int(found["graph"].logit_tokens[0])
    assert parts["logit"] == pytest.approx(float(logits[answer] - logits.mean()), abs=1e-3)


def test_with_the_final_norm_frozen_last_layer_features_do_what_the_graph_predicts(m, found):
    g = found["graph"]
    last = [n for n in top_features(found, found["stats"]["features_kept"])
            if g.describe(n)["layer"] == g.n_layers - 1][:3]
    assert last
    for r in validate_by_suppression(m, found, last):
        assert r["actual_final_frozen"] == pytest.approx(r["predicted_total"], abs=1e-2 + 1e-3 * abs(r["predicted_total"]))


def test_total_effects_of_last_layer_features_are_their_direct_edges(found):
    g = found["graph"]
    eff = total_effects(g)
    last = (g.active[:, 0] == g.n_layers - 1).nonzero().flatten()
    torch.testing.assert_close(eff[last], -g.adjacency[g.slices()["logit"].start, last], atol=1e-4, rtol=1e-4)


def test_suppression_changes_the_answer_as_the_graph_predicts(m, found):
    rows = validate_by_suppression(m, found, top_features(found, 10))
    agreement = suppression_agreement(m, found, rows)
    assert agreement["sign_agreement"] >= 0.7
    op = agreement["operand"]
    assert (op["actual"] > 0) == (op["predicted_total"] > 0)
    if op["predicted_total"] < 0:                                   # predicted to lower the answer: it does
        assert op["p_after"] < op["p_before"]
    # Sizes differ (the graph freezes attention and norms; the chapter prints the ratio's range), but
    # the real effect goes the predicted way and is not negligible beside it.
    assert op["actual"] / op["predicted_total"] > 0.1


# -- findings: a fact ---------------------------------------------------------------------------

def test_a_supernode_removal_adds_its_members_and_matches_single_removals(m, tcs):
    """The first digit's graph: operand groups hold the kept features at each operand digit;
    removing a group of one is removing that feature; removing nothing changes nothing."""
    first = addition_graph(m, tcs, digit="tens")
    assert first["answer"] == "9" and first["prompt"].endswith("= ")
    g, roles = first["graph"], position_roles(m, first["prompt"])
    groups = operand_groups(m, first)
    assert set(groups) == set(ROLES) and any(groups.values())
    kept = set(first["pruned"].nodes())
    for role, nodes in groups.items():
        assert all(n in kept and g.kind(n) == "feature" and roles[g.describe(n)["pos"]] == role for n in nodes)
    node = next(n for ns in groups.values() for n in ns)
    one, single = suppress_group(m, first, [node]), validate_by_suppression(m, first, [node])[0]
    assert one["actual"] == pytest.approx(single["actual"], abs=1e-4)
    assert one["predicted"] == pytest.approx(single["predicted_total"], abs=1e-4)
    nothing = suppress_group(m, first, [])
    assert nothing["actual"] == pytest.approx(0.0, abs=1e-5) and nothing["top_after"] == "9"
    both = [n for ns in groups.values() for n in ns][:3]
    assert suppress_group(m, first, both)["predicted"] == pytest.approx(
        sum(suppress_group(m, first, [n])["predicted"] for n in both), abs=1e-3)


def test_the_fact_graph_recalls_at_the_subject_like_causal_tracing(m, tcs):
    from course.chapters.ch4_mlp_memories.findings import recall_location
    from course.tracing import BUCKETS, average_traces, known_facts

    fact = fact_graph(m, tcs)
    assert fact["max_logit_error"] < 1e-3 and fact["error_share"] < 0.5
    share = influence_by_bucket(fact)
    assert float(share.sum()) == pytest.approx(1.0)
    before_end = share[:, :-1]
    layer, bucket = divmod(int(before_end.argmax()), before_end.shape[1])
    assert BUCKETS[bucket].startswith("subject")                   # chapter 4: facts are recalled on the subject
    traced = recall_location(average_traces(m, known_facts(m, n=6), window=1, n_samples=4, progress=False))
    assert layer == traced["mlp_layer_at_subject"]


# -- the graph viewer ---------------------------------------------------------------------------

def test_graph_view_prunes_with_the_threshold(found):
    g = found["graph"]
    small, large = graph_view(g, 0.5), graph_view(g, 0.9)
    kinds = lambda v: sum(n.kind == "feature" for n in v.nodes)  # noqa: E731
    assert kinds(small) <= kinds(large) and kinds(large) == prune(g, 0.9).features_kept
    shown = {n.node for n in large.nodes}
    assert all(s in shown and t in shown for s, t, _ in large.edges)
    assert any(n.kind == "logit" for n in large.nodes) and large.n_rows == g.n_layers + 2
    with pytest.raises(ValueError, match="thresholds"):
        graph_view(g, 0.0)
    svg = graph_svg(large)
    assert svg.startswith("<svg") and svg.count("<circle") == len(large.nodes) and svg.count("<line") == len(large.edges)


@pytest.mark.parametrize("n", [1, 2, 5, 12, 40])
def test_nodes_in_a_crowded_cell_do_not_overlap_and_stay_inside_it(n):
    col, row = 55.0, 60.0
    offsets, radius = cell_offsets(n, col, row)
    assert len(offsets) == n and 0 < radius <= 8.0
    assert all(abs(dx) + radius <= col / 2 and abs(dy) + radius <= row / 2 for dx, dy in offsets)
    for i in range(n):
        for j in range(i):
            (x1, y1), (x2, y2) = offsets[i], offsets[j]
            assert ((x1 - x2) ** 2 + (y1 - y2) ** 2) ** 0.5 >= 2 * radius - 1e-9


def test_the_picture_names_its_rows_and_has_a_legend(found):
    view = graph_view(found["graph"])
    assert row_labels(view.n_rows) == ["emb"] + [f"L{l}" for l in range(found["graph"].n_layers)] + ["logit"]
    svg = graph_svg(view)
    assert all(f">{name}</text>" in svg for name in row_labels(view.n_rows))
    assert "features" in svg and "errors" in svg and "hover" in svg


def test_node_card_shows_contexts_and_logit_effects(m, found, tcs):
    g = found["graph"]
    tokens = text_stream(m, n_rows=32, row_len=32, seed=0).tokens
    node = top_features(found, 1)[0]
    card = node_card(m, g, tcs, node, tokens)
    assert card.kind == "feature" and len(card.contexts) > 0 and len(card.promotes) == 5
    assert card.logit_effect == pytest.approx(float(g.adjacency[g.slices()["logit"].start, node]))
    err = node_card(m, g, tcs, g.node_index("error", layer=0, pos=9))
    assert err.kind == "error" and err.contexts == [] and err.promotes == []
    emb = node_card(m, g, tcs, g.node_index("embedding", pos=3))
    assert emb.inputs == [] and "(none: an input node)" in node_card_html(emb)
    with pytest.raises(ValueError, match="node must be"):
        node_card(m, g, tcs, g.n_nodes)


def test_graph_viewer_reacts_and_shows_errors_in_the_widget(m, found, tcs):
    v = GraphViewer(m, found["graph"], tcs)
    assert "course-explorer" in v._dom_classes and "<svg" in v.picture.value and "features kept" in v.status.value
    first = v.node.value
    assert v.card.node == first
    # it opens on the most influential feature, not an embedding or error node
    features = [n for n in v.view.nodes if n.kind == "feature"]
    assert first == max(features, key=lambda n: n.influence).node
    v.threshold.value = 0.5
    assert len(v.view.nodes) <= len(graph_view(found["graph"], 0.8).nodes)
    other = v.node.options[-1][1]
    v.node.value = other
    assert v.card.node == other and "strongest inputs" in v.card_html.value
    # the node map: a button per node, where the picture draws it; clicking one shows its card
    grid = node_grid(v.view)
    assert len(grid) == v.view.n_rows and all(len(r) == v.view.n_pos for r in grid)
    assert grid[0][int(found["graph"].n_pos) - 1][0].kind == "logit"        # logits on the top row, at the end
    assert all(n.row == v.view.n_rows - 1 - r and n.pos == p for r, row in enumerate(grid)
               for p, cell in enumerate(row) for n in cell)
    button = next(b for cell in v.grid.children for b in cell.children if b.node_id != v.node.value)
    button.click()
    assert v.node.value == button.node_id and v.card.node == button.node_id
    v.graph = None                      # a broken state shows a message, not a traceback
    v.refresh()
    assert "⚠" in v.status.value


# -- check messages ---------------------------------------------------------------------------

def test_a_forgotten_enable_grad_is_explained_at_the_students_line():
    def edges_without_grad(rep, token):
        e = rep.embedding().detach().requires_grad_(True)
        logits = rep.forward(e, rep.mlp_writes())["logits"][-1]
        return torch.autograd.grad(logits[token], [e])        # gradients are off: this raises
    msg = check.logit_edges(edges_without_grad, quiet=True).message
    assert "raised RuntimeError" in msg and "torch.autograd.grad(logits[token]" in msg and "enable_grad" in msg


def test_a_wrong_scalar_is_told_as_a_number():
    msg = check.suppression_effect(lambda *a: ref.suppression_effect(*a) + 1.0, quiet=True).message
    assert "you gave" in msg and "At []" not in msg and "entries" not in msg


def test_sae_lens_loads_the_shipped_transcoders_with_their_sites_and_encodings(m, tcs):
    sae_lens = pytest.importorskip("sae_lens")
    from course.attribution.transcoders import SHIPPED
    from course.saes import register_with_sae_lens

    with pytest.raises(Exception):    # unknown to SAE Lens until registered: never a silent ReLU transcoder
        sae_lens.SAE.load_from_disk(str(SHIPPED / "layer_0"))
    register_with_sae_lens()
    register_with_sae_lens()          # idempotent
    tokens = text_stream(m, n_rows=2, row_len=16, seed=5).tokens
    for layer, ours in enumerate(tcs):
        theirs = sae_lens.SAE.load_from_disk(str(SHIPPED / f"layer_{layer}"))
        meta = theirs.cfg.metadata
        assert (meta.hook_name, meta.hook_name_out) == (input_site(layer), output_site(layer))
        assert (meta.model_name, meta.context_size, theirs.cfg.architecture()) == ("course-gpt2", 64, "topk_transcoder")
        x = read_sites(m, tokens, [input_site(layer)])[input_site(layer)].flatten(0, 1)
        torch.testing.assert_close(theirs.encode(x), ours.encode(x), atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(theirs.decode(theirs.encode(x)), ours(x), atol=1e-4, rtol=1e-4)


def test_finding_promoted_digits_are_the_decoder_row_through_the_unembedding(m, tcs):
    from course.chapters.ch7_attribution_graphs.findings import feature_reading, promoted_digits

    got = promoted_digits(m, tcs, 3, 5)
    ids = [m.to_single_token(str(d)) for d in range(10)]
    want = (tcs[3].W_dec[5] * m.ln_final_w) @ m.W_U[:, ids]
    want = want - want.mean()
    assert [d for d, _ in got] == [str(int(i)) for i in want.argsort(descending=True)]
    assert got[0][1] == pytest.approx(float(want.max()), abs=1e-5) and sum(v for _, v in got) == pytest.approx(0, abs=1e-4)
    assert "the answer's digit '5' is one of them" in feature_reading([("6", 1.5), ("5", 1.4), ("1", 0.0)], "5")
    assert "one of them" not in feature_reading([("6", 1.5), ("7", 1.4), ("5", 0.0)], "5")


def test_a_layer_missing_from_the_graph_is_one_the_model_barely_uses_here(m, found):
    """The printed verdict's premise: every layer without a kept feature has its MLP zeroed, and
    the sentence follows the measured drop (the shipped model: layer 1, drop about 0.001)."""
    from course.chapters.ch7_attribution_graphs.findings import absent_layers

    absent = absent_layers(m, found)
    g = found["graph"]
    kept = {g.describe(n)["layer"] for n in found["pruned"].nodes() if g.kind(n) == "feature"}
    assert set(absent) == set(range(m.cfg.n_layers)) - kept
    for layer, drop in absent.items():
        zeroed = m.run_with_hooks(found["rep"].tokens, fwd_hooks=[(f"blocks.{layer}.hook_mlp_out",
                                                                   lambda x, hook: torch.zeros_like(x))])
        clean = m(found["rep"].tokens)
        answer = int(g.logit_tokens[0])
        assert drop == pytest.approx(float(clean[0, -1].log_softmax(-1)[answer] - zeroed[0, -1].log_softmax(-1)[answer]),
                                     abs=1e-4)


def test_the_absent_layer_verdict_follows_the_drop():
    from course.chapters.ch7_attribution_graphs.findings import BARELY_USED, absent_layer_verdict

    small = absent_layer_verdict(1, 0.001, "5")
    assert "lowers log P('5') by 0.001" in small and "absence is the model's" in small
    assert "absence is the model's" in absent_layer_verdict(1, -0.05, "5")       # a small rise is no use either
    large = absent_layer_verdict(2, BARELY_USED + 0.4, "5")
    assert "the model does use it" in large and "absence is the model's" not in large
    # The control: the same drop for the layers the graph keeps, in the same sentence.
    with_control = absent_layer_verdict(1, 0.001, "5", {0: 1.25, 2: 0.5})
    assert "by 0.001 (against 1.250 for layer 0, 0.500 for layer 2 in the graph):" in with_control
    # The margin: the threshold the wording is decided by, in the same sentence.
    assert f"below {BARELY_USED})" in small and f"at least {BARELY_USED})" in large

