"""Chapter 5: references against independent computations, checks on right and wrong answers,
the toolkits (superposition, saes), the widgets' pure functions, the shipped SAE (fresh for
the bundled model, SAE Lens round trip, metrics) and the chapter's findings."""

from __future__ import annotations

import pytest
import torch

from course.chapters.ch5_superposition_saes import checks as check
from course.chapters.ch5_superposition_saes.findings import named_features, sparsity_sweep, steering_comparison, superposition_grows_with_sparsity
from course.neurons import text_stream
from course.saes import (DictionaryConfig, SparseDictionary, check_fresh, evaluate, load_sae, load_shipped_sae,
                         model_fingerprint, read_sites, save_sae, spliced_loss, train_sae)
from course.saes.features import feature_activations, find_feature
from course.superposition import feature_batch
from course.widgets import FeatureDashboard, SuperpositionExplorer, feature_card, feature_promoting, superposition_view
from solutions import ch5_superposition_saes as ref
from tests.check_contract import contract_tests, shipped_values_test

pytestmark = pytest.mark.usefixtures("no_grad")

test_reference_passes_stub_does_not, test_a_wrong_answer_fails, test_known_mistakes_are_diagnosed = \
    contract_tests(check, ref)
test_checks_fall_back_to_the_shipped_values = shipped_values_test(check, ref)


@pytest.fixture(scope="module")
def sae():
    return load_shipped_sae()


@pytest.fixture(scope="module")
def text(m):
    return text_stream(m, n_rows=128, row_len=64, seed=0)      # the chapter's stream


@pytest.fixture(scope="module")
def acts(m, sae, text):
    with torch.no_grad():
        return feature_activations(m, sae, text.tokens)


# -- the shipped SAE ---------------------------------------------------------------------------

def test_shipped_sae_was_trained_on_the_bundled_model(m, sae):
    check_fresh(sae, m)     # raises "... Retrain with: python -m course.training.sae" when the model changed


def test_a_changed_model_makes_the_sae_stale(m, sae):
    from course.saes import StaleSAEError

    with torch.no_grad():
        p = m.hf.transformer.h[0].mlp.c_fc.weight
        before = p[0, 0].clone()
        p[0, 0] += 1.0
        try:
            with pytest.raises(StaleSAEError, match="Retrain with: python -m course.training.sae"):
                check_fresh(sae, m)
        finally:
            p[0, 0] = before
    assert model_fingerprint(m) == sae.cfg.model_fingerprint


def test_shipped_sae_meets_the_benchmark_bar(m, sae):
    ev = evaluate(m, sae)
    assert ev.l0 <= 32 and ev.explained_variance >= 0.9 and ev.loss_recovered >= 0.9, str(ev)
    assert sae.cfg.extra["training"]["tokens_seen"] >= 1_000_000
    recorded = sae.cfg.extra["evaluation"]
    assert ev.explained_variance == pytest.approx(recorded["explained_variance"], abs=2e-3)


