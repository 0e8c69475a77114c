"""Model-free unit tests of ``course.tracing`` (causal tracing) on small random GPT-2s.

The reference is a plain loop over noise samples and positions, with the noise added to the
token embeddings and the clean states put back through forward hooks on the HF modules, not
through the lens's hook points.
"""

from __future__ import annotations

from contextlib import contextmanager

import pytest
import torch

from course.lens import HookedGPT2
from course.tracing import (BUCKETS, TracedFact, average_traces, bucket_positions, noise_scale, plot_average,
                            subject_noise, subject_span, trace_fact)
from tests.conftest import random_hf_model

SUBJECT = (2, 4)


@pytest.fixture(scope="module")
def three_layers(tokenizer):
    return HookedGPT2(random_hf_model(n_layer=3, seed=3), tokenizer, name="random-3-layer")


@pytest.fixture(scope="module")
def peaked(tokenizer):
    """Larger (tied) embeddings: sharper predictions, so that ROME's default noise scale (a multiple
    of the embeddings' spread) moves the answer's probability by more than rounding."""
    hf = random_hf_model(seed=4)
    with torch.no_grad():
        hf.transformer.wte.weight.mul_(10)
    return HookedGPT2(hf, tokenizer, name="random-peaked")


def _tokens(model, pos=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(1, model.cfg.d_vocab, (1, pos), generator=g)


MODULES = {"resid": lambda block: block, "mlp": lambda block: block.mlp, "attn": lambda block: block.attn}


def _first(out):
    return out[0] if isinstance(out, tuple) else out            # the HF attention returns (output, weights)


@contextmanager
def _forward_hooks(modules, fn):
    def hook(i):
        def call(module, args, out):
            fn(i, _first(out))                                     # in place; returning nothing keeps the output
        return call
    handles = [m.register_forward_hook(hook(i)) for i, m in enumerate(modules)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def _answer_prob_by_hand(model, tokens, noise, answer, kind="resid", layers=(), pos=None):
    """Mean over noise samples of p(answer) with the noise added to the subject's token embeddings
    and, at ``pos``, the ``kind`` output of each of ``layers`` set to its value in the clean run."""
    hf = model.hf
    modules = [MODULES[kind](hf.transformer.h[l]) for l in layers]
    clean = {}
    with _forward_hooks(modules, lambda i, out: clean.__setitem__(i, out.clone())):
        hf(tokens)
    start, end = SUBJECT
    probs = []
    for sample in noise:
        embeds = hf.transformer.wte(tokens).clone()
        embeds[0, start:end] += sample
        with _forward_hooks(modules, lambda i, out: out[0, pos].copy_(clean[i][0, pos])):
            probs.append(hf(inputs_embeds=embeds).logits[0, -1].softmax(-1)[answer])
    return float(torch.stack(probs).mean())


def test_clean_and_corrupt_probabilities_match_runs_by_hand(model):
    tokens, answer = _tokens(model), 5
    noise = subject_noise(model, n_samples=3, n_subject=2, seed=0, scale=2.0)
    t = trace_fact(model, tokens, SUBJECT, answer, noise)
    with torch.no_grad():
        clean = float(model.hf(tokens).logits[0, -1].softmax(-1)[answer])
    assert t["clean"] == pytest.approx(clean, rel=1e-5)
    assert t["corrupt"] == pytest.approx(_answer_prob_by_hand(model, tokens, noise, answer), rel=1e-4)
    assert abs(t["corrupt"] - t["clean"]) > 1e-3 * t["clean"]          # the noise does change the answer


@pytest.mark.parametrize("kind", ["resid", "mlp", "attn"])
def test_restored_states_match_a_loop_over_layers_and_positions(model, kind):
    tokens, answer = _tokens(model, seed=1), 9
    noise = subject_noise(model, n_samples=2, n_subject=2, seed=1, scale=2.0)
    restored = trace_fact(model, tokens, SUBJECT, answer, noise, kind=kind)["restored"]
    assert restored.shape == (model.cfg.n_layers, tokens.shape[1])
    for layer in range(model.cfg.n_layers):
        for pos in range(tokens.shape[1]):
            expected = _answer_prob_by_hand(model, tokens, noise, answer, kind, [layer], pos)
            assert float(restored[layer, pos]) == pytest.approx(expected, rel=1e-4, abs=1e-7), (layer, pos)


def test_restoring_before_the_subject_changes_nothing_and_the_last_state_gives_the_clean_answer(model):
    tokens, answer = _tokens(model, seed=2), 11
    noise = subject_noise(model, n_samples=2, n_subject=2, seed=2, scale=2.0)
    t = trace_fact(model, tokens, SUBJECT, answer, noise)
    torch.testing.assert_close(t["restored"][:, :SUBJECT[0]], torch.full((2, SUBJECT[0]), t["corrupt"]))
    assert float(t["restored"][-1, -1]) == pytest.approx(t["clean"], rel=1e-4)


def test_a_window_of_layers_is_clipped_at_the_first_and_last_layer(three_layers):
    m, tokens, answer = three_layers, _tokens(three_layers, pos=6, seed=3), 3
    noise = subject_noise(m, n_samples=2, n_subject=2, seed=3, scale=2.0)
    restored = trace_fact(m, tokens, SUBJECT, answer, noise, window=3)["restored"]
    windows = {0: [0, 1], 1: [0, 1, 2], 2: [1, 2]}           # layer l restores l-1..l+1 where they exist
    for layer, layers in windows.items():
        for pos in (SUBJECT[0], SUBJECT[1] - 1, tokens.shape[1] - 1):
            expected = _answer_prob_by_hand(m, tokens, noise, answer, "resid", layers, pos)
            assert float(restored[layer, pos]) == pytest.approx(expected, rel=1e-4, abs=1e-7), (layer, pos)


def test_an_unknown_kind_is_refused(model):
    with pytest.raises(ValueError, match="kind"):
        trace_fact(model, _tokens(model), SUBJECT, 0, torch.zeros(1, 2, model.cfg.d_model), kind="resid_pre")


def test_subject_noise_is_fixed_by_its_seed_and_has_the_asked_scale(model):
    a, b = subject_noise(model, 64, 3, seed=5, scale=0.5), subject_noise(model, 64, 3, seed=5, scale=0.5)
    assert a.shape == (64, 3, model.cfg.d_model) and torch.equal(a, b)
    assert float(a.std()) == pytest.approx(0.5, rel=0.05)
    assert noise_scale(model, multiple=6.0) == pytest.approx(2 * noise_scale(model, multiple=3.0))


@pytest.mark.parametrize("n_pos, subject, expected", [
    (8, (2, 5), [[0, 1], [2], [3], [4], [5, 6], [7]]),
    (7, (3, 4), [[0, 1, 2], [], [], [3], [4, 5], [6]]),          # a one-token subject is its own last token
    (5, (0, 2), [[], [0], [], [1], [2, 3], [4]]),
])
def test_bucket_positions_by_hand(n_pos, subject, expected):
    got = bucket_positions(n_pos, subject)
    assert len(got) == len(BUCKETS) and got == expected
    assert sorted(p for bucket in got for p in bucket) == list(range(n_pos))    # each position in one bucket


def test_subject_span_covers_exactly_the_subjects_tokens(model):
    text = "Yesterday the capital of Brebeovia was loud"
    start, end = subject_span(model, text, "Brebeovia")
    pieces = model.to_str_tokens(text)
    assert "".join(pieces[start:end]).strip() == "Brebeovia"
    assert "Brebeovia" not in "".join(pieces[:start]) + "".join(pieces[end:])
    with pytest.raises(ValueError, match="does not occur"):
        subject_span(model, text, "Babaia")


def _fact(model, tokens, subject):
    with torch.no_grad():
        answer = int(model.hf(tokens).logits[0, -1].argmax())      # the clean top token: clean > corrupt
    return TracedFact("", tokens, subject, answer, "", "")


def test_average_traces_recovers_nothing_before_the_subject_and_all_at_the_last_state(peaked):
    facts = [_fact(peaked, _tokens(peaked, seed=6), (2, 5)), _fact(peaked, _tokens(peaked, seed=7), (3, 4))]
    for i, f in enumerate(facts):                    # the premise: the noise lowers each answer's probability
        t = trace_fact(peaked, f.tokens, f.subject, f.answer, subject_noise(peaked, 2, f.subject[1] - f.subject[0], seed=i))
        assert t["clean"] - t["corrupt"] > 1e-4
    avg = average_traces(peaked, facts, kinds=("resid",), n_samples=2, progress=False)
    assert avg.n_facts == 2
    recovered = avg.recovered["resid"]                                   # [layer, bucket]
    assert recovered.shape == (peaked.cfg.n_layers, len(BUCKETS))
    torch.testing.assert_close(recovered[:, BUCKETS.index("before the subject")], torch.zeros(2), atol=1e-3, rtol=0)
    assert float(recovered[-1, BUCKETS.index("last token")]) == pytest.approx(1.0, abs=1e-3)


def test_a_bucket_a_fact_lacks_is_averaged_over_the_facts_that_have_it(peaked):
    long = _fact(peaked, _tokens(peaked, seed=8), (2, 5))            # has a middle subject token
    short = _fact(peaked, _tokens(peaked, seed=9), (3, 4))           # has none
    both = average_traces(peaked, [long, short], kinds=("resid",), n_samples=2, progress=False)
    alone = average_traces(peaked, [long], kinds=("resid",), n_samples=2, progress=False)
    middle = BUCKETS.index("subject, middle")
    torch.testing.assert_close(both.recovered["resid"][:, middle], alone.recovered["resid"][:, middle])


def test_plot_average_draws_one_panel_per_kind(peaked):
    import matplotlib.pyplot as plt

    facts = [_fact(peaked, _tokens(peaked, seed=10), (2, 4))]
    fig = plot_average(average_traces(peaked, facts, kinds=("resid", "mlp"), n_samples=1, progress=False))
    assert [ax.get_title() for ax in fig.axes[:2]] == ["restore resid", "restore mlp"]
    plt.close(fig)


def test_trace_figures_keep_the_title_clear_of_the_panel_titles():
    import matplotlib
    matplotlib.use("Agg")
    from types import SimpleNamespace

    from course.tracing.plots import plot_average
    from course.widgets.tracing import TraceView, plot_trace

    kinds = ("resid", "mlp", "attn")
    average = SimpleNamespace(kinds=kinds, recovered={k: torch.rand(4, 6) for k in kinds},
                              buckets=list("abcdef"), window=1)
    view = TraceView(list("abcd"), (1, 2), "x", 0.9, 0.1, {k: torch.rand(4, 4).tolist() for k in kinds})
    for fig in (plot_average(average, "single states, 100 facts"), plot_trace(view)):
        fig.canvas.draw()
        renderer = fig.canvas.get_renderer()
        title = fig._suptitle.get_window_extent(renderer)
        panels = [ax.title.get_window_extent(renderer) for ax in fig.axes if ax.get_title()]
        assert len(panels) == 3 and not any(title.overlaps(p) for p in panels)
