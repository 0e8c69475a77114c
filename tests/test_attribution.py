"""course.attribution: transcoders, the local replacement model, attribution, pruning, export.

Each test compares with something computed another way: the real model's forward, forward
passes with a source removed (brute force), a power series, a hand-made sum.
"""

from __future__ import annotations

import json

import pytest
import torch

from course.attribution import (AttributionGraph, LocalReplacement, PrunedGraph, TranscoderSet, attribute,
                                evaluate_transcoders, graph_json, influence, load_circuit_tracer_transcoder,
                                load_shipped_transcoders, prune, replaced_loss, save_circuit_tracer_transcoders,
                                supernodes, train_transcoders)
from course.attribution.pruning import error_share, logit_weights, normalized_matrix
from course.attribution.transcoders import SHIPPED, input_site, output_site
from course.saes import StaleSAEError, model_fingerprint, read_sites
from course.saes.metrics import evaluation_tokens

PROMPT = "calc: 36 + 59 = 9"


@pytest.fixture(scope="module")
def tiny(m):
    """Small transcoders trained here, so these tests do not depend on the shipped ones."""
    torch.manual_seed(0)
    tcs, _ = train_transcoders(m, tokens=8192, d_sae=128, k=8, batch_size=1024, progress=False)
    return tcs


@pytest.fixture(scope="module")
def rep(m, tiny):
    return LocalReplacement.build(m, tiny, PROMPT)


@pytest.fixture(scope="module")
def graph(rep):
    return attribute(rep, max_logits=2)


# -- transcoders -------------------------------------------------------------------------------

def test_shipped_transcoders_were_trained_on_the_bundled_model(m):
    tcs = load_shipped_transcoders()
    assert len(tcs) == m.cfg.n_layers
    try:
        tcs.check_fresh(m)
    except StaleSAEError as e:
        pytest.fail(f"The shipped transcoders are stale: {e}")


def test_a_changed_model_makes_the_transcoders_stale(m, tiny):
    with torch.no_grad():
        before = m.W_out[0, 0, 0].clone()
        m.W_out[0, 0, 0] += 1.0
        try:
            with pytest.raises(StaleSAEError, match="course.training.transcoders"):
                tiny.check_fresh(m)
        finally:
            m.W_out[0, 0, 0] = before
    tiny.check_fresh(m)


def test_shipped_metrics_are_recomputed_from_the_shipped_weights(m):
    stored = json.loads((SHIPPED / "metrics.json").read_text())
    now = evaluate_transcoders(m, load_shipped_transcoders())
    for row, mets in zip(stored["layers"], now["layers"]):
        assert row["fvu"] == pytest.approx(mets.fvu, abs=2e-3)
        assert row["l0"] == pytest.approx(mets.l0, abs=0.05)
    assert stored["replaced_loss"] == pytest.approx(now["replaced_loss"], abs=2e-3)
    assert now["clean_loss"] < now["replaced_loss"] < now["mlps_zeroed_loss"]


# The v2 transcoders' FVU per layer (issue 37 asked for at most 20% dead "at the same FVU or better").
V2_FVU = (0.084, 0.241, 0.145, 0.015)


def test_shipped_transcoders_use_their_features_and_fit_better_than_v2(m):
    from course.attribution.transcoders import dead_share
    from course.neurons import text_stream
    from course.training.transcoders import LONG_WINDOW_ROWS

    stored = json.loads((SHIPPED / "metrics.json").read_text())
    tcs = load_shipped_transcoders()
    dead = dead_share(m, tcs, text_stream(m, LONG_WINDOW_ROWS, 64, seed=987_654).tokens)
    for row, d, v2 in zip(stored["layers"], dead, V2_FVU):
        assert row[f"dead_{LONG_WINDOW_ROWS * 64}_tokens"] == pytest.approx(d, abs=1e-4)   # the card's column
        assert d <= 0.20, f"layer {row['layer']}: {d:.0%} of features never fire on {LONG_WINDOW_ROWS * 64} tokens"
        assert row["fvu"] <= v2
    short = dead_share(m, tcs, evaluation_tokens(m))
    assert [round(x, 4) for x in short] == [row["dead"] for row in stored["layers"]]


