"""course.patching and the IOI dataset, against computations done another way."""

from __future__ import annotations

import pytest
import torch

from course.data.ioi_dataset import ioi_dataset
from course.lens import HookedGPT2
from tests.conftest import random_hf_model
from course.patching import group_mean, logit_diff, normalized, patch_heads, path_patch


@pytest.fixture(scope="module")
def tiny(model):
    """A random 3-layer GPT-2 with the course tokenizer: every head matters a little."""
    return HookedGPT2(random_hf_model(n_layer=3, d_model=32), model.tokenizer, name="tiny")


@pytest.fixture(scope="module")
def pair(tiny):
    g = torch.Generator().manual_seed(1)
    clean = torch.randint(1, tiny.cfg.d_vocab, (3, 12), generator=g)
    corrupt = clean.clone()
    corrupt[:, 5] = torch.randint(1, tiny.cfg.d_vocab, (3,), generator=g)
    return clean, corrupt


def test_logit_diff_and_normalized_metric():
    logits = torch.zeros(2, 3, 5)
    logits[0, 2, 1], logits[0, 2, 4], logits[1, 1, 1] = 3.0, 1.0, -2.0
    d = logit_diff(logits, torch.tensor([2, 1]), torch.tensor([1, 1]), torch.tensor([4, 0]))
    assert d.tolist() == [2.0, -2.0]
    assert normalized(1.0, 3.0, -1.0) == 0.5 and normalized(3.0, 3.0, -1.0) == 1.0


def test_group_mean_averages_within_groups():
    x = torch.arange(8.0).reshape(4, 2)
    out = group_mean(x, torch.tensor([0, 1, 0, 1]))
    assert torch.equal(out, torch.tensor([[2.0, 3.0], [4.0, 5.0], [2.0, 3.0], [4.0, 5.0]]))


@torch.no_grad()
def test_patching_a_head_with_zeros_equals_removing_its_output_weights(tiny, pair):
    clean, _ = pair
    _, cache = tiny.run_with_cache(clean, names_filter=lambda n: n.endswith("hook_z"))
    zeros = {1: torch.zeros_like(cache["z", 1])}
    patched = patch_heads(tiny, clean, [(1, 2)], zeros)
    saved = tiny.W_O[1, 2].clone()
    try:
        tiny.W_O[1, 2] = 0
        edited = tiny(clean)
    finally:
        tiny.W_O[1, 2] = saved
    torch.testing.assert_close(patched, edited, atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_path_patching_into_every_input_of_a_layer_equals_rerunning_its_attention(tiny, pair):
    """Senders: every head below layer 2; receivers: every head of layer 2, into q, k and v.
    Brute force: run layer 2's own HF attention module on the patched stream, and
    replace its output in an otherwise clean run."""
    clean, corrupt = pair
    keep = lambda n: n.endswith(("hook_z", "hook_resid_pre"))                   # noqa: E731
    _, clean_cache = tiny.run_with_cache(clean, names_filter=keep)
    _, corrupt_cache = tiny.run_with_cache(corrupt, names_filter=keep)
    senders = [(l, h) for l in range(2) for h in range(4)]
    receivers = [(2, h) for h in range(4)]
    got = path_patch(tiny, clean, clean_cache, corrupt_cache, senders, receivers, ("q", "k", "v"))

    delta = sum((corrupt_cache["z", l][:, :, h] - clean_cache["z", l][:, :, h]) @ tiny.W_O[l, h] for l, h in senders)
    block = tiny.hf.transformer.h[2]
    normed = block.ln_1(clean_cache["resid_pre", 2] + delta)
    attn_out = block.attn(normed, attention_mask=None)[0]                          # causal when no mask is given
    expected = tiny.run_with_hooks(clean, fwd_hooks=[("blocks.2.hook_attn_out", lambda x, hp: attn_out)])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
    assert (got - tiny(clean)).abs().max() > 1e-5                                 # the patch did something


@torch.no_grad()
def test_path_patching_with_the_clean_run_as_source_changes_nothing(tiny, pair):
    clean, _ = pair
    _, cache = tiny.run_with_cache(clean, names_filter=lambda n: n.endswith(("hook_z", "hook_resid_pre")))
    out = path_patch(tiny, clean, cache, cache, [(0, 1), (1, 3)], [(2, 0), (1, 0)], ("q", "k", "v"))
    torch.testing.assert_close(out, tiny(clean), atol=1e-5, rtol=1e-5)


@torch.no_grad()
def test_path_patching_from_every_sender_below_a_layer_equals_rerunning_it_on_the_corrupt_stream(tiny, pair):
    """Senders: the embeddings, every head and every MLP below layer 2 (everything that writes
    there); receivers: all of layer 2, into q, k and v. Then layer 2's attention reads exactly the
    corrupt run's stream: brute force runs it on that stream and splices its output in."""
    from course.patching.paths import sender_names

    clean, corrupt = pair
    keep = lambda n: n.endswith(("hook_z", "hook_resid_pre", "hook_mlp_out", "hook_embed", "hook_pos_embed"))  # noqa: E731
    _, clean_cache = tiny.run_with_cache(clean, names_filter=keep)
    _, corrupt_cache = tiny.run_with_cache(corrupt, names_filter=keep)
    senders = [s for s in sender_names(tiny) if s == "embed" or (s[0] < 2 if isinstance(s, tuple) else int(s[3:]) < 2)]
    assert "embed" in senders and "mlp1" in senders and "mlp2" not in senders
    got = path_patch(tiny, clean, clean_cache, corrupt_cache, senders + ["mlp2", (3, 0)], [(2, h) for h in range(4)],
                     ("q", "k", "v"))                               # senders above the receiver send nothing
    block = tiny.hf.transformer.h[2]
    attn_out = block.attn(block.ln_1(corrupt_cache["resid_pre", 2]), attention_mask=None)[0]
    expected = tiny.run_with_hooks(clean, fwd_hooks=[("blocks.2.hook_attn_out", lambda x, hp: attn_out)])
    torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)