def test_sae_lens_loads_the_shipped_sae_with_the_same_encodings(m, sae, text):
    sae_lens = pytest.importorskip("sae_lens")
    from course.saes import SHIPPED

    theirs = sae_lens.SAE.load_from_disk(str(SHIPPED))
    # every field a user of the field's tools needs, read back as SAE Lens reads it
    meta = theirs.cfg.metadata
    assert (meta.hook_name, meta.model_name, meta.context_size) == ("blocks.1.hook_resid_post", "course-gpt2", 64)
    assert theirs.cfg.architecture() == "topk" and meta.prepend_bos is True
    x = read_sites(m, text.tokens[:4], [sae.cfg.hook_name])[sae.cfg.hook_name].flatten(0, 1)
    torch.testing.assert_close(theirs.encode(x), sae.encode(x), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(theirs.decode(theirs.encode(x)), sae(x), atol=1e-4, rtol=1e-4)


def test_save_and_load_round_trip_and_an_saelens_style_relu_sae(tmp_path, sae):
    back = load_sae(save_sae(sae, tmp_path / "a"))
    x = torch.randn(7, sae.cfg.d_in)
    torch.testing.assert_close(back.encode(x), sae.encode(x))
    # A ReLU SAE saved by SAE Lens subtracts b_dec from its input: the loader folds that into b_enc.
    pytest.importorskip("sae_lens")
    from sae_lens.saes.standard_sae import StandardSAE, StandardSAEConfig

    theirs = StandardSAE(StandardSAEConfig(d_in=8, d_sae=16))
    with torch.no_grad():
        for p in theirs.parameters():
            p.copy_(torch.randn_like(p))
    theirs.save_model(tmp_path / "b")
    ours = load_sae(tmp_path / "b")
    x = torch.randn(5, 8)
    torch.testing.assert_close(ours.encode(x), theirs.encode(x), atol=1e-5, rtol=1e-5)


# -- references against independent computations --------------------------------------------------

def test_toy_forward_matches_a_loop_over_instances():
    W, b, x = torch.randn(3, 2, 5), torch.randn(3, 5), torch.rand(4, 3, 5)
    got = ref.toy_forward(W, b, x)
    for i in range(3):
        torch.testing.assert_close(got[:, i], torch.relu(x[:, i] @ W[i].T @ W[i] + b[i]))


def test_importance_weighted_loss_matches_a_loop():
    out, x, imp = torch.rand(6, 2, 4), torch.rand(6, 2, 4), torch.rand(2, 4)
    got = ref.importance_weighted_loss(out, x, imp)
    for i in range(2):
        want = sum(float(imp[i, f]) * float(((out[:, i, f] - x[:, i, f]) ** 2).mean()) for f in range(4))
        assert float(got[i]) == pytest.approx(want, rel=1e-5)


def test_feature_dimensionality_on_known_geometries():
    # A pentagon in 2-D: each of 5 features gets 2/5 of a dimension; a dedicated basis gets 1 each.
    angles = torch.arange(5) * 2 * torch.pi / 5
    pentagon = torch.stack([angles.cos(), angles.sin()])[None]
    torch.testing.assert_close(ref.feature_dimensionality(pentagon), torch.full((1, 5), 0.4), atol=1e-5, rtol=0)
    torch.testing.assert_close(ref.feature_dimensionality(torch.eye(3)[None]), torch.ones(1, 3))


def test_sae_encode_topk_keeps_k_and_matches_the_toolkit():
    s = SparseDictionary(DictionaryConfig(d_in=8, d_sae=32, activation="topk", k=5, seed=1))
    x = torch.randn(10, 8)
    f = ref.sae_encode(s, x)
    assert ((f > 0).sum(-1) <= 5).all()
    torch.testing.assert_close(f, s.encode(x))
    pre = x @ s.W_enc + s.b_enc
    for row in range(10):        # the kept entries are the row's 5 largest pre-activations
        kept = set(torch.nonzero(f[row]).flatten().tolist())
        assert kept <= set(pre[row].topk(5).indices.tolist())


def test_sae_loss_against_the_toolkit_and_a_hand_sum():
    from course.saes import dictionary_loss

    s = SparseDictionary(DictionaryConfig(d_in=4, d_sae=8, activation="relu", l1_coeff=0.3, seed=2))
    x = torch.randn(3, 4)
    f = s.encode(x)
    hand = sum(float(((s.decode(f)[i] - x[i]) ** 2).sum()) + 0.3 * float(f[i].abs().sum()) for i in range(3)) / 3
    assert float(ref.sae_loss(s, x, 0.3)) == pytest.approx(hand, rel=1e-5)
    assert float(dictionary_loss(s, x)[0]) == pytest.approx(hand, rel=1e-5)


def test_training_step_lowers_the_loss_and_keeps_unit_decoder_rows():
    s = SparseDictionary(DictionaryConfig(d_in=8, d_sae=32, activation="topk", k=4, seed=3))
    opt = torch.optim.Adam(s.parameters(), lr=0.01)
    x = torch.randn(64, 8)
    first, _ = ref.training_step(s, opt, x, 0.0)
    for _ in range(30):
        last, W_dec = ref.training_step(s, opt, x, 0.0)
    assert float(last) < float(first)
    torch.testing.assert_close(W_dec.norm(dim=-1), torch.ones(32))


def test_spliced_loss_with_an_identity_sae_is_the_clean_loss(m, text):
    d = m.cfg.d_model
    identity = SparseDictionary(DictionaryConfig(d_in=d, d_sae=2 * d, activation="relu",
                                                 hook_name="blocks.1.hook_resid_post"))
    with torch.no_grad():     # f = [relu(x), relu(-x)], decoded as f_+ - f_- = x
        identity.W_enc.copy_(torch.cat([torch.eye(d), -torch.eye(d)], 1))
        identity.W_dec.copy_(torch.cat([torch.eye(d), -torch.eye(d)], 0))
        identity.b_enc.zero_(), identity.b_dec.zero_()
    tokens = text.tokens[:3]
    assert float(ref.spliced_loss(m, identity, tokens)) == pytest.approx(float(m(tokens, return_type="loss")), abs=1e-4)
    assert spliced_loss(m, identity, tokens) == pytest.approx(float(m(tokens, return_type="loss")), abs=1e-4)


# -- toolkits ------------------------------------------------------------------------------------

def test_feature_batch_sparsity_and_correlations():
    g = torch.Generator().manual_seed(0)
    p = torch.full((2, 8), 0.2)
    x = feature_batch(20000, p, n_correlated_pairs=1, n_anticorrelated_pairs=1, generator=g)
    present = x > 0
    assert present[..., 4:].float().mean() == pytest.approx(0.2, abs=0.01)
    assert torch.equal(present[..., 0], present[..., 1])                # correlated: together
    assert not (present[..., 2] & present[..., 3]).any()                # anticorrelated: never together
    assert present[..., 2].float().mean() == pytest.approx(0.2, abs=0.01)


def test_sparse_toy_models_superpose_and_dense_ones_do_not():
    _, _, geoms = sparsity_sweep(steps=1500)
    assert geoms[0].n_represented <= 2 and geoms[0].n_superposed == 0
    assert superposition_grows_with_sparsity(geoms) and geoms[-1].n_superposed >= 3


def test_correlated_pairs_share_a_direction_and_anticorrelated_ones_are_antipodal():
    from course.chapters.ch5_superposition_saes.findings import correlated_geometry

    pairs = correlated_geometry()
    assert min(pairs["correlated"]["cosines"]) > 0.9
    assert max(pairs["anticorrelated"]["cosines"]) < -0.9


def test_a_transcoder_trains_with_the_same_code(m):
    """Chapter 7's use: read the MLP input, predict the MLP output (d_in == d_out here, other sites)."""
    tc, log = train_sae(m, hook_name="blocks.0.hook_resid_mid", target_hook_name="blocks.0.hook_mlp_out",
                        d_sae=128, k=8, tokens=8192, batch_size=1024, progress=False)
    assert not tc.cfg.is_autoencoder and log.tokens[-1] >= 8192
    ev = evaluate(m, tc, text_stream(m, 4, 32, seed=1).tokens)
    assert ev.l0 <= 8 and ev.spliced_loss < ev.zero_loss


def test_resampling_gives_dead_features_new_unit_directions_and_auxk_revives_them():
    from course.saes import resample_dead
    from course.saes.train import auxk_loss

    s = SparseDictionary(DictionaryConfig(d_in=8, d_sae=16, activation="relu", seed=4))
    x = torch.randn(32, 8)
    dead = torch.zeros(16, dtype=torch.bool)
    dead[[1, 5]] = True
    before = s.W_dec.clone()
    assert resample_dead(s, dead, x, x, torch.Generator().manual_seed(0)) == 2
    torch.testing.assert_close(s.W_dec[~dead], before[~dead])
    assert not torch.allclose(s.W_dec[dead], before[dead])
    torch.testing.assert_close(s.W_dec.norm(dim=-1), torch.ones(16))
    t = SparseDictionary(DictionaryConfig(d_in=8, d_sae=16, activation="topk", k=2, seed=4))
    with torch.enable_grad():
        auxk_loss(t, x, x, t.encode(x), dead, k_aux=2).backward()
    assert t.W_enc.grad[:, dead].abs().sum() > 0 and t.W_enc.grad[:, ~dead].abs().sum() == 0


def test_training_is_reproducible_from_a_seed(m):
    a, _ = train_sae(m, d_sae=64, k=4, tokens=4096, batch_size=1024, progress=False, seed=3)
    b, _ = train_sae(m, d_sae=64, k=4, tokens=4096, batch_size=1024, progress=False, seed=3)
    torch.testing.assert_close(a.W_dec, b.W_dec, atol=0, rtol=0)


# -- findings: named features and steering ----------------------------------------------------------

def test_at_least_three_named_features_are_found_by_code(m, text, acts):
    named = named_features(m, text, acts)
    assert len(named) >= 3, {k: str(v) for k, v in named.items()}
    assert len({v.feature for v in named.values()}) == len(named)     # distinct features
    for category, found in named.items():
        assert found.precision >= 0.5 and found.recall >= 0.1


def test_find_feature_finds_a_planted_feature():
    acts = torch.rand(4, 10, 6) * (torch.rand(4, 10, 6) > 0.7)
    mask = torch.zeros(4, 10, dtype=torch.bool)
    mask[:, ::3] = True
    acts[..., 2] = mask * 3.0
    found = find_feature(acts, mask, min_active=2)
    assert found.feature == 2 and found.precision == pytest.approx(1.0)


def test_steering_changes_predictions_and_generation(m, sae, text, acts):
    from course.data.vocabulary import single_token_names
    from course.saes.steering import generate_steered

    named = named_features(m, text, acts)
    feature = named["name"].feature if "name" in named else next(iter(named.values())).feature
    scale = 4 * float(acts[..., feature].max())
    ids = torch.tensor([m.to_single_token(" " + n) for n in single_token_names(m.tokenizer)])
    cmp = steering_comparison(m, sae, feature, ids, ["The capital of", "Then the"], plus="Then Mary",
                              minus="Then the", scale=scale)
    assert cmp["feature_kl"] > 0.01 and cmp["activation_addition_kl"] > 0.01
    plain = generate_steered(m, "The capital of", sae.cfg.hook_name, None, 0.0, 8)
    assert generate_steered(m, "The capital of", sae.cfg.hook_name, sae.W_dec[feature], scale, 8) != plain


# -- widgets -------------------------------------------------------------------------------------

def test_superposition_view_and_explorer():
    v = superposition_view(0.02, 0.8, steps=400)
    assert v.W.shape == (2, 5) and v.n_represented >= 2
    with pytest.raises(ValueError, match="feature probability"):
        superposition_view(0.0, 0.8)
    w = SuperpositionExplorer()
    assert "course-explorer" in w._dom_classes and w.result.n_represented >= 1


def test_feature_card_and_dashboard(m, sae, text, acts):
    card = feature_card(m, sae, text, acts, 3)
    assert len(card.contexts) == 8 and card.max_activation == pytest.approx(float(acts[..., 3].max()))
    assert sum(card.histogram[0]) == int((acts[..., 3] > 0).sum())
    with pytest.raises(ValueError, match="feature must be"):
        feature_card(m, sae, text, acts, 10 ** 6)
    f = feature_promoting(m, sae, " Mary")
    from course.saes.features import decoder_logit_effects
    assert f == int(decoder_logit_effects(m, sae)[:, m.to_single_token(" Mary")].argmax())
    d = FeatureDashboard(m, sae, text, acts, feature=3, named={"x": 5})
    assert "course-explorer" in d._dom_classes
    d.named.value = 5
    assert d.feature.value == 5 and d.card.feature == 5
    d.feature.value = 10 ** 6           # an error shows in the widget, not as a traceback
    assert "⚠" in d.status.value or d.feature.value < acts.shape[-1]
    assert isinstance(d.run_steer(), str) and "steered" in d.steered.value


# -- JumpReLU ----------------------------------------------------------------------------------------

def _jumprelu(seed=0, d_in=8, d_sae=32, k=4):
    return SparseDictionary(DictionaryConfig(d_in=d_in, d_sae=d_sae, activation="jumprelu", k=k, seed=seed))


def test_jumprelu_is_zero_below_its_threshold_and_the_identity_above():
    s = _jumprelu()
    with torch.no_grad():
        s.log_threshold.copy_(torch.linspace(-1, 1, 32))
    x = torch.randn(200, 8)
    pre, theta, f = s.pre_activations(x), s.threshold, s.encode(x)
    assert (f[pre <= theta] == 0).all() and (f[pre > theta] == pre[pre > theta]).all()
    assert (f >= 0).all() and 0 < (f > 0).float().mean() < 1


def test_jumprelu_thresholds_get_the_pseudo_derivatives_gradient():
    """Through the rectangle kernel: only tokens within ε/2 of θ count, and the L0 penalty pushes θ up
    (d/dθ of the count is -(1/ε) × their number, times dθ/dlogθ = θ)."""
    from course.saes import dictionary_loss
    from course.saes.model import step

    s = _jumprelu()
    x = torch.randn(500, 8)
    with torch.no_grad():
        s.log_threshold.copy_(s.pre_activations(x).median(0).values.clamp_min(0.05).log())
    with torch.enable_grad():
        loss, _ = dictionary_loss(s, x, torch.zeros(500, 8), l0_coeff=1.0)
        loss.backward()
    assert s.log_threshold.grad is not None and s.log_threshold.grad.abs().sum() > 0
    s.zero_grad()
    with torch.enable_grad():
        pre = s.pre_activations(x).detach()
        count = step(pre, s.threshold, s.cfg.bandwidth).sum(-1).mean()
        count.backward()
    theta, eps = s.threshold.detach(), s.cfg.bandwidth
    window = ((pre - theta).abs() < eps / 2).float().sum(0) / len(x)
    torch.testing.assert_close(s.log_threshold.grad, -window / eps * theta)


def test_jumprelu_saelens_round_trip(tmp_path):
    s = _jumprelu(seed=1)
    with torch.no_grad():
        s.log_threshold.copy_(torch.randn(32) * 0.3 - 1)
        s.b_enc.copy_(torch.randn(32) * 0.1)
    x = torch.randn(50, 8)
    back = load_sae(save_sae(s, tmp_path / "a"))
    torch.testing.assert_close(back.encode(x), s.encode(x))
    sae_lens = pytest.importorskip("sae_lens")
    theirs = sae_lens.SAE.load_from_disk(str(tmp_path / "a"))
    assert type(theirs).__name__ == "JumpReLUSAE"
    torch.testing.assert_close(theirs.encode(x), s.encode(x), atol=1e-5, rtol=1e-5)


def test_jumprelu_training_lowers_the_loss_and_steers_l0_to_its_target():
    """Data made of 64 sparse directions (3 active per sample): the L0 ends near k, the error falls."""
    from course.saes import train

    g = torch.Generator().manual_seed(0)
    dirs = torch.nn.functional.normalize(torch.randn(64, 16, generator=g), dim=-1)

    def batches():
        while True:
            mask = torch.zeros(512, 64).scatter(-1, torch.rand(512, 64, generator=g).topk(3, -1).indices, 1.0)
            x = (mask * torch.rand(512, 64, generator=g).add(0.5)) @ dirs
            yield x, x

    s = _jumprelu(d_in=16, d_sae=96, k=6)
    log = train(s, batches(), 512 * 300, lr=5e-3, resample_every=20, progress=False)
    assert log.loss[-1] < 0.5 * log.loss[0]
    x, _ = next(batches())
    with torch.no_grad():
        l0 = float((s.encode(x) > 0).float().sum(-1).mean())
    assert 0.5 * s.cfg.k < l0 < 1.5 * s.cfg.k


@pytest.mark.parametrize("steers, breaks, words", [(2.0, 8.0, "a window where it steers"),
                                                   (8.0, 8.0, "no scale steers without breaking"),
                                                   (None, 4.0, "no scale tried raises"),
                                                   (1.0, None, "no scale tried breaks the text")])
def test_the_steering_verdict_follows_the_sweep(steers, breaks, words):
    from course.chapters.ch5_superposition_saes.findings import steering_verdict

    text = steering_verdict({"feature": 7, "promoted": [" a", " b"], "steers_at": steers, "breaks_at": breaks})
    assert words in text


def test_the_steering_sweep_finds_its_thresholds_in_its_own_rows(m):
    from course.chapters.ch5_superposition_saes.findings import BREAKS, STEERS, steering_sweep
    from course.saes import load_shipped_sae

    sweep = steering_sweep(m, load_shipped_sae(), 5, ["The capital of", "Then the"], 3.0, multiples=(0.0, 2.0, 8.0))
    rows = sweep["rows"]
    assert rows[0]["kl"] == pytest.approx(0.0, abs=1e-5) and rows[0]["promoted_rise"] == pytest.approx(0.0, abs=1e-6)
    assert sweep["steers_at"] == next((r["multiple"] for r in rows if r["promoted_rise"] >= STEERS), None)
    assert sweep["breaks_at"] == next((r["multiple"] for r in rows if r["kl"] >= BREAKS), None)


def test_the_superposition_explorer_names_a_local_minimum():
    from types import SimpleNamespace

    from course.widgets.saes import local_minimum_note

    assert "local minimum" in local_minimum_note(SimpleNamespace(norms=[1.0, 0.1, 1.0, 0.0, 0.0]))
    assert local_minimum_note(SimpleNamespace(norms=[1.0, 1.0, 0.2, 0.0, 0.0])) == ""
    # equal importances: keeping one and dropping another is no mistake
    assert local_minimum_note(SimpleNamespace(norms=[1.0, 0.1, 1.0], importance=[1.0, 1.0, 1.0])) == ""