def test_centring_the_input_while_training_folds_into_the_encoder_bias(m):
    from course.saes import train_sae

    tc, _ = train_sae(m, input_site(1), 32, "topk", 4, 0.0, 2048, 512, 2e-3, 0, 8,
                      target_hook_name=output_site(1), progress=False, center_input=True)
    assert tc.x_center is None                                      # folded: the saved form is plain
    x = read_sites(m, evaluation_tokens(m, n_rows=2), [input_site(1)])[input_site(1)]
    centre = torch.randn(x.shape[-1])
    f_plain = tc.encode(x)
    tc.x_center = centre
    f_centred = tc.encode(x)
    tc.fold_centering()
    torch.testing.assert_close(tc.encode(x), f_centred, atol=1e-5, rtol=1e-5)
    assert tc.x_center is None and not torch.allclose(f_plain, f_centred)


def test_transcoders_read_and_predict_the_right_sites(tiny):
    for l, tc in enumerate(tiny):
        assert (tc.cfg.hook_name, tc.cfg.target_hook_name) == (input_site(l), output_site(l))
    with pytest.raises(ValueError):
        TranscoderSet([tiny[1]])


def test_replaced_loss_matches_a_forward_with_the_hf_mlp_swapped(m, tiny, tmp_path):
    tokens = m.to_tokens(["calc: 12 + 34 = 46", "The capital of France is Paris"])[:, :8]
    mlp = m.hf.transformer.h[1].mlp
    ln = m.hf.transformer.h[1].ln_2
    real_forward = mlp.forward

    def through_transcoder(h):      # h is ln_2's output: undo its weight and bias
        return tiny[1]((h - ln.bias) / ln.weight)

    mlp.forward = through_transcoder
    try:
        with torch.no_grad():
            logits = m.hf(tokens).logits
    finally:
        mlp.forward = real_forward
    expected = torch.nn.functional.cross_entropy(logits[:, :-1].flatten(0, 1), tokens[:, 1:].flatten())
    assert replaced_loss(m, tiny, tokens, [1]) == pytest.approx(float(expected), abs=1e-4)
    assert replaced_loss(m, tiny, tokens, []) == pytest.approx(float(m(tokens, return_type="loss").detach()), abs=1e-5)


def test_save_and_load_round_trip(tiny, tmp_path):
    back = TranscoderSet.load(tiny.save(tmp_path / "tcs"))
    x = torch.randn(5, tiny[0].cfg.d_in)
    for a, b in zip(tiny, back):
        torch.testing.assert_close(a(x), b(x))
    assert back.fingerprint == tiny.fingerprint


def test_training_is_reproducible_from_a_seed(m):
    a, _ = train_transcoders(m, layers=[0], tokens=2048, d_sae=32, k=4, batch_size=1024, progress=False)
    b, _ = train_transcoders(m, layers=[0], tokens=2048, d_sae=32, k=4, batch_size=1024, progress=False)
    torch.testing.assert_close(a[0].W_dec, b[0].W_dec)


# -- the local replacement model -----------------------------------------------------------------

def test_replacement_reproduces_the_model_logits(m, rep):
    with torch.no_grad():
        real = m(rep.tokens)[0]
        out = rep.forward()
    torch.testing.assert_close(out["logits"], real, atol=1e-4, rtol=1e-4)


def test_replacement_features_are_the_transcoders_on_its_own_mlp_inputs(rep):
    with torch.no_grad():
        out = rep.forward()
        for l, tc in enumerate(rep.transcoders):
            torch.testing.assert_close(tc.encode(out["mlp_in"][l]), rep.activations[l], atol=1e-4, rtol=1e-4)


