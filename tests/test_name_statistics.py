"""`train --name-stats shared`: the names kept out of IOI keep the IOI names' embedding mean and spread;
`--name-stats codes`: every name's row is a fixed random code around a shared learned mean and scale."""

from __future__ import annotations

import pytest
import torch

from course.data.splits import ioi_split
from course.models import train as tr
from course.models.name_statistics import apply_codes, group_statistics, name_codes, name_token_ids, share_statistics
from course.models.tokenizer import single_token_names


def test_share_statistics_moves_only_the_kept_out_rows_as_one_block():
    torch.manual_seed(0)
    weight = torch.randn(20, 6)
    weight[10:14] = 3.0 + 0.2 * weight[10:14]         # a group off to one side, spread less
    before = weight.clone()
    reference, moved = [0, 2, 4, 6, 8], [10, 11, 12, 13]
    share_statistics(weight, reference, moved)
    for got, want in zip(group_statistics(weight, moved), group_statistics(weight, reference)):
        assert torch.allclose(got, want, atol=1e-5)
    untouched = [i for i in range(20) if i not in moved]
    assert torch.equal(weight[untouched], before[untouched])
    # each row keeps its direction from the group mean: one shift and one scale for the block
    old = before[moved] - before[moved].mean(0)
    new = weight[moved] - weight[moved].mean(0)
    assert torch.allclose(new / new.norm(dim=-1, keepdim=True), old / old.norm(dim=-1, keepdim=True), atol=1e-5)


def test_a_name_of_several_tokens_is_refused(tokenizer):
    with pytest.raises(ValueError, match="only one-token names"):
        name_token_ids(tokenizer, ["Anna", "Bartholomew-Quentin"])


