"""Chapter 3: references against independent computations, checks on right and wrong answers,
the patching toolkit, the widgets' pure functions, and the chapter's findings."""

from __future__ import annotations

import pytest
import torch

from course.chapters.ch3_induction_ioi import checks as check
from course.data.ioi_dataset import ioi_dataset
from course.data.repeats import repeated_batch
from course.circuits import composition_scores
from course.chapters.ch3_induction_ioi.findings import (ablation_summary, attribution_agreement, circuit_comparison, composition_summary,
                                 draw_circuit, induction_formation, induction_summary, path_patching_sweep,
                                 patching_speedup, patching_summary, repeat_losses, subset)
from course.circuits.ioi import ioi_circuit
from course.patching import attribution_sweep, logit_diff, normalized, patch_heads, patch_sweep, path_patch
from course.widgets import IOIExplorer, PatchingExplorer, head_attention, ioi_breakdown, patching_map
from solutions import ch3_induction_ioi as ref
from tests.check_contract import contract_tests, shipped_values_test

SEQ_LEN = 30


@pytest.fixture(scope="module")
def rep(m):
    return repeated_batch(16, SEQ_LEN, range(1, m.cfg.d_vocab), m.tokenizer.bos_token_id, seed=0, device=m.device)   # the chapter's


@pytest.fixture(scope="module")
def data(m):
    return ioi_dataset(m, "test", n_groups=8, per_group=8, seed=0)                                  # the chapter's


@pytest.fixture(scope="module")
def group(m, data):
    """The chapter's sweep set-up: one sentence shape's prompts, the clean cache and the metric."""
    rows = data.group == 0
    n_pos = int(data.end_pos[rows].max()) + 1
    clean, abc = data.clean[rows, :n_pos], data.abc[rows, :n_pos]
    end, io, s = data.end_pos[rows], data.io_tok[rows], data.s_tok[rows]
    with torch.no_grad():
        ld_clean = float(logit_diff(m(clean), end, io, s).mean())
        ld_abc = float(logit_diff(m(abc), end, io, s).mean())
        _, cache = m.run_with_cache(clean)

    def metric(logits):
        return normalized(logit_diff(logits, end, io, s).mean(), ld_clean, ld_abc)

    return {"rows": rows, "clean": clean, "abc": abc, "cache": cache, "metric": metric, "end": end}


@pytest.fixture(scope="module")
def report(m):
    with torch.no_grad():
        return ioi_circuit(m, n_groups=8, per_group=8)                                              # the chapter's


@pytest.fixture
def grad_off():
    with torch.no_grad():
        yield


# -- references against independent computations --------------------------------------------

@pytest.mark.usefixtures("grad_off")
def test_per_token_loss_averages_to_the_models_loss(m, rep):
    got = ref.per_token_loss(m, rep[:4])
    want = torch.nn.functional.cross_entropy(m(rep[:4])[:, :-1].flatten(0, 1), rep[:4, 1:].flatten())
    torch.testing.assert_close(got.mean(), want, atol=1e-5, rtol=1e-5)
    assert float(m(rep[:4], return_type="loss")) == pytest.approx(float(got.mean()), rel=1e-5)


@pytest.mark.usefixtures("grad_off")
def test_induction_scores_match_a_loop_and_the_evaluation(m, rep):
    _, cache = m.run_with_cache(rep[:3])
    got = ref.induction_scores(cache, m.cfg.n_layers, SEQ_LEN)
    for layer, head in [(0, 0), (2, 3), (m.cfg.n_layers - 1, m.cfg.n_heads - 1)]:
        p = cache["pattern", layer][:, head]
        want = sum(float(p[b, q, q - SEQ_LEN + 1]) for b in range(3) for q in range(SEQ_LEN + 1, 2 * SEQ_LEN + 1))
        assert float(got[layer, head]) == pytest.approx(want / (3 * SEQ_LEN), abs=1e-5)