def test_path_patching_names_a_bad_sender_or_input(tiny, pair):
    clean, _ = pair
    _, cache = tiny.run_with_cache(clean, names_filter=lambda n: n.endswith(("hook_z", "hook_resid_pre")))
    with pytest.raises(ValueError, match="mlp<layer>"):
        path_patch(tiny, clean, cache, cache, ["attn0"], [(2, 0)])
    with pytest.raises(ValueError, match="'q', 'k' and 'v'"):
        path_patch(tiny, clean, cache, cache, [(0, 1)], [(2, 0)], "o")


def test_ioi_dataset_positions_point_at_the_names(model):
    data = ioi_dataset(model, "test", n_groups=6, per_group=4, seed=3)
    rows = torch.arange(len(data))
    for name, pos, tok in (("io", data.io_pos, data.io_tok), ("s1", data.s1_pos, data.s_tok), ("s2", data.s2_pos, data.s_tok)):
        got = [model.to_string(t).strip() for t in data.clean[rows, pos]]
        want = [model.to_string(t).strip() for t in tok]
        assert got == want, name
    assert (data.s1_pos < data.s2_pos).all() and (data.s2_pos < data.end_pos).all()
    # the ABC prompt differs from the clean one exactly at S2, and groups share a length
    diff = (data.clean != data.abc).nonzero()
    assert torch.equal(diff[:, 0], rows) and torch.equal(diff[:, 1], data.s2_pos)
    for g in data.group.unique():
        assert data.end_pos[data.group == g].unique().numel() == 1


@torch.no_grad()
def test_head_sweep_equals_a_loop_of_single_head_patches(tiny, pair):
    """The batched head sweep (prefix kept, later layers only, the end only) against one forward pass per head,
    with the metric read at a different position in each prompt, and a corruption part-way through."""
    from course.patching import patch_sweep
    clean, corrupt = pair
    _, cache = tiny.run_with_cache(clean)
    end = torch.tensor([11, 9, 7])
    good, bad = clean[:, 1], clean[:, 2]

    ld_clean, ld_corrupt = (float(logit_diff(tiny(t), end, good, bad).mean()) for t in (clean, corrupt))

    def metric(logits):                                           # 0 = corrupted, 1 = clean
        return normalized(logit_diff(logits, end, good, bad).mean(), ld_clean, ld_corrupt)

    z = {l: cache["z", l] for l in range(tiny.cfg.n_layers)}
    want = torch.tensor([[float(metric(patch_heads(tiny, corrupt, [(l, h)], z))) for h in range(tiny.cfg.n_heads)]
                         for l in range(tiny.cfg.n_layers)])
    base = float(metric(tiny(corrupt)))
    assert want.std() > 1e-2                                      # the heads' patches differ: a map to get right
    # The random model's logit differences are ~1e-4, so float32 rounding shows at ~1e-4 of the normalized map.
    for positions in (None, end, end[:, None]):
        torch.testing.assert_close(patch_sweep(tiny, corrupt, cache, metric, positions=positions), want,
                                   atol=5e-4, rtol=0)
    # Patching from the corrupted run itself changes nothing, and no position is recomputed.
    _, same = tiny.run_with_cache(corrupt)
    torch.testing.assert_close(patch_sweep(tiny, corrupt, same, metric, positions=end),
                               torch.full((tiny.cfg.n_layers, tiny.cfg.n_heads), base), atol=5e-4, rtol=0)


@torch.no_grad()
def test_head_sweep_metric_reading_elsewhere_sees_nan(tiny, pair):
    """Told the metric reads the last position, the sweep computes logits only there: reading
    another position gives NaN, never a wrong number."""
    from course.patching import patch_sweep
    clean, corrupt = pair
    _, cache = tiny.run_with_cache(clean)
    got = patch_sweep(tiny, corrupt, cache, lambda logits: logits[:, -2, 0].mean(), positions=clean.shape[1] - 1)
    assert got.isnan().all()
    with pytest.raises(ValueError, match="head sweep"):
        patch_sweep(tiny, corrupt, cache, lambda logits: logits.sum(), "resid_pre", positions=3)