def test_an_unknown_choice_is_refused_before_any_work(tmp_path):
    with pytest.raises(ValueError, match="choose one of free, shared, codes"):
        tr.train(tr.TrainConfig(steps=2, name_stats="tied"), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def _gap(weight, tokenizer):
    split = ioi_split(single_token_names(tokenizer))
    ioi_ids, kept = name_token_ids(tokenizer, split.ioi_names), name_token_ids(tokenizer, split.unseen_names)
    (m_ioi, s_ioi), (m_kept, s_kept) = group_statistics(weight, ioi_ids), group_statistics(weight, kept)
    return float((m_ioi - m_kept).norm()), float(s_ioi - s_kept)


def _short_run(tmp_path, monkeypatch, name_stats: str):
    """A few steps of a tiny model with ``name_stats`` and one weight average: (config, checkpoint, tokenizer)."""
    real = tr.train_tokenizer
    monkeypatch.setattr(tr, "train_tokenizer", lambda seed: real(n_docs=5000, seed=seed))
    cfg = tr.TrainConfig(steps=8, batch=2, warmup=2, n_layer=1, d_model=32, n_head=2, ema_decays="0.9",
                         lr=1e-2, name_stats=name_stats)
    tr.train(cfg, tmp_path / name_stats, eval_every=0, ckpt_every=0, stop_after=6)
    return cfg, torch.load(tmp_path / name_stats / "checkpoint.pt"), real(n_docs=5000, seed=cfg.seed)


def test_training_keeps_the_statistics_shared_in_the_raw_weights_and_the_average(tmp_path, monkeypatch):
    cfg, state, tokenizer = _short_run(tmp_path, monkeypatch, "shared")
    for weights in (state["model"], state["ema"]["0.9"]):
        mean_gap, spread_gap = _gap(weights["transformer.wte.weight"], tokenizer)
        assert mean_gap < 1e-5 and abs(spread_gap) < 1e-5
    tr.train(tr.TrainConfig(**{**cfg.__dict__, "name_stats": "free"}), tmp_path / "free",
             eval_every=0, ckpt_every=0, stop_after=6)
    free = torch.load(tmp_path / "free" / "checkpoint.pt")["model"]["transformer.wte.weight"]
    assert _gap(free, tokenizer)[0] > 1e-3                  # without the option nothing ties them
    assert tr.TrainConfig().name_stats == "free"            # the shipped command is unchanged


def test_the_card_gives_the_command_and_says_what_is_shared():
    from course.models.card import _command, _name_stats_text

    cfg = {"steps": 30000, "seed": 4, "tokenizer_seed": 1, "recipe": "recipient", "name_stats": "shared"}
    assert _command(cfg).endswith("--recipe recipient --name-stats shared")
    assert "--name-stats" not in _command({**cfg, "name_stats": "free"})
    assert "--name-stats" not in _command({"steps": 1, "seed": 1})
    assert "mean distance" in _name_stats_text(cfg) and "ever in an IOI sentence or story" in _name_stats_text(cfg)
    assert _name_stats_text({"seed": 1}) == _name_stats_text({**cfg, "name_stats": "free"}) == ""


def test_codes_are_fixed_directions_around_a_shared_mean_and_scale():
    codes = name_codes(12, 16, seed=3)
    assert torch.allclose(codes.mean(0), torch.zeros(16), atol=1e-6)
    assert torch.isclose(codes.norm(dim=-1).mean(), torch.tensor(1.0))
    assert torch.equal(codes, name_codes(12, 16, seed=3)) and not torch.equal(codes, name_codes(12, 16, seed=4))
    weight = torch.randn(30, 16)
    before = weight.clone()
    ids = list(range(5, 17))
    mean, spread = group_statistics(weight, ids)
    apply_codes(weight, ids, codes)
    untouched = [i for i in range(30) if i not in ids]
    assert torch.equal(weight[untouched], before[untouched])
    assert torch.allclose(weight[ids], mean + codes * spread, atol=1e-5)
    # the learned part is the mean and the scale only: a step that moves one row alone is undone, one
    # that shifts or stretches the whole group stays
    weight[ids[0]] += 5.0
    moved = weight.clone()
    apply_codes(weight, ids, codes)
    m, s = group_statistics(moved, ids)
    assert torch.allclose(weight[ids], m + codes * s, atol=1e-5)


def test_training_with_codes_keeps_every_name_on_its_code(tmp_path, monkeypatch):
    cfg, state, tokenizer = _short_run(tmp_path, monkeypatch, "codes")
    split = ioi_split(single_token_names(tokenizer))
    ids = name_token_ids(tokenizer, split.ioi_names) + name_token_ids(tokenizer, split.unseen_names)
    codes = name_codes(len(ids), 32, seed=cfg.seed)
    for weights in (state["model"], state["ema"]["0.9"]):
        rows = weights["transformer.wte.weight"][ids]
        mean, spread = group_statistics(weights["transformer.wte.weight"], ids)
        assert torch.allclose(rows, mean + codes * spread, atol=1e-5)
    from course.models.card import _command, _name_stats_text

    assert _command({"steps": 30000, "seed": 1, "name_stats": "codes"}).endswith("--name-stats codes")
    assert "fixed random direction" in _name_stats_text({"name_stats": "codes"})


def test_codes_in_a_subspace_span_it_and_leave_full_width_codes_as_they_were():
    full = name_codes(40, 16, seed=5)
    assert torch.equal(full, name_codes(40, 16, seed=5, dim=0))          # dim 0 draws what it always drew
    low = name_codes(40, 16, seed=5, dim=4)
    assert low.shape == (40, 16) and torch.linalg.matrix_rank(low) == 4 and torch.linalg.matrix_rank(full) == 16
    assert torch.allclose(low.mean(0), torch.zeros(16), atol=1e-6)
    assert torch.isclose(low.norm(dim=-1).mean(), torch.tensor(1.0))
    # the first 30 codes ("the names in IOI") span the subspace: every other code is a combination of them
    seen, new = low[:30], low[30:]
    coef = torch.linalg.lstsq(seen.T, new.T).solution
    assert torch.allclose(seen.T @ coef, new.T, atol=1e-4)


@pytest.mark.parametrize("stats, dim, message", [("free", 8, "only applies with --name-stats codes"),
                                                  ("codes", -1, "between 1 and the width"),
                                                  ("codes", 999, "between 1 and the width")])
def test_a_code_dimension_that_cannot_apply_is_refused_before_any_work(tmp_path, stats, dim, message):
    with pytest.raises(ValueError, match=message):
        tr.train(tr.TrainConfig(steps=2, name_stats=stats, name_code_dim=dim), tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_the_card_gives_the_code_dimension():
    from course.models.card import _command, _name_stats_text

    cfg = {"steps": 30000, "seed": 1, "name_stats": "codes", "name_code_dim": 32}
    assert _command(cfg).endswith("--name-stats codes --name-code-dim 32")
    assert "32-dimensional subspace" in _name_stats_text(cfg)
    assert "subspace" not in _name_stats_text({**cfg, "name_code_dim": 0})
