"""Chapter 6: references against independent computations, checks on right and wrong answers,
the toolkit (arithmetic, fourier), the widgets' pure functions, the shipped grokking
checkpoints and the chapter's findings."""

from __future__ import annotations

import math

import pytest
import torch

from course.arithmetic import (accuracy_by_case, addition_batch, answer_correct, classify_neurons, digit_patching,
                               explained_variance, fit_probe, operand_attention, probe_accuracy, residuals)
from course.chapters.ch6_addition import checks as check
from course.data.addition import AdditionPrompt, addition_split, held_out_addition_prompts
from course.chapters.ch6_addition.findings import best_probe, grokking_phases, grokking_report
from course.fourier import (all_logits, excluded_logits, fourier_basis, frequency_norms, key_frequencies, loss_on,
                            progress_measures, restricted_logits, sum_wave_share)
from course.models.modular import P, load_checkpoints, loss_curve, model_at, split
from course.widgets import (AdditionExplorer, FourierViewer, GrokkingTimeline, addition_view, fourier_view,
                            grokking_view)
from solutions import ch6_addition as ref
from tests.check_contract import contract_tests

test_reference_passes_stub_does_not, test_a_wrong_answer_fails, test_known_mistakes_are_diagnosed = \
    contract_tests(check, ref)


@pytest.fixture(autouse=True)
def grad_off():
    with torch.no_grad():
        yield


@pytest.fixture(scope="module")
def lines(m):
    return addition_batch(m, held_out_addition_prompts("test")[:60])


@pytest.fixture(scope="module")
def modular():
    import course

    return course.load_model("modular-addition", device="cpu")


@pytest.fixture(scope="module")
def mod_logits(modular):
    return all_logits(modular)


# -- references against independent computations --------------------------------------------

def test_answer_right_matches_greedy_generation(m, lines):
    got = ref.answer_right(m(lines.tokens).cpu(), lines.tokens, lines.answer_mask)
    for p, ok in zip(lines.prompts[:25], got.tolist()):
        said = m.generate(p.text, max_new_tokens=len(m.to_tokens(p.answer, prepend_bos=False)[0]))[len(p.text):]
        # greedy decoding of a right sum writes exactly it; teacher forcing and greedy agree when right
        if ok:
            assert said.startswith(p.answer)
        else:
            assert not said.startswith(p.answer)


def test_attention_to_matches_a_loop(m, lines):
    _, cache = m.run_with_cache(lines.tokens)
    pattern = cache["pattern", 0]
    got = ref.attention_to(pattern, lines.ones_pos - 1, lines.operand_pos)
    for h in range(m.cfg.n_heads):
        for j, k in enumerate(lines.operand_pos):
            want = sum(float(pattern[i, h, int(lines.ones_pos[i]) - 1, k]) for i in range(len(lines.prompts)))
            assert float(got[h, j]) == pytest.approx(want / len(lines.prompts), abs=1e-5)
    torch.testing.assert_close(operand_attention(m, lines)[0, :, 0], got)     # the toolkit agrees


def test_set_component_sets_the_projection_and_keeps_the_rest():
    g = torch.Generator().manual_seed(0)
    x, d = torch.randn(5, 7, generator=g), torch.randn(7, generator=g)
    y = ref.set_component(x, d, 2.5)
    u = d / d.norm()
    torch.testing.assert_close(y @ u, torch.full((5,), 2.5))
    q, _ = torch.linalg.qr(torch.cat([u[:, None], torch.randn(7, 6, generator=g)], 1))
    torch.testing.assert_close((y - x) @ q[:, 1:], torch.zeros(5, 6), atol=1e-5, rtol=0)   # orthogonal part unchanged


def test_explained_variance_matches_a_one_way_anova_loop():
    g = torch.Generator().manual_seed(1)
    acts, groups = torch.randn(40, 3, generator=g), torch.randint(0, 4, (40,), generator=g)
    got = ref.explained_variance(acts, groups)
    for n in range(3):
        x = acts[:, n].double()
        between = sum(int((groups == k).sum()) * (float(x[groups == k].mean()) - float(x.mean())) ** 2
                      for k in groups.unique())
        assert float(got[n]) == pytest.approx(between / float(((x - x.mean()) ** 2).sum()), abs=1e-5)
    torch.testing.assert_close(explained_variance(acts, groups), got)         # the toolkit agrees