def test_composition_scores_match_single_pairs():
    g = torch.Generator().manual_seed(0)
    A, B = torch.randn(3, 5, 5, generator=g), torch.randn(2, 5, 5, generator=g)
    got = ref.composition_scores(A, B)
    for i in range(3):
        for j in range(2):
            want = torch.linalg.norm(A[i] @ B[j]) / (torch.linalg.norm(A[i]) * torch.linalg.norm(B[j]))
            assert float(got[i, j]) == pytest.approx(float(want), rel=1e-5)
    torch.testing.assert_close(composition_scores(A, B), got, atol=1e-5, rtol=1e-4)     # the toolkit's formula
    # an orthogonal W_B keeps the norm: the score is 1 / ||W_B|| = 1 / sqrt(d)
    q, _ = torch.linalg.qr(torch.randn(5, 5, generator=g))
    assert float(ref.composition_scores(A[:1], q[None])) == pytest.approx(5 ** -0.5, rel=1e-5)


@pytest.mark.usefixtures("grad_off")
def test_ablation_losses_match_the_toolkit_patch_of_zeros_and_means(m, rep):
    tokens = rep[:2, :1 + 2 * 8].clone()
    tokens[:, 9:] = tokens[:, 1:9]                        # sequences of 8, repeated
    zeros = {l: torch.zeros(2, tokens.shape[1], m.cfg.n_heads, m.cfg.d_head) for l in range(m.cfg.n_layers)}
    _, cache = m.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_z"))
    means = [cache["z", l].mean(0) for l in range(m.cfg.n_layers)]
    got_zero, got_mean = ref.ablation_losses(m, tokens, 8), ref.ablation_losses(m, tokens, 8, means)
    for layer, head in [(0, 1), (m.cfg.n_layers - 1, 3)]:
        mean_source = {l: means[l][None].expand(2, -1, -1, -1) for l in range(m.cfg.n_layers)}
        for got, source in ((got_zero, zeros), (got_mean, mean_source)):
            logits = patch_heads(m, tokens, [(layer, head)], source)
            nll = torch.nn.functional.cross_entropy(logits[:, 9:-1].flatten(0, 1), tokens[:, 10:].flatten())
            assert float(got[layer, head]) == pytest.approx(float(nll), rel=1e-4)


def test_logit_diff_matches_the_toolkit_and_a_loop():
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(4, 6, 9, generator=g)
    end, io, s = torch.tensor([1, 5, 3, 0]), torch.tensor([2, 8, 0, 4]), torch.tensor([7, 1, 0, 3])
    got = ref.logit_diff(logits, end, io, s)
    torch.testing.assert_close(got, logit_diff(logits, end, io, s))
    assert got.tolist() == pytest.approx([float(logits[b, end[b], io[b]] - logits[b, end[b], s[b]]) for b in range(4)])


@pytest.mark.usefixtures("grad_off")
def test_patch_resid_matches_the_batched_sweep_and_the_edges(m, group):
    got = ref.patch_resid(m, group["abc"], group["cache"], group["metric"])
    torch.testing.assert_close(got, patch_sweep(m, group["abc"], group["cache"], group["metric"], "resid_pre"),
                               atol=1e-4, rtol=1e-3)
    # Patching every position of layer 0's input is running the clean prompts: 1 wherever the prompts differ.
    s2 = int((group["clean"][0] != group["abc"][0]).nonzero()[0])
    assert float(got[0, s2]) == pytest.approx(1.0, abs=1e-4)
    same = [p for p in range(group["abc"].shape[1]) if torch.equal(group["clean"][:, p], group["abc"][:, p])]
    assert got[0, same].abs().max() < 1e-4                     # nothing to restore where the prompts agree