def test_replacement_is_affine_in_its_inputs(rep):
    e, w = rep.embedding().detach(), rep.mlp_writes().detach()
    g = torch.Generator().manual_seed(0)
    de, dw = torch.randn(e.shape, generator=g), torch.randn(w.shape, generator=g)
    with torch.no_grad():
        f = lambda a, b: rep.forward(a, b)["logits"]
        lhs = f(e + de, w + dw) - f(e, w)
        rhs = f(e + de, w) - f(e, w) + f(e, w + dw) - f(e, w)
    torch.testing.assert_close(lhs, rhs, atol=1e-3, rtol=1e-3)


# -- attribution ---------------------------------------------------------------------------------

def _remove(rep, graph, source):
    """(embedding, writes) with ``source``'s contribution taken out."""
    e, w = rep.embedding().detach().clone(), rep.mlp_writes().detach().clone()
    d = graph.describe(source)
    if d["kind"] == "embedding":
        e[d["pos"]] = 0
    elif d["kind"] == "error":
        w[d["layer"], d["pos"]] -= rep.errors[d["layer"], d["pos"]]
    else:
        w[d["layer"], d["pos"]] -= d["activation"] * rep.transcoders[d["layer"]].W_dec[d["feature"]]
    return e, w


def _target(rep, graph, target, out):
    d = graph.describe(target)
    if d["kind"] == "feature":
        return float(rep.transcoders[d["layer"]].pre_activations(out["mlp_in"][d["layer"], d["pos"]])[d["feature"]])
    logits = out["logits"][-1]
    return float(logits[d["token"]] - logits.mean())


def test_edges_match_brute_force_removal_of_each_source(rep, graph):
    g = torch.Generator().manual_seed(1)
    s = graph.slices()
    last_layer = (graph.active[:, 0] == graph.active[:, 0].max()).nonzero().flatten()
    targets = [s["logit"].start, s["logit"].start + 1] + last_layer[torch.randperm(len(last_layer), generator=g)[:3]].tolist()
    with torch.no_grad():
        base = rep.forward()
        for t in targets:
            sources = graph.adjacency[t].abs().topk(6).indices.tolist()
            sources += torch.randint(0, graph.n_nodes - 2, (4,), generator=g).tolist()
            for src in sources:
                if graph.kind(src) == "logit":
                    continue
                after = rep.forward(*_remove(rep, graph, src))
                effect = _target(rep, graph, t, base) - _target(rep, graph, t, after)
                assert effect == pytest.approx(float(graph.adjacency[t, src]), abs=2e-4, rel=1e-3), \
                    (graph.label(src), graph.label(t))


def test_targets_are_their_bias_value_plus_their_incoming_edges(m, rep, graph):
    s = graph.slices()
    torch.testing.assert_close(graph.bias_values + graph.adjacency.sum(1), graph.target_values, atol=1e-3, rtol=1e-4)
    real = m(rep.tokens)[0, -1].detach()
    for i, tok in enumerate(graph.logit_tokens.tolist()):
        assert float(graph.target_values[s["logit"].start + i]) == pytest.approx(float(real[tok] - real.mean()), abs=1e-3)
    l, p, f = graph.active[0].tolist()
    pre = rep.transcoders[l].pre_activations(rep.forward()["mlp_in"][l, p])[f]
    assert float(graph.target_values[0]) == pytest.approx(float(pre.detach()), abs=1e-4)


def test_no_edge_runs_backwards_or_within_a_layer(graph):
    f = graph.active
    src_layer = f[:, 0][None, :]
    tgt_layer = f[:, 0][:, None]
    feature_block = graph.adjacency[: graph.n_features, : graph.n_features]
    assert (feature_block[src_layer >= tgt_layer] == 0).all()
    later = graph.active[:, 1][None, :] > graph.active[:, 1][:, None]      # a source after its target
    assert (feature_block[later] == 0).all()


# -- pruning and supernodes ----------------------------------------------------------------------