def test_fourier_basis_is_orthonormal_and_matches_numpy_fft():
    import numpy as np

    b = ref.fourier_basis(13)
    torch.testing.assert_close(b @ b.T, torch.eye(13), atol=1e-5, rtol=0)
    f = np.fft.rfft(np.eye(13), axis=1)                    # row x -> its DFT: cos and -sin parts
    torch.testing.assert_close(b[3] / b[3].norm(), torch.tensor(f[:, 2].real / np.linalg.norm(f[:, 2].real)).float())
    torch.testing.assert_close(ref.fourier_basis(P), fourier_basis(P)[0])


def test_project_sum_waves_recovers_a_planted_wave_and_is_a_projection():
    p = 11
    a = torch.arange(p).float()
    s = a[:, None] + a[None, :]
    c = torch.arange(p).float()
    wave = torch.cos(2 * math.pi * 2 * (s[:, :, None] - c) / p)          # cos(w(a + b - c))
    torch.testing.assert_close(ref.project_sum_waves(wave, [2]), wave, atol=1e-4, rtol=0)
    assert float(ref.project_sum_waves(wave, [3]).abs().max()) < 1e-4
    noise = torch.randn(p, p, 3, generator=torch.Generator().manual_seed(2))
    once = ref.project_sum_waves(noise, [1, 4])
    torch.testing.assert_close(ref.project_sum_waves(once, [1, 4]), once, atol=1e-4, rtol=0)


# -- the toolkit -------------------------------------------------------------------------------

def test_addition_batch_places_the_digits(m):
    b = addition_batch(m, [AdditionPrompt(36, 59), AdditionPrompt(75, 48)])
    for i, p in enumerate(b.prompts):
        toks = m.to_str_tokens(b.tokens[i])
        assert [toks[k].strip() for k in b.operand_pos] == list(f"{p.a}{p.b}")
        assert toks[int(b.ones_pos[i])] == str(p.a + p.b)[-1] and toks[int(b.tens_pos[i])] == str(p.a + p.b)[-2]
        assert "".join(t for t, k in zip(toks, b.answer_mask[i]) if k) == str(p.a + p.b)


def test_accuracy_table_counts_every_case(m, lines):
    rows = {r["case"]: r for r in accuracy_by_case(m, lines)}
    assert rows["carry"]["n"] + rows["no carry"]["n"] == rows["all"]["n"] == len(lines.prompts)
    whole = ref.answer_right(m(lines.tokens).cpu(), lines.tokens, lines.answer_mask)
    assert rows["all"]["accuracy"] == pytest.approx(float(whole.float().mean()))


def test_digit_patching_matches_patching_one_head_by_hand(m):
    from course.arithmetic.operands import _changed
    import random

    prompts = held_out_addition_prompts("test")[:30]
    got = digit_patching(m, prompts, 3, "ones", seed=5)
    assert got.shape == (m.cfg.n_layers, m.cfg.n_heads) and torch.isfinite(got).all()
    rng = random.Random(5)
    pairs = [(p, _changed(p, 3, rng)) for p in prompts]
    pairs = [(p, q) for p, q in pairs if len(str(p.a + p.b)) == len(str(q.a + q.b)) and (p.a + p.b) % 10 != (q.a + q.b) % 10]
    layer, head = m.cfg.n_layers - 1, int(got[-1].abs().argmax())
    base = full = moved = 0.0
    for p, q in pairs:                                  # one prompt at a time, the plain way
        clean, other = m.to_tokens(p.text + p.answer), m.to_tokens(q.text + q.answer)
        at = clean.shape[1] - 1                          # the ones digit is the last token
        good, bad = int(clean[0, at]), int(other[0, at])
        _, cache = m.run_with_cache(other, names_filter=f"blocks.{layer}.attn.hook_z")

        def patch(z, hook):
            z = z.clone()
            z[0, at - 1, head] = cache["z", layer][0, at - 1, head]
            return z
        for logits, acc in ((m(clean), "base"), (m(other), "full"),
                            (m.run_with_hooks(clean, [(f"blocks.{layer}.attn.hook_z", patch)]), "moved")):
            d = float(logits[0, at - 1, bad] - logits[0, at - 1, good])
            base, full, moved = (base + d, full, moved) if acc == "base" else \
                (base, full + d, moved) if acc == "full" else (base, full, moved + d)
    assert float(got[layer, head]) == pytest.approx((moved - base) / (full - base), abs=1e-3)
    with pytest.raises(ValueError):
        digit_patching(m, prompts, 0, "ones")          # a tens digit never changes the ones digit