@pytest.mark.usefixtures("grad_off")
def test_patch_every_head_matches_a_loop_of_single_head_patches(m, group):
    got = ref.patch_every_head(m, group["abc"], group["cache"], group["metric"])
    z = {l: group["cache"]["z", l] for l in range(m.cfg.n_layers)}
    for layer in range(m.cfg.n_layers):
        for head in range(m.cfg.n_heads):
            want = group["metric"](patch_heads(m, group["abc"], [(layer, head)], z))
            assert float(got[layer, head]) == pytest.approx(float(want), abs=1e-4)
    torch.testing.assert_close(got, patch_sweep(m, group["abc"], group["cache"], group["metric"]), atol=1e-4, rtol=1e-3)
    # The toolkit's sweep, told where the metric reads (the chapter's call), equals the same loop.
    loop = torch.tensor([[float(group["metric"](patch_heads(m, group["abc"], [(l, h)], z)))
                          for h in range(m.cfg.n_heads)] for l in range(m.cfg.n_layers)])
    torch.testing.assert_close(patch_sweep(m, group["abc"], group["cache"], group["metric"], positions=group["end"]),
                               loop, atol=1e-5, rtol=1e-4)


def test_attribution_patching_is_the_derivative_along_the_patch(m, group):
    got = ref.attribution_patch_heads(m, group["abc"], group["cache"], group["metric"])
    torch.testing.assert_close(got, attribution_sweep(m, group["abc"], group["cache"], group["metric"]),
                               atol=1e-5, rtol=1e-4)
    # Independently: a finite difference of the metric along (clean - corrupt) z of one head.
    layer, head = divmod(int(got.abs().argmax()), m.cfg.n_heads)
    with torch.no_grad():
        _, corrupt = m.run_with_cache(group["abc"], names_filter=lambda n: n.endswith("hook_z"))
        eps = 1e-3

        def at(t):
            z = corrupt["z", layer].clone()
            z[:, :, head] += t * (group["cache"]["z", layer][:, :, head] - z[:, :, head])
            return float(group["metric"](patch_heads(m, group["abc"], [(layer, head)], {layer: z})))
        slope = (at(eps) - at(-eps)) / (2 * eps)
    assert float(got[layer, head]) == pytest.approx(slope, rel=2e-2, abs=1e-3)


def test_attribution_matches_autograd_on_the_plain_hf_model(m, group):
    """The lens's cached gradient at a head's z equals autograd through the HF model's own modules."""
    layer = m.cfg.n_layers - 1
    _, cache = m.run_with_cache(group["abc"], names_filter=f"blocks.{layer}.attn.hook_z", incl_bwd=True,
                                metric=group["metric"])
    attn = m.hf.transformer.h[layer].attn
    saved = {}

    def grab(module, args):                               # c_proj's input is z, heads side by side
        x = args[0]
        x.retain_grad()
        saved["z"] = x
    handle = attn.c_proj.register_forward_pre_hook(grab)
    try:
        with torch.enable_grad():
            logits = m.hf(group["abc"]).logits
            group["metric"](logits).backward()
    finally:
        handle.remove()
        m.hf.zero_grad(set_to_none=True)
    got = cache[f"blocks.{layer}.attn.hook_z_grad"].flatten(-2)
    torch.testing.assert_close(got, saved["z"].grad, atol=1e-6, rtol=1e-4)


# -- checks ---------------------------------------------------------------------------------------

test_reference_passes_stub_does_not, test_a_wrong_answer_fails, test_known_mistakes_are_diagnosed = \
    contract_tests(check, ref)

test_checks_fall_back_to_the_shipped_values = shipped_values_test(check, ref)


# -- the toolkit ----------------------------------------------------------------------------------