def test_influence_is_the_sum_of_path_weights(graph):
    w = normalized_matrix(graph.adjacency).double()
    v = logit_weights(graph).double()
    total, power = torch.zeros_like(v), v.clone()
    for _ in range(graph.n_layers + 3):           # paths are at most n_layers + 2 edges long
        power = power @ w
        total += power
    torch.testing.assert_close(influence(graph).double(), total, atol=1e-5, rtol=1e-4)
    assert 0 <= error_share(graph) <= 1


def test_pruning_keeps_the_requested_share_of_influence(graph):
    small, big = prune(graph, 0.5, 0.9), prune(graph, 0.9, 0.99)
    for p, thr in ((small, 0.5), (big, 0.9)):
        st = p.stats()
        assert st["feature_influence_kept"] >= thr - 1e-6
        assert 0 < st["feature_fraction_kept"] <= 1 and 0 < st["edge_fraction_kept"] <= 1
        kept = p.node_mask
        assert not p.edge_mask[~kept].any() and not p.edge_mask[:, ~kept].any()
    assert small.features_kept <= big.features_kept
    assert small.stats()["edges_kept"] <= big.stats()["edges_kept"]


def _hand_graph() -> AttributionGraph:
    """1 layer, 2 positions; nodes: features 0 (pos 0) and 1 (pos 1), errors 2-3, embeddings 4-5, logit 6.
    Every edge runs from a lower-numbered layer's node to a later one, so adjacency[source, target] is 0."""
    a = torch.zeros(7, 7)
    a[0, 4] = 0.5                                     # embed@0 -> feature 0
    a[1, 4], a[1, 5] = -0.25, 1.5                     # embed@0, embed@1 -> feature 1
    a[6, 0], a[6, 1], a[6, 3], a[6, 5] = 2.0, -3.0, 0.75, -0.125        # -> the logit
    return AttributionGraph(["a", "b"], torch.tensor([1, 2]), torch.tensor([[0, 0, 7], [0, 1, 9]]),
                            torch.tensor([1.0, 2.0]), torch.tensor([3]), torch.tensor([0.5]), a, n_layers=1)


def test_pruned_edges_read_the_adjacency_as_target_source():
    g = _hand_graph()
    p = PrunedGraph(g, torch.ones(7, dtype=torch.bool), g.adjacency != 0, torch.zeros(7), 1.0, 1.0)
    expected = {(4, 0, 0.5), (4, 1, -0.25), (5, 1, 1.5), (0, 6, 2.0), (1, 6, -3.0), (3, 6, 0.75), (5, 6, -0.125)}
    assert sorted(p.edges()) == sorted(expected)        # (source, target, weight), written out by hand


def test_pruned_edges_are_every_kept_entry_with_its_weight(graph):
    everything = PrunedGraph(graph, torch.ones(graph.n_nodes, dtype=torch.bool), graph.adjacency != 0,
                             torch.zeros(graph.n_nodes), 1.0, 1.0)
    a = graph.adjacency.tolist()
    brute = {(s, t): a[t][s] for t in range(graph.n_nodes) for s in range(graph.n_nodes) if a[t][s] != 0}
    got = {(s, t): w for s, t, w in everything.edges()}
    assert got == brute                                 # none missing, none extra, each weight a[target][source]
    pruned = prune(graph)
    mask = pruned.edge_mask.tolist()
    kept = {(s, t): a[t][s] for t in range(graph.n_nodes) for s in range(graph.n_nodes) if mask[t][s]}
    edges = {(s, t): w for s, t, w in pruned.edges()}
    assert edges == kept and len(edges) == len(pruned.edges())
    weights = torch.tensor(list(edges.values()))
    assert (weights != 0).all() and (weights > 0).any() and (weights < 0).any()


def test_kept_edges_into_the_logit_are_the_effect_of_removing_their_source(rep, graph):
    """Independent of how ``adjacency`` is indexed: take the source out of the forward pass."""
    logit = graph.slices()["logit"].start
    into_logit = sorted((e for e in prune(graph).edges() if e[1] == logit and graph.kind(e[0]) != "logit"),
                        key=lambda e: -abs(e[2]))
    picked = into_logit[:3] + [e for e in into_logit if e[2] < 0][:1]      # the largest, and a negative one
    with torch.no_grad():
        base = _target(rep, graph, logit, rep.forward())
        for s, t, w in picked:
            effect = base - _target(rep, graph, t, rep.forward(*_remove(rep, graph, s)))
            assert w == pytest.approx(effect, abs=2e-4, rel=1e-3), graph.label(s)
    assert len(picked) == 4 and picked[0][2] != 0