def test_probe_learns_a_planted_direction():
    g = torch.Generator().manual_seed(3)
    x, d = torch.randn(400, 10, generator=g), torch.randn(10, generator=g)
    y = (x @ d > 0).float()
    w, b = fit_probe(x[:300], y[:300])
    assert probe_accuracy(x[300:], y[300:], w, b) > 0.95


def test_classify_neurons_finds_planted_patterns():
    g = torch.Generator().manual_seed(4)
    a, b = torch.randint(10, 100, (2000,), generator=g), torch.randint(10, 100, (2000,), generator=g)
    acts = torch.randn(2000, 3, generator=g) * 0.05
    acts[:, 0] += ((a + b) % 10 == 3).float()
    acts[:, 1] += (a // 10).float()
    found = classify_neurons(acts, a, b, torch.tensor([0, 1, 2]))
    assert found[0][1] == "sum mod 10 (ones of a + b)" and found[1][1] == "a range (tens of a)"
    assert found[2][1] == "unclassified"


# -- the modular model and its shipped checkpoints ---------------------------------------------

def test_modular_key_frequencies_alone_reproduce_the_loss(mod_logits, modular):
    freqs = key_frequencies(modular)
    train, test = split()
    model_loss = loss_on(mod_logits, train)
    assert loss_on(restricted_logits(mod_logits, freqs), train) < 0.2
    assert loss_on(excluded_logits(mod_logits, freqs), train) > 10 * max(model_loss, 0.05)
    share = sum_wave_share(mod_logits)
    assert float(share[[k - 1 for k in freqs]].sum()) > 0.5 and len(freqs) < 20
    # the embedding is concentrated at the same frequencies
    norms = frequency_norms(modular.W_E[:P].cpu())
    assert float(norms[[k - 1 for k in freqs]].mean()) > 2 * float(norms.median())


def test_shipped_checkpoints_are_small_and_end_at_the_shipped_model(modular):
    from course.models.loading import ASSETS

    path = ASSETS / "modular-addition" / "checkpoints.safetensors"
    assert path.stat().st_size < 5 * 2**20
    states = load_checkpoints()
    assert 6 <= len(states) <= 12 and list(states)[0] == 0
    last = model_at(list(states)[-1])
    # the last snapshot is one step before the shipped model: nearly the same logits
    assert float((all_logits(last) - all_logits(modular)).abs().max()) < 1.0


def test_grokking_phases_from_the_shipped_files(modular):
    freqs = key_frequencies(modular)
    measures = progress_measures(freqs)
    curve = loss_curve()
    phases = grokking_phases(curve, measures)
    assert phases["test_loss_when_memorized"] > 0.5 * phases["test_loss_at_start"]     # memorized, not general
    assert phases["memorized"] < phases["circuit_formed"] <= phases["grokked"] + 100    # the three phases in order
    at = {m["step"]: m for m in measures}[phases["circuit_formed"]]
    assert at["excluded_loss"] > 10 * at["train_loss"]        # from then the model needs the key frequencies
    assert measures[-1]["restricted_loss"] < 0.2 and measures[-1]["test_loss"] < 0.1
    norms = [m["weight_norm"] for m in measures if m["step"] >= phases["circuit_formed"]]
    assert phases["weight_norm_at_formation"] == norms[0] and phases["weight_norm_at_end"] == norms[-1]
    # "falls" only for a fall of at least 5% from formation to the end, not a dip on the way
    assert phases["weight_norm_falls_after_formation"] == (norms[-1] < 0.95 * norms[0])
    text = grokking_report(phases)
    assert (" it falls" in text) == phases["weight_norm_falls_after_formation"]
    assert f"{norms[0]:.0f}" in text and f"{norms[-1]:.0f}" in text
    # the loss curve's test loss at each checkpoint is the checkpoint's own, up to its float16 rounding
    for m in measures:
        row = next(r for r in curve if r["step"] == m["step"])
        assert row["test_loss"] == pytest.approx(m["test_loss"], rel=0.2, abs=0.02)


# -- widgets --------------------------------------------------------------------------------------

def test_addition_view_matches_generation_and_attention(m):
    v = addition_view(m, 36, 59, classes={(m.cfg.n_layers - 1, 0): "x"})
    said = m.generate("calc: 36 + 59 =", max_new_tokens=3)[len("calc: 36 + 59 ="):].strip()
    assert v.answer == said and v.right == (said == "95")
    assert v.attention.shape == (m.cfg.n_layers, m.cfg.n_heads, 4) and bool((v.attention <= 1).all())
    assert len(v.neurons) == 1
    b = addition_batch(m, [AdditionPrompt(36, 59)])
    _, cache = m.run_with_cache(b.tokens)
    q = int(b.ones_pos[0]) - 1
    assert v.neurons[0][2] == pytest.approx(float(cache["post", m.cfg.n_layers - 1][0, q, 0]))
    torch.testing.assert_close(v.attention[0], cache["pattern", 0][0, :, q, b.operand_pos])
    with pytest.raises(ValueError, match="two-digit"):
        addition_view(m, 5, 59)
    tens = addition_view(m, 36, 59, target="tens")
    torch.testing.assert_close(tens.attention[0], cache["pattern", 0][0, :, int(b.tens_pos[0]) - 1, b.operand_pos])
    w = AdditionExplorer(m, 36, 59)
    w.a.value = 12
    assert w.view.a == 12 and "12 + 59" in w.out.children[0].value
    w.target.value = "tens"
    assert w.view.target == "tens" and "tens digit" in w.out.children[0].value
    w.a.max = 200
    w.a.value = 150
    assert "two-digit" in w.status.value


def test_fourier_view_picks_a_neuron_at_that_frequency(modular):
    k = key_frequencies(modular)[0]
    v = fourier_view(modular, k)
    assert v.neuron_grid.shape == (P, P) and v.logit_at_freq.shape == (P, P)
    # the chosen neuron's largest 2-D Fourier coefficient (outside the constant) is at frequency k
    coef = v.neuron_fourier.clone()
    coef[0, 0] = 0
    i, j = divmod(int(coef.argmax()), P)
    assert k in {(i + 1) // 2, (j + 1) // 2}
    with pytest.raises(ValueError):
        fourier_view(modular, 0)
    _, cache = modular.run_with_cache(torch.tensor([[5, 7, P]]))
    assert float(v.attention_grid[5, 7]) == pytest.approx(float(cache["pattern", 0][0, 0, -1, 0]), abs=1e-5)
    torch.testing.assert_close(v.attention_fourier.pow(2).sum(), v.attention_grid.pow(2).sum(), rtol=1e-4, atol=1e-4)
    w = FourierViewer(modular, k)
    w.freq.value = 2
    assert w.view.freq == 2


def test_grokking_view_and_timeline(modular):
    measures = progress_measures(key_frequencies(modular))
    v = grokking_view(measures[0]["step"], measures)
    torch.testing.assert_close(v.embedding_norms, frequency_norms(load_checkpoints()[0]["transformer.wte.weight"][:P]))
    with pytest.raises(ValueError, match="no checkpoint"):
        grokking_view(12345, measures)
    w = GrokkingTimeline(measures)
    w.step.value = measures[1]["step"]
    assert w.view.step == measures[1]["step"] and not w.status.value


# -- the chapter's findings -----------------------------------------------------------------------

def test_finding_the_carry_probe_beats_the_base_rate(m):
    train = addition_batch(m, [AdditionPrompt(a, b) for a, b in sorted(addition_split()[0])[::12]])
    test = addition_batch(m, held_out_addition_prompts("test"))
    from course.arithmetic import probe_grid

    positions = [test.operand_pos[-1], test.operand_pos[-1] + 1, test.operand_pos[-1] + 2]
    grid = probe_grid(m, train, test, positions)
    best = best_probe(grid, positions)
    base = max(float(test.carry.float().mean()), 1 - float(test.carry.float().mean()))
    assert best["best"] > base + 0.2 and best["accuracy"] >= best["best"] - 0.05
    assert grid[0].max() < best["best"]      # better after some layers than from the embeddings alone


def test_toolkit_edits_equal_the_references(m, lines, mod_logits):
    from course.arithmetic import ablate_direction

    d = torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(6))
    layer, pos = 1, lines.operand_pos[-1]
    value = float((residuals(m, lines, [pos])[layer, :, 0] @ (d / d.norm())).mean())

    def hook(x, hook):
        x = x.clone()
        x[:, pos:] = ref.set_component(x[:, pos:], d, value)
        return x
    want = answer_correct(m, lines, fwd_hooks=[(f"blocks.{layer}.hook_resid_pre", hook)])
    assert torch.equal(ablate_direction(m, lines, d, layer, pos), want)
    freqs = [3, 17]
    centre = mod_logits.mean((0, 1), keepdim=True)
    torch.testing.assert_close(restricted_logits(mod_logits, freqs),
                               centre + ref.project_sum_waves(mod_logits - centre, freqs), atol=1e-3, rtol=1e-4)
    torch.testing.assert_close(excluded_logits(mod_logits, freqs),
                               mod_logits - ref.project_sum_waves(mod_logits, freqs), atol=1e-3, rtol=1e-4)


def test_digit_attribution_sums_to_the_digit_logit(m, lines):
    from course.arithmetic import digit_attribution

    idx = torch.arange(len(lines.prompts))
    logits = m(lines.tokens)
    for target, at in (("ones", lines.ones_pos), ("tens", lines.tens_pos)):
        attr, labels = digit_attribution(m, lines, target)
        assert attr.shape == (2 + m.cfg.n_layers * (m.cfg.n_heads + 1) + 1, len(lines.prompts)) and len(labels) == len(attr)
        right = lines.tokens[idx, at]
        want = logits[idx, at - 1, right] - (m.ln_final_b @ m.W_U)[right]
        torch.testing.assert_close(attr.sum(0), want, atol=1e-3, rtol=1e-4)
        # relative to the mean of the ten digits: the same sum, minus the digits' mean logit
        rel, _ = digit_attribution(m, lines, target, relative=True)
        digits = torch.tensor([m.to_single_token(str(d)) for d in range(10)])
        bias = m.ln_final_b @ m.W_U
        want_rel = (logits[idx, at - 1, right] - bias[right]) - (logits[idx, at - 1][:, digits] - bias[digits]).mean(-1)
        torch.testing.assert_close(rel.sum(0), want_rel, atol=1e-3, rtol=1e-4)


# -- switching the carry off, and the rough size of the sum ---------------------------------------

def test_carry_direction_matches_a_loop_and_the_toolkit():
    from course.arithmetic.probe import mean_difference

    g = torch.Generator().manual_seed(7)
    x, carry = torch.randn(30, 5, generator=g), torch.rand(30, generator=g) < 0.5
    got = ref.carry_direction(x, carry)
    for j in range(5):
        on = [float(x[i, j]) for i in range(30) if carry[i]]
        off = [float(x[i, j]) for i in range(30) if not carry[i]]
        assert float(got[j]) == pytest.approx(sum(on) / len(on) - sum(off) / len(off), abs=1e-5)
    torch.testing.assert_close(mean_difference(x, carry), got)


def test_set_at_digit_edits_only_the_tens_predicting_position(m, lines):
    from course.arithmetic.probe import set_at_digit

    d = torch.randn(m.cfg.d_model, generator=torch.Generator().manual_seed(8))
    name = "blocks.1.hook_resid_mid"
    rows = torch.arange(len(lines.prompts))

    def hook(x, hook):                      # the same edit through the reference set_component
        x = x.clone()
        x[rows, lines.tens_pos - 1] = ref.set_component(x[rows, lines.tens_pos - 1], d, 0.5)
        return x
    want = answer_correct(m, lines, fwd_hooks=[(name, hook)])
    assert torch.equal(set_at_digit(m, lines, name, d, 0.5), want)
    # a one-prompt run by hand agrees for the first line
    p = lines.prompts[0]
    toks = m.to_tokens(p.text + p.answer)
    q = int(lines.tens_pos[0]) - 1
    u = d / d.norm()

    def one(x, hook):
        x = x.clone()
        x[0, q] = x[0, q] + (0.5 - x[0, q] @ u) * u
        return x
    logits = m.run_with_hooks(toks, [(name, one)])
    tens_ok = int(logits[0, q].argmax()) == int(toks[0, q + 1])
    assert bool(set_at_digit(m, lines, name, d, 0.5)[0, q + 1]) == tens_ok


@pytest.fixture(scope="module")
def switch(m):
    from course.chapters.ch6_addition.findings import carry_switch

    train = addition_batch(m, [AdditionPrompt(a, b) for a, b in sorted(addition_split()[0])[::12]])
    val = addition_batch(m, held_out_addition_prompts("validation"))
    test = addition_batch(m, held_out_addition_prompts("test"))
    return carry_switch(m, train, val, test, n_controls=3), train, test


def test_finding_switching_the_carry_off_breaks_exactly_the_carry_sums(switch):
    """The floor the chapter states, on held-out sums: carry sums lose >= 0.5, the others <= 0.05;
    switched on, the other way round."""
    found, _, _ = switch
    carry_lost, plain_lost = (c - o for c, o in zip(found["clean"], found["off"]))
    assert carry_lost >= 0.5 and plain_lost <= 0.05 and found["exact"], found
    assert found["clean"][1] - found["on"][1] >= 0.5 and found["clean"][0] - found["on"][0] <= 0.05, found
    for g in found["groups"]:                             # every answer length on its own, too
        assert g["clean"][1] - g["off"][1] <= 0.05 and g["clean"][0] - g["off"][0] >= 0.5, g


def test_finding_carry_writers_split_the_gap_exactly_and_the_line_names_the_top_writer(m, switch):
    from course.chapters.ch6_addition.findings import carry_writers, carry_writers_line

    found, _, test = switch
    for g in found["groups"]:
        w = carry_writers(m, test, g)
        assert sum(w["shares"].values()) == pytest.approx(1.0, abs=1e-4)
        # the shares are of the stream's own gap along the direction (biases write the same everywhere)
        rows = test.select(test.answer_mask.sum(1) == g["digits"])
        _, cache = m.run_with_cache(rows.tokens, names_filter=g["hook"])
        x = cache[g["hook"]][torch.arange(len(rows.prompts)), rows.tens_pos - 1]
        proj = x @ (g["direction"] / g["direction"].norm())
        carry = rows.carry.bool()
        assert w["gap"] == pytest.approx(float(proj[carry].mean() - proj[~carry].mean()), rel=1e-3)
        line = carry_writers_line(w)
        assert w["top"] in line and max(abs(v) for v in w["shares"].values()) == pytest.approx(abs(w["top_share"]))
        assert ("moves most of the carry" in line) == (w["top_share"] >= 0.5)


def test_finding_switching_the_carry_off_is_selective_and_the_controls_are_not(m, switch):
    """Random directions (same rule, same push) are not selective; each answer length's layer is its
    most selective; and, recomputed here without the finding's code, the carry sums switched off write
    the answer one ten short (95 -> 85), the others switched on one ten over (32 -> 42, 95 -> 105)."""
    from course.arithmetic.probe import written_at_digit

    found, train, test = switch
    assert found["controls_not_selective"], found
    assert {g["digits"] for g in found["groups"]} == {2, 3}
    digits = [m.to_single_token(str(k)) for k in range(10)]
    for g in found["groups"]:
        assert g["selectivity_by_layer"][g["layer"]] == max(g["selectivity_by_layer"])
        fit, rep = (b.select(b.answer_mask.sum(1) == g["digits"]) for b in (train, test))
        _, cache = m.run_with_cache(fit.tokens, names_filter=g["hook"])
        x = cache[g["hook"]][torch.arange(len(fit.prompts)), fit.tens_pos - 1]
        d = ref.carry_direction(x, fit.carry)
        u = d / d.norm()
        rows = torch.arange(len(rep.prompts))
        for value, lines, step in (((x[~fit.carry] @ u).mean(), rep.carry, -1), ((x[fit.carry] @ u).mean(), ~rep.carry, 1)):
            def hook(z, hook):
                z = z.clone()
                z[rows, rep.tens_pos - 1] = ref.set_component(z[rows, rep.tens_pos - 1], d, float(value))
                return z
            pred = m.run_with_hooks(rep.tokens, [(g["hook"], hook)])[rows, rep.tens_pos - 1].argmax(-1)
            assert written_at_digit(m, rep, g["hook"], d, float(value)) == [m.to_string(t).strip() for t in pred]
            # the digit a sum ten away has there: its tens digit, or its first where the length changes (95 -> 105)
            moved = torch.tensor([digits[int(str(p.a + p.b + 10 * step)[0 if len(str(p.a + p.b + 10 * step))
                                                                         != g["digits"] else -2])] for p in rep.prompts])
            broken = (pred != rep.tokens[rows, rep.tens_pos]) & lines
            assert int(broken.sum()) >= 0.5 * int(lines.sum()), g
            assert float((pred[broken] == moved[broken]).float().mean()) > 0.8, g
            assert int(((pred != rep.tokens[rows, rep.tens_pos]) & ~lines).sum()) <= 0.05 * int((~lines).sum()), g


def test_sum_readout_matches_least_squares_by_numpy(m):
    import numpy as np

    from course.arithmetic.probe import stream_at_digit
    from course.chapters.ch6_addition.findings import sum_readout

    fit = addition_batch(m, [AdditionPrompt(a, b) for a, b in sorted(addition_split()[0])[::24]])
    rep = addition_batch(m, held_out_addition_prompts("test")[:80])
    got = sum_readout(m, fit, rep, ridge=0.0)
    name = got["rows"][-1]["hook"]
    xf, xr = stream_at_digit(m, fit, name).double().numpy(), stream_at_digit(m, rep, name).double().numpy()
    mu, sd = xf.mean(0), xf.std(0, ddof=1) + 1e-6
    A = np.c_[(xf - mu) / sd, np.ones(len(xf))]
    w = np.linalg.lstsq(A, fit.sums.double().numpy(), rcond=None)[0]
    pred = np.c_[(xr - mu) / sd, np.ones(len(xr))] @ w
    assert got["rows"][-1]["mae"] == pytest.approx(float(np.abs(pred - rep.sums.numpy()).mean()), rel=0.05, abs=0.05)
    a1, b1 = np.array([p.a // 10 for p in rep.prompts]), np.array([p.b // 10 for p in rep.prompts])
    assert got["tens_digits_mae"] == pytest.approx(float(np.abs(10 * (a1 + b1) + 9 - rep.sums.numpy()).mean()))


def test_finding_the_stream_knows_the_sum_partly_before_the_carry(m, switch):
    """What the chapter prints is decided by these numbers; here, for each answer length: the readout
    improves with depth and, entering the layer where its carry is switched, is better than guessing the mean."""
    from course.arithmetic.probe import stream_name
    from course.chapters.ch6_addition.findings import sum_readout

    found, train, test = switch
    for g in found["groups"]:
        fit, rep = (b.select(b.answer_mask.sum(1) == g["digits"]) for b in (train, test))
        readout = sum_readout(m, fit, rep)
        maes = [r["mae"] for r in readout["rows"]]
        assert maes[-1] < maes[0]
        before = next(r for r in readout["rows"] if r["hook"] == stream_name(m, g["layer"]))
        assert before["mae"] < readout["mean_guess_mae"], g["digits"]



@pytest.mark.parametrize("mae, words", [(2.0, "beats the tens digits alone by 1.4"),
                                        (4.3, "0.9 worse than the tens digits alone"),
                                        (30.0, "No better than guessing the mean")])
def test_the_rough_size_verdict_follows_the_yardsticks(mae, words):
    from course.chapters.ch6_addition.findings import rough_size_verdict

    text = rough_size_verdict(mae, {"mean_guess_mae": 25.0, "tens_digits_mae": 3.4}, 2)
    assert words in text and ("pathway)" in text) == (mae <= 3.4)



def test_the_addition_explorer_says_so_when_an_operand_is_out_of_range(m):
    w = AdditionExplorer(m, 36, 59)
    w.a.value = 7
    assert w.a.value == 7 and "two-digit" in w.status.value        # not silently clamped to 10
    w.a.value = 36
    assert w.status.value == ""



@pytest.mark.parametrize("unclassified, named, more", [(0.79, 0.96, "unclassified neurons matter more"),
                                                       (0.98, 0.90, "matters more than the unclassified")])
def test_the_heuristic_ablation_verdicts_follow_the_accuracies(unclassified, named, more):
    from course.chapters.ch6_addition.findings import ablation_verdicts

    rows = [{"class": "ones digits' sum", "neurons": 17, "accuracy": named, "control": 0.99, "clean": 1.0},
            {"class": "unclassified", "neurons": 23, "accuracy": unclassified, "control": 0.99, "clean": 1.0}]
    text = "\n".join(ablation_verdicts(rows))
    assert more in text
    assert ("matters more than a random set" in text.splitlines()[0]) == (1.0 - named > 0.01 + 0.02)