@pytest.mark.usefixtures("grad_off")
def test_patch_sweep_positions_match_a_loop(m, group):
    for what, point in (("attn_out", "hook_attn_out"), ("mlp_out", "hook_mlp_out")):
        got = patch_sweep(m, group["abc"], group["cache"], group["metric"], what)
        for layer, pos in [(0, 3), (m.cfg.n_layers - 1, group["abc"].shape[1] - 1)]:
            name = f"blocks.{layer}.{point}"

            def restore(x, hook, pos=pos):
                x = x.clone()
                x[:, pos] = group["cache"][name][:, pos]
                return x
            want = group["metric"](m.run_with_hooks(group["abc"], fwd_hooks=[(name, restore)]))
            assert float(got[layer, pos]) == pytest.approx(float(want), abs=1e-4)
    with pytest.raises(ValueError, match="what must be"):
        patch_sweep(m, group["abc"], group["cache"], group["metric"], "neurons")


# -- widgets ----------------------------------------------------------------------------------------

@pytest.mark.usefixtures("grad_off")
def test_patching_map_and_head_attention(m, data, group):
    pm = patching_map(m, data, 0, what="heads")
    torch.testing.assert_close(torch.tensor(pm.values), patch_sweep(m, group["abc"], group["cache"], group["metric"]),
                               atol=1e-4, rtol=1e-3)
    assert pm.clean == pytest.approx(1.0) and pm.corrupt == pytest.approx(0.0, abs=1e-6)
    raw = patching_map(m, data, 0, metric="logit difference", what="resid_pre", method="attribution patching")
    assert len(raw.values) == m.cfg.n_layers and len(raw.values[0]) == group["abc"].shape[1] == len(raw.col_labels)
    p = head_attention(m, group["clean"][0], 1, 2)
    _, cache = m.run_with_cache(group["clean"][:1])
    torch.testing.assert_close(p, cache["pattern", 1][0, 2])
    with pytest.raises(ValueError, match="no sentence shape"):
        patching_map(m, data, 99)
    with pytest.raises(ValueError, match="no head"):
        head_attention(m, group["clean"][0], 9, 0)


@pytest.mark.usefixtures("grad_off")
def test_patching_explorer(m, data):
    w = PatchingExplorer(m, data)
    assert w.map is not None and "Click" in w.status.value
    w.select(0, 0)
    assert len(w.detail.children) == 1
    w.what.value = "residual stream (layer × position)"
    assert w.map.what == "resid_pre"
    w.select(1, 2)
    assert "position 2" in w.detail.children[0].value


@pytest.mark.usefixtures("grad_off")
def test_ioi_breakdown_sums_to_the_logit_difference(m, report):
    b = ioi_breakdown(m, "When {IO} and {S} went to the store, {S} gave a drink to", "Mary", "John", report)
    assert sum(b.parts.values()) == pytest.approx(b.logit_diff, abs=1e-3)
    logits = m(b.text)[0, -1]
    assert b.logit_diff == pytest.approx(float(logits[m.to_single_token(" Mary")] - logits[m.to_single_token(" John")]),
                                         abs=1e-4)
    with pytest.raises(ValueError, match="needs"):
        ioi_breakdown(m, "no names here", "Mary", "John", report)


@pytest.mark.usefixtures("grad_off")
def test_ioi_explorer_shows_errors_in_words(m, report):
    w = IOIExplorer(m, report)
    assert w.breakdown is not None and "logit(" in w.status.value
    w.io.value = "Maryanneliese"                               # several tokens: a message, not a traceback
    assert "not one" in w.status.value


# -- the chapter's findings -----------------------------------------------------------------------