def test_supernodes_sum_their_members_edges(graph):
    a, b = [0, 1], [graph.n_features - 1, graph.n_features - 2]
    sg = supernodes(graph, {"A": a, "B": b})
    assert sg.labels[:2] == ["A", "B"]
    assert float(sg.adjacency[1, 0]) == pytest.approx(float(graph.adjacency[b][:, a].sum()), abs=1e-5)
    logit = graph.slices()["logit"].start
    row = sg.members.index([logit])
    assert float(sg.adjacency[row, 1]) == pytest.approx(float(graph.adjacency[logit, b].sum()), abs=1e-5)
    with pytest.raises(ValueError):
        supernodes(graph, {"A": [0], "B": [0]})


# -- circuit-tracer's formats --------------------------------------------------------------------

def test_graph_json_has_circuit_tracers_shape(m, graph):
    data = graph_json(prune(graph), "addition", m.to_string)
    assert set(data) == {"metadata", "qParams", "nodes", "links"}
    ids = {n["node_id"] for n in data["nodes"]}
    assert all(l["source"] in ids and l["target"] in ids for l in data["links"])
    kinds = {n["feature_type"] for n in data["nodes"]}
    assert {"embedding", "logit"} <= kinds
    assert sum(n["is_target_logit"] for n in data["nodes"]) == 1
    l, p, f = graph.active[0].tolist()
    feats = [n for n in data["nodes"] if n["feature_type"] == "cross layer transcoder"]
    assert all(n["node_id"].count("_") == 2 for n in feats)
    assert data["metadata"]["prompt_tokens"] == m.to_str_tokens(PROMPT)
    json.dumps(data)


def _json_node_index(graph, node: dict) -> int:
    """A graph-JSON node's index in ``graph``, from its fields (the feature index from its id)."""
    kind = {"cross layer transcoder": "feature", "mlp reconstruction error": "error", "embedding": "embedding",
            "logit": "logit"}[node["feature_type"]]
    if kind == "feature":
        return graph.node_index(kind, int(node["layer"]), node["ctx_idx"], int(node["node_id"].split("_")[1]))
    if kind == "logit":
        return graph.node_index(kind, feature=node["feature"])
    return graph.node_index(kind, None if kind == "embedding" else int(node["layer"]), node["ctx_idx"])


def test_graph_json_links_carry_the_edge_weights(m, graph):
    pruned = prune(graph)
    data = json.loads(json.dumps(graph_json(pruned, "addition", m.to_string)))
    index = {n["node_id"]: _json_node_index(graph, n) for n in data["nodes"]}
    assert len(index) == len(data["nodes"])
    a = graph.adjacency.tolist()
    links = {(index[l["source"]], index[l["target"]]): l["weight"] for l in data["links"]}
    assert len(links) == len(data["links"]) == len(pruned.edges())
    assert links == {(s, t): a[t][s] for s, t in links}                 # adjacency[target][source], exactly
    assert links == {(s, t): w for s, t, w in pruned.edges()}
    weights = [l["weight"] for l in data["links"]]
    assert all(w != 0 for w in weights) and min(weights) < 0 < max(weights)


def test_exported_transcoders_read_the_mlp_input_and_give_the_same_output(m, tiny, tmp_path):
    out = save_circuit_tracer_transcoders(tiny, m, tmp_path / "ct")
    assert (out / "config.yaml").read_text().count("layer_") == len(tiny)
    tokens = m.to_tokens(PROMPT)
    _, cache = m.run_with_cache(tokens, names_filter=[input_site(2)])
    n = cache[input_site(2)][0]
    mlp_in = n * m.ln2_w[2] + m.ln2_b[2]        # what the MLP itself reads
    ct = load_circuit_tracer_transcoder(out / "layer_2.safetensors")
    with torch.no_grad():
        torch.testing.assert_close(ct(mlp_in), tiny[2](n), atol=1e-4, rtol=1e-4)
    assert model_fingerprint(m) in (out / "config.yaml").read_text()


def test_exported_transcoder_files_hold_only_what_circuit_tracers_loader_accepts(m, tiny, tmp_path):
    """circuit-tracer 0.5 loads a layer file with ``load_state_dict`` (unknown tensors fail) from the
    hooks, scan and paths of ``config.yaml``; ``k`` travels as metadata (tools/circuit_tracer_crosscheck.py
    loads these files with circuit-tracer itself)."""
    from safetensors import safe_open

    out = save_circuit_tracer_transcoders(tiny, m, tmp_path / "ct")
    with safe_open(str(out / "layer_0.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {"W_enc", "W_dec", "b_enc", "b_dec"}
        assert f.get_tensor("W_enc").shape == (tiny[0].cfg.d_sae, m.cfg.d_model)
        assert f.metadata()["activation"] == "topk" and int(f.metadata()["k"]) == tiny[0].cfg.k
    yaml = (out / "config.yaml").read_text()
    for line in ("model_kind: transcoder_set", "scan: course-transcoders", "feature_input_hook: mlp.hook_in",
                 "feature_output_hook: hook_mlp_out", f"k: {tiny[0].cfg.k}", "  - layer_3.safetensors"):
        assert line in yaml
    assert load_circuit_tracer_transcoder(out / "layer_0.safetensors").cfg.k == tiny[0].cfg.k


def test_saved_graph_is_listed_for_circuit_tracers_server(m, graph, tmp_path):
    from course.attribution import save_graph_json

    for slug in ("a", "b", "a"):
        save_graph_json(prune(graph), tmp_path / f"{slug}.json", slug, m.to_string)
    listed = json.loads((tmp_path / "graph-metadata.json").read_text())["graphs"]
    assert sorted(g["slug"] for g in listed) == ["a", "b"]
    nodes = json.loads((tmp_path / "a.json").read_text())["nodes"]
    shares = [n["influence"] for n in nodes if n["feature_type"] != "logit"]
    assert all(0 < x <= 1 + 1e-6 for x in shares)      # circuit-tracer's cumulative share, what its slider reads


# -- chapter 7's findings on the shipped transcoders ----------------------------------------------

@pytest.fixture(scope="module")
def addition(m):
    from course.chapters.ch7_attribution_graphs.findings import addition_graph

    return addition_graph(m, load_shipped_transcoders(m))


def test_addition_graph_is_exact_small_after_pruning_and_mostly_explained(m, addition):
    assert addition["prompt"] == "calc: 36 + 59 = 9" and addition["answer"] == "5"
    assert addition["max_logit_error"] < 1e-4
    st = addition["stats"]
    assert st["feature_fraction_kept"] < 0.25 and st["feature_influence_kept"] >= 0.8
    assert addition["error_share"] < 0.5   # "mostly": features and embeddings carry more than the error nodes


def test_position_roles_name_the_operand_digits(m):
    from course.chapters.ch7_attribution_graphs.findings import position_roles

    roles = position_roles(m, "calc: 36 + 59 = 9")
    toks = m.to_str_tokens("calc: 36 + 59 = 9")
    assert [toks[roles.index(r)] for r in ("a tens", "a ones", "b tens", "b ones", "sum tens")] == ["3", "6", "5", "9", "9"]


def test_pathways_run_through_the_ones_digits(m, addition):
    from course.chapters.ch7_attribution_graphs.findings import pathways

    rows = pathways(m, addition)
    p, f = addition["pruned"], addition["graph"].slices()["feature"]
    assert sum(r["influence"] for r in rows) == pytest.approx(float(p.influence[f][p.node_mask[f]].sum()), rel=1e-4)
    assert sum(len(r["features"]) for r in rows) == p.features_kept
    ones = {r["role"] for r in rows[:4]}
    assert {"a ones", "b ones"} <= ones          # the answer's ones digit is read from both ones digits


def test_digit_profile_matches_a_direct_read(m):
    from course.chapters.ch7_attribution_graphs.findings import addition_prompt, digit_profile, position_roles

    tcs = load_shipped_transcoders(m)
    feature = int(addition_free_feature(m, tcs))
    prof = digit_profile(m, tcs, 0, feature, "b ones")
    # independent: every sum with b's ones digit 7, through run_with_cache, averaged by hand
    texts = [addition_prompt(a, b) for a in range(10, 100) for b in range(17, 100, 10) if a + b < 100]
    pos = position_roles(m, texts[0]).index("b ones")
    _, cache = m.run_with_cache(m.to_tokens(texts), names_filter=[input_site(0)])
    expected = tcs[0].encode(cache[input_site(0)][:, pos])[:, feature].mean()
    assert float(prof[7]) == pytest.approx(float(expected.detach()), abs=1e-4)


def addition_free_feature(m, tcs):
    """A layer-0 feature active on "calc: 10 + 17 = 2" at b's ones digit (so the profile is not all zeros)."""
    from course.chapters.ch7_attribution_graphs.findings import position_roles

    p = "calc: 10 + 17 = 2"
    _, cache = m.run_with_cache(p, names_filter=[input_site(0)])
    return tcs[0].encode(cache[input_site(0)][0, position_roles(m, p).index("b ones")]).argmax()


def test_suppressing_a_ones_digit_feature_changes_the_answer_as_the_graph_predicts(m, addition):
    from course.chapters.ch7_attribution_graphs.findings import suppress_feature

    g, p = addition["graph"], addition["pruned"]
    f = g.slices()["feature"]
    logit = g.slices()["logit"].start
    # the most influential layer-0 features with a positive direct effect on the answer
    ranked = [n for n in p.influence[f].argsort(descending=True).tolist() if g.describe(n)["layer"] == 0
              and g.adjacency[logit, n] > 0][:3]
    results = [suppress_feature(m, addition, n) for n in ranked]
    assert all(r["predicted_direct"] < 0 and r["actual"] < 0 for r in results)      # the sign the graph predicts
    assert all(r["p_after"] < r["p_before"] for r in results)                       # the answer gets less likely


def test_a_jumprelu_set_exports_its_thresholds_and_loads_back_as_jumprelu(m, tmp_path):
    """circuit-tracer 0.5's loader makes a JumpReLU of ``activation_function.threshold`` (its
    ``load_relu_transcoder``); our reader does the same, and the exported layer reads the MLP's input."""
    from safetensors import safe_open

    torch.manual_seed(0)
    jr, _ = train_transcoders(m, tokens=8192, d_sae=128, k=8, batch_size=1024, activation="jumprelu", progress=False)
    out = save_circuit_tracer_transcoders(jr, m, tmp_path / "ct")
    with safe_open(str(out / "layer_1.safetensors"), framework="pt") as f:
        assert set(f.keys()) == {"W_enc", "W_dec", "b_enc", "b_dec", "activation_function.threshold"}
        assert f.metadata()["activation"] == "jumprelu"
    ct = load_circuit_tracer_transcoder(out / "layer_1.safetensors")
    assert ct.cfg.activation == "jumprelu"
    tokens = m.to_tokens(PROMPT)
    _, cache = m.run_with_cache(tokens, names_filter=[input_site(1)])
    n = cache[input_site(1)][0]
    with torch.no_grad():
        torch.testing.assert_close(ct.encode(n * m.ln2_w[1] + m.ln2_b[1]), jr[1].encode(n), atol=1e-4, rtol=1e-4)
    back = TranscoderSet.load(jr.save(tmp_path / "ours"))
    torch.testing.assert_close(back[1].threshold, jr[1].threshold)