@pytest.mark.usefixtures("grad_off")
def test_finding_the_loss_drops_on_the_repeat_and_induction_heads_compose_with_previous_token_heads(m, rep):
    losses = repeat_losses(m, rep, SEQ_LEN)
    assert losses["second"] < 0.5 * losses["first"]
    _, cache = m.run_with_cache(rep, names_filter=lambda n: n.endswith("hook_pattern"))
    ind = induction_summary(m, cache, SEQ_LEN)
    torch.testing.assert_close(ind["induction"], ref.induction_scores(cache, m.cfg.n_layers, SEQ_LEN))
    assert ind["induction_heads"] and ind["previous_heads"]
    comp = composition_summary(m, ind)
    assert comp["k_stands_out"] == (comp["top_induction_head"] in comp["k_composing"])
    assert 0 < comp["baseline"] < 0.5
    # per pair: the rank among the earlier heads and the random null are the chapter's verdict
    from course.chapters.ch3_induction_ioi.findings import composition_report
    text = "\n".join(composition_report(comp))
    for r in comp["best_pairs"]:
        column = comp["scores"]["K"][:, comp["labels"].index(r["induction"])]
        assert r["K_rank_among_earlier"] == int((column > r["K"]).sum()) + 1
        assert r["K_random_mean"] <= r["K_random_high"]
    top = comp["top_induction_head"]
    assert ("singles out the previous-token head" in text) == (top in comp["singled_out"])
    assert comp["singled_out"] == [r["induction"] for r in comp["best_pairs"]
                                   if r["K_rank_among_earlier"] == 1 and r["K"] > r["K_random_high"]]


@pytest.mark.usefixtures("grad_off")
def test_finding_ablating_the_induction_circuit_hurts_the_repeat(m, rep):
    _, cache = m.run_with_cache(rep, names_filter=lambda n: n.endswith(("hook_pattern", "hook_z")))
    ind = induction_summary(m, cache, SEQ_LEN)
    few = rep[:8]
    means = [cache["z", l].mean(0) for l in range(m.cfg.n_layers)]
    abl = ablation_summary(m, few, SEQ_LEN, ind, means)
    torch.testing.assert_close(abl["zero"], ref.ablation_losses(m, few, SEQ_LEN), atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(abl["mean"], ref.ablation_losses(m, few, SEQ_LEN, means), atol=1e-4, rtol=1e-4)
    assert abl["circuit_matters"]
    from course.chapters.ch3_induction_ioi.findings import ablation_report
    assert abl["induction_sum_of_singles"] == pytest.approx(sum(abl["induction_singles"].values()))
    text = "\n".join(ablation_report(abl))
    together, total = abl["induction_together"], abl["induction_sum_of_singles"]
    assert ("back each other up" in text) == (together > 1.5 * total + 0.05)
    for h, d in abl["induction_singles"].items():
        assert (f"{h} (+{d:.2f})" in text.splitlines()[0]) == (d > 0.05)
    assert all(d > 0 for _, d in abl["zero_top"])


def test_finding_induction_formed_during_training():
    f = induction_formation()
    assert f["step_before"] < f["formed_at"] and f["score_before"] < f["threshold"]
    assert f["ratio_after"] < f["ratio_before"]            # the printed "falls"
    # one series, the shipped weights': every number printed comes from it, none from the other
    from course.chapters.ch3_induction_ioi.findings import shipped_weights, training_log
    assert f["weights"] == shipped_weights()
    mine = [r for r in training_log() if "tokens_seen" in r and r.get("weights", "raw") == f["weights"]]
    assert f["eval_steps"] == [r["step"] for r in mine] and len(set(f["eval_steps"])) == len(f["eval_steps"])
    by_step = {r["step"]: r for r in mine}
    assert by_step[f["formed_at"]]["induction_head_score"] >= f["threshold"]
    assert by_step[f["step_before"]]["induction_loss_ratio"] == f["ratio_before"]
    assert f["weights"] not in f["other"]
    with pytest.raises(ValueError, match="never reaches"):
        induction_formation([{"step": 0, "tokens_seen": 1, "induction_head_score": 0.0, "induction_loss_ratio": 1.0}])


@pytest.mark.usefixtures("grad_off")
def test_finding_attribution_patching_agrees_on_heads_and_fails_most_on_the_stream(m, group):
    exact = {"heads": patch_sweep(m, group["abc"], group["cache"], group["metric"])}
    approx = {"heads": attribution_sweep(m, group["abc"], group["cache"], group["metric"])}
    for what in ("resid_pre", "attn_out", "mlp_out"):
        exact[what] = patch_sweep(m, group["abc"], group["cache"], group["metric"], what)
        approx[what] = attribution_sweep(m, group["abc"], group["cache"], group["metric"], what)
    agree = attribution_agreement(exact, approx, float(group["metric"](m(group["abc"]))))
    assert agree["by_kind"]["heads"]["corr"] > 0.9
    # The chapter's sentence names the early residual stream only when that is where it fails.
    labels = [repr(t) for t in m.to_str_tokens(group["clean"][0])]
    summary = patching_summary(exact, labels)
    assert summary["top_heads"][0][1] == pytest.approx(float(exact["heads"].max()))


@pytest.mark.usefixtures("grad_off")
def test_finding_path_patching_sweep_matches_single_path_patches(m, data, group):
    from course.chapters.ch3_induction_ioi.findings import NULL_PATH, path_patching_report

    sub = subset(data, group["rows"])
    assert len(sub) == int(group["rows"].sum()) and torch.equal(sub.clean, data.clean[group["rows"]])
    paths = path_patching_sweep(m, data, ["L3H4", "L2H0"], rows=group["rows"])
    best = max(v for t in paths["totals"].values() for v in t.values())
    assert paths["totals"][paths["receiver"]][paths["input"]] == best          # the receiver with most to show
    layer, head = int(paths["receiver"][1]), int(paths["receiver"][3])
    assert paths["senders"][0] == "embed" and f"mlp{layer - 1}" in paths["senders"]
    assert not any(s.startswith((f"L{layer}", f"mlp{layer}")) for s in paths["senders"])   # only from below
    from course.circuits.ioi import runs
    r = runs(m, sub)
    for i, sender in [(0, "embed"), (paths["senders"].index("mlp0"), "mlp0")]:
        want = r.removed(path_patch(m, sub.clean, r.clean_cache, r.abc_cache, [sender], [(layer, head)], "v"))
        assert float(paths["removed"]["v"][i]) == pytest.approx(want, abs=1e-5)
    lines = path_patching_report(paths)
    assert paths["receiver"] in lines[1]
    for x, line in zip("qkv", lines[2:]):
        together = paths["totals"][paths["receiver"]][x]
        assert ("does not reach" in line) == (together < NULL_PATH), line
        assert f"{together:.2f}" in line
        if together >= NULL_PATH:
            assert paths["top"][x][0] in line
    t = paths["totals"][paths["receiver"]]
    assert any("attends where it did" in line for line in lines) == (
        t["q"] < NULL_PATH and t["k"] < NULL_PATH and t["v"] >= NULL_PATH)


def test_finding_circuit_classes_and_comparison_read_the_report(m, report):
    import matplotlib.pyplot as plt

    lines = circuit_comparison(report)
    assert len(lines) == 6 and lines[-1].startswith("Faithfulness")
    for cls, line in zip(("name_movers", "s_inhibition", "subject_suppression", "duplicate_token", "induction"), lines):
        heads = getattr(report, cls)
        assert ("none was found" in line) == (not heads)
        assert all(f"L{l}H{h}" in line for l, h in heads)
        # heads named on validation that fail their class's test are candidates, never the class
        assert ("none pass; candidates" in line) == (bool(heads) and not report.passes(cls))
        assert (f"candidates {', '.join(f'L{l}H{h}' for l, h in heads)} fail" in report.table()) == \
            (bool(heads) and not report.passes(cls))
    if report.name_movers:
        assert ("so they are not name movers" in lines[0]) == (not report.meets("name_mover_share"))
    assert report.figures["outside_ablated_kept"] >= 0.8           # the circuit is faithful
    # the diagram draws a head only for a class that passes its test
    fig = draw_circuit(report, m.cfg.n_layers)
    drawn = {t.get_text() for t in fig.axes[0].texts} - {"logits", ""}      # arrows are empty annotations
    passing = {f"L{l}H{h}" for cls in ("name_movers", "s_inhibition", "subject_suppression", "duplicate_token",
                                        "induction") if report.passes(cls) for l, h in getattr(report, cls)}
    assert drawn == passing
    plt.close(fig)


@pytest.mark.usefixtures("grad_off")
def test_patching_speedup_measures_the_same_map(m, group):
    b = patching_speedup(m, group["abc"], group["cache"], group["metric"], repeats=1, positions=group["end"])
    assert b["max_difference"] < 1e-4 and b["batched"] > 0 and b["loop"] > 0
    assert b["speedup"] == pytest.approx(b["loop"] / b["batched"])


@pytest.mark.usefixtures("grad_off")
def test_finding_s2_mechanism_verdicts_follow_the_clean_and_abc_attention(m):
    from course.chapters.ch3_induction_ioi.findings import (POSITION_RATIO, REPETITION_RATIO, s2_mechanism,
                                                            s2_mechanism_report)
    from course.data.ioi_dataset import ioi_dataset

    data = ioi_dataset(m, "test", n_groups=8, per_group=8, seed=0)          # the chapter's prompts
    mech = s2_mechanism(m, data)
    # the heads are the top of the clean attention, and each number is the reference measure's
    top = mech["clean"].flatten().topk(len(mech["heads"])).values.tolist()
    assert [h["clean"] for h in mech["heads"]] == pytest.approx(top)
    for h in mech["heads"]:
        layer, head = int(h["head"][1]), int(h["head"][3:])
        assert h["abc"] == pytest.approx(float(mech["abc"][layer, head]))
        assert h["verdict"] == ("repetition" if h["ratio"] <= REPETITION_RATIO else
                                "position" if h["ratio"] >= POSITION_RATIO else "both")
    text = "\n".join(s2_mechanism_report(mech))
    verdicts = {h["verdict"] for h in mech["heads"]}
    assert ("finds S2 by position:" in text) == (verdicts == {"position"})
    assert ("finds S2 by repetition" in text) == (verdicts == {"repetition"})


def test_the_s2_report_says_repetition_for_a_head_that_loses_its_attention():
    from course.chapters.ch3_induction_ioi.findings import s2_mechanism_report

    mech = {"n_prompts": 8, "heads": [{"head": "L2H1", "clean": 0.8, "abc": 0.1, "ratio": 0.125,
                                       "verdict": "repetition"}]}
    text = "\n".join(s2_mechanism_report(mech))
    assert "because the name is repeated" in text and "by repetition, as GPT-2 small" in text


def test_the_patching_explorer_colours_like_the_static_maps():
    from course.widgets.patching import _colour

    # matplotlib's RdBu, which the chapter's static maps use: positive blue, negative red
    assert _colour(1.0, 1.0) == "rgb(55,55,255)" and _colour(-1.0, 1.0) == "rgb(255,55,55)"



@pytest.mark.usefixtures("grad_off")
def test_the_attribution_verdict_reads_the_pattern_change(m, group):
    from course.chapters.ch3_induction_ioi.findings import attribution_report, pattern_change

    moved = pattern_change(m, group["clean"], group["abc"])
    assert 0 <= moved["mean"] <= moved["max"] <= 1
    same = pattern_change(m, group["abc"], group["abc"])
    assert same["max"] == pytest.approx(0.0, abs=1e-6)                   # the control: no change, no movement
    agree = {"by_kind": {"heads": {"corr": 0.999}}, "worst_kind": "attn_out", "worst_error": 0.1}
    assert "close to linear" in "\n".join(attribution_report(agree, {**moved, "mean": 0.01}))
    assert "only a first guess" in "\n".join(attribution_report({**agree, "by_kind": {"heads": {"corr": 0.8}}}, moved))
